"""The resource registry: what the quota engine counts, and each user's default base quota.

The names, units and visibility are Synnefo's (``synnefo/quotas/resources.py`` and
Astakos' own ``astakos.pending_app``), so kamaki and astakosclient read them unchanged:

- ``cyclades.vm``: 1 per VM; ``cyclades.total_cpu`` / ``cyclades.total_ram``: every VM
  (RAM in bytes), not visible to API clients; ``cyclades.cpu`` / ``cyclades.ram``: running
  VMs only; ``cyclades.disk``: bytes per volume; ``cyclades.network.private``: 1 per private
  network; ``cyclades.floating_ip``: 1 per floating IP; ``pithos.diskspace``: bytes;
  ``astakos.pending_app``: pending project applications (hidden).

``default`` is the base quota a new user's system project grants: enough for a small
cloud (2 VMs, 4 CPUs, 4 GiB RAM, 40 GiB disk, 1 private network, 1 floating IP, 5 GiB in
Pithos). Deployments override it per resource (``ensure_user(..., base=...)``).

The registry is code, not a table: holdings name resources by string, and a resource is
added by adding it here (and giving existing users a holding, see ``projects.sync_project``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import InvalidData

GiB = 1 << 30

#: The largest limit or quantity the engine accepts: two of them still add up below 2**63,
#: PostgreSQL's bigint (and SQLite's integer) range, so no sum in SQL can overflow.
MAX_QUANTITY = 1 << 62


@dataclass(frozen=True)
class Resource:
    """One countable resource."""

    name: str
    #: Astakos' ``service_origin``: the service whose API charges it.
    service: str
    #: The service's catalog type (``compute``, ``object-store``, ``account``).
    service_type: str
    description: str
    #: ``"bytes"`` or None (a count), as Astakos reports it.
    unit: str | None
    api_visible: bool
    ui_visible: bool
    #: The default base quota (the member capacity of every user's system project).
    default: int

    def to_api(self) -> dict[str, Any]:
        """The resource as ``GET /account/v1.0/resources`` lists it."""
        return {
            "service": self.service,
            "description": self.description,
            "unit": self.unit,
            "ui_visible": self.ui_visible,
            "api_visible": self.api_visible,
        }


def _cyclades(
    name: str, description: str, unit: str | None, visible: bool, default: int
) -> Resource:
    return Resource(
        name=name,
        service="cyclades_compute",
        service_type="compute",
        description=description,
        unit=unit,
        api_visible=visible,
        ui_visible=visible,
        default=default,
    )


RESOURCES: Mapping[str, Resource] = {
    r.name: r
    for r in (
        _cyclades("cyclades.vm", "Number of virtual machines", None, True, 2),
        _cyclades("cyclades.total_cpu", "Number of virtual machine processors", None, False, 4),
        _cyclades(
            "cyclades.cpu", "Number of virtual machine processors of running servers", None, True, 4
        ),
        _cyclades("cyclades.total_ram", "Virtual machine memory size", "bytes", False, 4 * GiB),
        _cyclades(
            "cyclades.ram", "Virtual machine memory size of running servers", "bytes", True, 4 * GiB
        ),
        _cyclades("cyclades.disk", "Virtual machine disk size", "bytes", True, 40 * GiB),
        _cyclades("cyclades.network.private", "Number of private networks", None, True, 1),
        _cyclades("cyclades.floating_ip", "Number of Floating IP addresses", None, True, 1),
        Resource(
            name="pithos.diskspace",
            service="pithos_object-store",
            service_type="object-store",
            description="Pithos account quota",
            unit="bytes",
            api_visible=True,
            ui_visible=True,
            default=5 * GiB,
        ),
        Resource(
            name="astakos.pending_app",
            service="astakos_account",
            service_type="account",
            description="Number of pending project applications",
            unit=None,
            api_visible=False,
            ui_visible=False,
            default=2,
        ),
    )
}


def get(name: object) -> Resource:
    """The resource called ``name``; InvalidData for anything else."""
    resource = RESOURCES.get(name) if isinstance(name, str) else None
    if resource is None:
        raise InvalidData(f"unknown resource {name!r}")
    return resource


def api_catalog() -> dict[str, dict[str, Any]]:
    """``GET /resources``: every API-visible resource by name."""
    return {r.name: r.to_api() for r in RESOURCES.values() if r.api_visible}


def api_visible_names() -> list[str]:
    return [r.name for r in RESOURCES.values() if r.api_visible]


def check_capacity(value: object, what: str) -> int:
    """A limit or capacity: an int (not a bool) in 0..MAX_QUANTITY; InvalidData otherwise."""
    if type(value) is not int or not 0 <= value <= MAX_QUANTITY:
        raise InvalidData(f"{what} must be an integer from 0 to {MAX_QUANTITY}, not {value!r}")
    return value


def base_quota(overrides: Mapping[str, int] | None = None) -> dict[str, int]:
    """The base quota of a new user: the defaults, with ``overrides`` (validated) applied."""
    quota = {name: r.default for name, r in RESOURCES.items()}
    for name, value in (overrides or {}).items():
        quota[get(name).name] = check_capacity(value, f"base quota of {name}")
    return quota
