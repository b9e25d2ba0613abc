"""What an administrator's Ganeti instance costs: the pure core of ``/internal/quota/instance``.

The quota pre-hooks (:mod:`snf.hooks.quota_hook`) describe an instance that carries an owner
tag but no commission (an administrator's ``gnt-instance add/modify/startup``, not the
portal's) by its shape after the operation.  What it should hold is then a function of that
shape alone (:func:`target`, the same resources as a portal server: :mod:`.charges`); what it
is charged is the :func:`difference` between that target and what it holds already (the
ledger of its earlier accepted commissions), so a retried or repeated operation charges
nothing twice, and a remove releases exactly what was charged.  A request with
``"dry_run": true`` (Ganeti's ``--dry-run``, whose pre-hooks run too) is checked the same
way and charges nothing.  No I/O here.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from snf.common.errors import InvalidInput

MiB = 1 << 20
#: What the hooks ask for: add, modify and start may charge; stop and remove release.
OPS = ("add", "modify", "start", "stop", "remove")
#: Ganeti's instance names are host names; cluster names too.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,189}")
#: Far above any real instance (1 PiB of disk, 64 TiB of memory), below SQL's BIGINT.
_MAX = {"vcpus": 4096, "memory_mib": 1 << 26, "disk_mib": 1 << 30}
FIELDS = {"owner", "project", "instance", "cluster", "op", "vcpus", "memory_mib", "disk_mib",
          "running", "dry_run"}  # fmt: skip

#: (user, project, resource) -> quantity
Charges = dict[tuple[uuid.UUID, uuid.UUID, str], int]


@dataclass(frozen=True)
class InstanceRequest:
    owner: uuid.UUID
    project: uuid.UUID
    cluster: str
    instance: str
    op: str
    vcpus: int = 0
    memory_mib: int = 0
    disk_mib: int = 0
    running: bool = False
    #: Only check the limits: charge nothing (Ganeti's ``--dry-run``).
    dry_run: bool = False

    @property
    def ledger(self) -> str:
        """The name of every commission made for this instance (see :func:`difference`)."""
        return f"instance {self.cluster}/{self.instance}"


def parse(body: Mapping[str, Any]) -> InstanceRequest:
    """Check a request body; InvalidInput (400) names the first bad field."""
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        raise InvalidInput(f"unknown field {unknown[0]!r}")
    owner = _uuid(body.get("owner"), "owner")
    project = owner if body.get("project") is None else _uuid(body["project"], "project")
    names = {}
    for field in ("cluster", "instance"):
        value = body.get(field)
        if not isinstance(value, str) or not _NAME.fullmatch(value):
            raise InvalidInput(f"{field} must be a Ganeti name, not {value!r}")
        names[field] = value
    op = body.get("op")
    if op not in OPS:
        raise InvalidInput(f"op must be one of {', '.join(OPS)}, not {op!r}")
    dry_run = body.get("dry_run", False)
    if type(dry_run) is not bool:
        raise InvalidInput(f"dry_run must be true or false, not {dry_run!r}")
    if op == "remove":
        return InstanceRequest(owner, project, names["cluster"], names["instance"], op,
                               dry_run=dry_run)  # fmt: skip
    sizes = {field: _count(body.get(field), field, top) for field, top in _MAX.items()}
    running = body.get("running")
    if type(running) is not bool:
        raise InvalidInput(f"running must be true or false, not {running!r}")
    running = {"start": True, "stop": False}.get(op, running)
    return InstanceRequest(owner, project, names["cluster"], names["instance"], op,
                           running=running, dry_run=dry_run, **sizes)  # fmt: skip


def target(request: InstanceRequest) -> Charges:
    """What the instance holds after the operation (nothing once removed)."""
    if request.op == "remove":
        return {}
    amounts = {
        "cyclades.vm": 1,
        "cyclades.total_cpu": request.vcpus,
        "cyclades.total_ram": request.memory_mib * MiB,
        "cyclades.disk": request.disk_mib * MiB,
    }
    if request.running:
        amounts |= {"cyclades.cpu": request.vcpus, "cyclades.ram": request.memory_mib * MiB}
    who = (request.owner, request.project)
    return {(*who, resource): value for resource, value in amounts.items() if value}


def difference(new: Charges, held: Charges) -> Charges:
    """The commission that takes ``held`` to ``new`` (zero entries left out)."""
    delta = {key: new.get(key, 0) - held.get(key, 0) for key in set(new) | set(held)}
    return {key: value for key, value in sorted(delta.items()) if value}


def provisions(delta: Charges) -> list[dict[str, Any]]:
    """The quota engine's provisions for ``delta``: the user's share of the project's
    quota, and the project's own total (as :func:`.charges.provisions` does)."""
    out: list[dict[str, Any]] = []
    for (user, project, resource), quantity in sorted(delta.items()):
        out.append({"holder": f"user:{user}", "source": f"project:{project}",
                    "resource": resource, "quantity": quantity})  # fmt: skip
        out.append({"holder": f"project:{project}", "source": None,
                    "resource": resource, "quantity": quantity})  # fmt: skip
    return out


def by_resource(charges: Charges) -> dict[str, int]:
    out: dict[str, int] = {}
    for (_, _, resource), value in charges.items():
        out[resource] = out.get(resource, 0) + value
    return out


def _uuid(value: object, field: str) -> uuid.UUID:
    try:
        return uuid.UUID(value) if isinstance(value, str) else _bad(field, value)
    except ValueError:
        return _bad(field, value)


def _bad(field: str, value: object) -> uuid.UUID:
    raise InvalidInput(f"{field} must be a UUID, not {value!r}")


def _count(value: object, field: str, top: int) -> int:
    if type(value) is not int or not 0 <= value <= top:
        raise InvalidInput(f"{field} must be a whole number from 0 to {top}, not {value!r}")
    return value
