"""The quota pre-hook: administrators' instances are charged like the portal's servers.

Installed as ``instance-{add,modify,start,stop,remove}-pre.d/snf-quota`` (links to one shim,
``hooks/ganeti/snf-quota``).  It acts only on the master (``GANETI_MASTER`` is this node)
and only for an instance tagged ``snf:owner:<uuid>`` (optionally ``snf:project:<uuid>``)
that the portal did not make: the portal's own instances carry ``snf:commission:`` and
``snf:server:`` tags and are charged by the portal, so they pass at once, as do instances
without an owner tag.  For the others it sends the instance's shape after the operation
(vcpus, memory, the sum of its disks, whether it will run) to the portal's
``/internal/quota/instance`` with the node's service token and waits at most
:data:`TIMEOUT` seconds.  It refuses (exits 1 with one line on stdout, which Ganeti shows
in its HooksAbort) when the owner is over quota, when the tags or the environment are bad,
and when the portal cannot be asked: the token file is unreadable, the portal cannot be
reached or does not answer in time.  Stop never refuses for want of the portal (a
shutdown may be urgent): it says so and lets Ganeti go on.  The line also goes to syslog
(``snf-quota``), since Ganeti drops the output of a hook that passes.

Ganeti gives a modify's hooks the disks as they were (``LUInstanceSetParams`` does not
export disk changes), so for a modify the hook reads them from the job that runs it: the
newest job file in ``<GANETI_DATA_DIR>/queue`` running ``OP_INSTANCE_SET_PARAMS`` on the
instance holds the opcode's ``disks`` changes, which :func:`disks_after` applies in order
to the environment's disks.  An added disk counts its size, a removed or detached one no
longer counts, an attached one counts the size Ganeti's configuration
(``<GANETI_DATA_DIR>/config.data``) gives it.  When the job cannot be found or its
changes cannot be read, the hook charges the disks as they were and its line says why.

Ganeti runs the pre-hooks of a dry run too (``--dry-run`` of ``gnt-instance add``,
``modify``, ``startup``, ``shutdown`` and ``remove``; RAPI's ``dry-run=1``), then stops.
So the hook reads the job of every operation, once (:func:`from_job`): when the running
op's input has ``dry_run`` true, the request says ``"dry_run": true`` and the portal checks
the limits without charging anything.  A dry run over quota is refused with the line a real
run would get; one within quota passes and charges nothing.  When the job cannot be found,
the hook goes on as for a real run.

:func:`request_for` (environment -> request or None), :func:`disks_after` (disks and
changes -> disks) and :func:`refusal` (answer -> line) are pure; :func:`main` is the shell.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import syslog
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from snf.common.config import ConfigError, load_config

from . import jobs

#: Seconds the whole call to the portal may take (Ganeti itself would wait 15 minutes).
TIMEOUT = 9.0
PATH = "/internal/quota/instance"
#: Ganeti's hook path -> our operation.
OPS = {"instance-add": "add", "instance-modify": "modify", "instance-start": "start",
       "instance-stop": "stop", "instance-remove": "remove"}  # fmt: skip
#: Tags of instances the portal made (and charged) itself.
PORTAL_TAGS = ("snf:commission:", "snf:server:")
MAX_DISKS = 64
#: Our operation -> the opcode of the one LU that runs its hooks (its job holds ``dry_run``
#: and, for a modify, the disk changes).
OPCODES = {"add": "OP_INSTANCE_CREATE", "modify": "OP_INSTANCE_SET_PARAMS",
           "start": "OP_INSTANCE_STARTUP", "stop": "OP_INSTANCE_SHUTDOWN",
           "remove": "OP_INSTANCE_REMOVE"}  # fmt: skip
#: Ganeti's disk changes (``constants.DDM_*``): the ones that make a disk count or not.
ADDING, DROPPING = ("add", "attach"), ("remove", "detach")
#: The changes a legacy (two-item) change names by itself; any other first item is a disk.
LEGACY = (*ADDING, *DROPPING)
#: How the hook's line ends when a modify's disk changes could not be read.
UNSEEN = " (disk changes not counted, the disks as they were: {})"


class Refused(Exception):
    """The hook refuses the operation; the message is the line Ganeti shows."""


class UnknownDisks(ValueError):
    """The disk changes of a modify cannot be read; the message says why (the hook then
    charges the disks as they were)."""


@dataclass(frozen=True)
class Disk:
    """One of an instance's disks as the hook knows it: its size (MiB), name and UUID
    (empty when Ganeti has none or does not say, as for a disk added by the same modify)."""

    size: int
    name: str = ""
    uuid: str = ""


@dataclass(frozen=True)
class QuotaRequest:
    op: str
    body: dict[str, Any]

    @property
    def instance(self) -> str:
        return str(self.body["instance"])


def is_master(env: Mapping[str, str], names: Callable[[], Iterable[str]]) -> bool:
    """Whether this node is the master: ``GANETI_MASTER`` is one of its names (its host
    name, or that name fully qualified).  ``names`` is only called when there is a
    master to compare with, and read only until one matches."""
    master = env.get("GANETI_MASTER", "").strip().lower()
    return bool(master) and any(name.lower() == master for name in names())


def node_names() -> Iterator[str]:
    """This node's host name, then (a name lookup) its fully qualified name."""
    host = socket.gethostname()
    yield host
    with contextlib.suppress(OSError):
        yield socket.getfqdn(host)


def request_for(env: Mapping[str, str]) -> QuotaRequest | None:
    """The request to send for this hook run, or None when the instance is not ours to
    charge (not a pre phase, an op we do not handle, no owner tag, a portal instance).
    Raises :class:`Refused` for an owner-tagged instance whose tags or sizes are bad."""
    if env.get("GANETI_HOOKS_PHASE", "").lower() != "pre":
        return None
    op = OPS.get(env.get("GANETI_HOOKS_PATH", ""))
    if op is None:
        return None
    tags = env.get("GANETI_INSTANCE_TAGS", "").split()
    owners = [tag.removeprefix("snf:owner:") for tag in tags if tag.startswith("snf:owner:")]
    if not owners or any(tag.startswith(PORTAL_TAGS) for tag in tags):
        return None
    name = env.get("GANETI_INSTANCE_NAME", "")
    if not name:
        raise Refused("no GANETI_INSTANCE_NAME in the hook's environment")
    projects = [tag.removeprefix("snf:project:") for tag in tags if tag.startswith("snf:project:")]
    body: dict[str, Any] = {
        "owner": _one_uuid(owners, "owner", name),
        "instance": name,
        "cluster": env.get("GANETI_CLUSTER", ""),
        "op": op,
    }
    if projects:
        body["project"] = _one_uuid(projects, "project", name)
    if op != "remove":
        body |= shape(env, name)
    return QuotaRequest(op, body)


def shape(env: Mapping[str, str], name: str) -> dict[str, Any]:
    """The instance after the operation, as far as the environment tells.  For a modify
    Ganeti gives the new vcpus and memory in ``INSTANCE_VCPUS``/``INSTANCE_MAXMEM`` (the
    ``BE_*`` variables still hold the old ones) but the disks as they were: the shell
    replaces ``disk_mib`` with the total after the job's disk changes (:func:`disks_after`)."""
    vcpus = _number(env, "GANETI_INSTANCE_VCPUS", name)
    memory = _number(env, "GANETI_INSTANCE_MAXMEM", name, fallback="GANETI_INSTANCE_MEMORY")
    disk = sum(d.size for d in current_disks(env, name))
    # An existing instance's admin state ("up"); instance-add gives its start flag ("True").
    running = env.get("GANETI_INSTANCE_STATUS", "") in ("up", "True")
    return {"vcpus": vcpus, "memory_mib": memory, "disk_mib": disk, "running": running}


def current_disks(env: Mapping[str, str], name: str) -> list[Disk]:
    """The disks in the environment, in order: ``INSTANCE_DISK<i>_SIZE`` and ``_UUID`` (empty
    for instance-add) and ``_NAME`` (only for a disk that has a name)."""
    count = _number(env, "GANETI_INSTANCE_DISK_COUNT", name)
    if count > MAX_DISKS:
        raise Refused(f"instance {name}: {count} disks, more than {MAX_DISKS}")
    key = "GANETI_INSTANCE_DISK{}_{}".format
    return [Disk(_number(env, key(i, "SIZE"), name), env.get(key(i, "NAME"), ""),
                 env.get(key(i, "UUID"), "")) for i in range(count)]  # fmt: skip


def disks_after(
    disks: list[Disk], changes: Any, attachable: Callable[[str, str], Disk]
) -> list[Disk]:
    """The disks after ``OP_INSTANCE_SET_PARAMS``'s ``disks`` changes, applied in order as
    Ganeti's ``ApplyContainerMods`` does.  A change is ``[action, identifier, params]`` (the
    form a job file holds once the opcode runs, whatever the client sent) or the legacy
    ``[action or identifier, params]``.  ``add`` and ``attach`` take an index (-1: at the
    end) and insert a disk of ``params["size"]``, or the disk ``attachable("uuid" or
    "name", value)`` finds; ``remove``, ``detach`` and ``modify`` find a disk by index
    (-1: the last), UUID or name; ``modify`` may rename it.  Raises :class:`UnknownDisks`
    for anything else (Ganeti would refuse it too)."""
    if not isinstance(changes, list):
        raise UnknownDisks(f"its disk changes are {type(changes).__name__}, not a list")
    after = list(disks)
    for change in changes:
        action, identifier, params = _change(change)
        if action in ADDING:
            disk = _added(params) if action == "add" else attachable(*_attach_key(params))
            at = _index(identifier)
            if not -1 <= at <= len(after):
                raise UnknownDisks(f"cannot {action} a disk at index {at} of {len(after)}")
            after.insert(len(after) if at == -1 else at, disk)
            continue
        index = _find(after, identifier)
        if action in DROPPING:
            del after[index]
        elif isinstance(params.get("name"), str):
            after[index] = replace(after[index], name=params["name"])
    return after


def config_disk(config: Any, key: str, value: str) -> Disk:
    """The disk whose ``key`` ("uuid" or "name") is ``value`` in Ganeti's configuration
    (``config.data``, parsed: Ganeti 3.0 keeps every disk, attached or not, in ``disks`` by
    UUID); :class:`UnknownDisks` when it has none or, by name, more than one."""
    table = config.get("disks") if isinstance(config, dict) else None
    if not isinstance(table, dict):
        raise UnknownDisks("Ganeti's configuration has no disks")
    if key == "uuid":
        found = [(value, table[value])] if value in table else []
    else:
        found = [(u, d) for u, d in table.items() if isinstance(d, dict) and d.get("name") == value]
    if len(found) != 1:
        raise UnknownDisks(f"{len(found)} disks with {key} {value!r} in Ganeti's configuration")
    disk_uuid, disk = found[0]
    size = disk.get("size") if isinstance(disk, dict) else None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise UnknownDisks(f"disk {disk_uuid} has no size in Ganeti's configuration")
    return Disk(size, str(disk.get("name") or ""), disk_uuid)


def _change(change: Any) -> tuple[str, int | str, dict[str, Any]]:
    if isinstance(change, list) and len(change) == 2 and isinstance(change[0], str | int):
        first, params = change
        change = [first, -1, params] if first in LEGACY else ["modify", first, params]
    if not (isinstance(change, list) and len(change) == 3):
        raise UnknownDisks(f"a disk change {change!r:.60} is not [action, disk, params]")
    action, identifier, params = change
    if action not in (*LEGACY, "modify") or not isinstance(params, dict):
        raise UnknownDisks(f"a disk change {change!r:.60} is not [action, disk, params]")
    if isinstance(identifier, bool) or not isinstance(identifier, int | str) or identifier == "":
        raise UnknownDisks(f"a disk change names disk {identifier!r:.60}")
    return action, identifier, params


def _index(identifier: int | str) -> int:
    try:
        return int(identifier)
    except ValueError:
        raise UnknownDisks(f"{identifier!r:.60} is not a disk index") from None


def _find(disks: list[Disk], identifier: int | str) -> int:
    """Ganeti's ``GetItemFromContainer``: an index (-1: the last), else a UUID or name."""
    try:
        at = int(identifier)
    except ValueError:
        for index, disk in enumerate(disks):
            if identifier in (disk.uuid, disk.name):
                return index
        raise UnknownDisks(f"no disk {identifier!r:.60} among the instance's disks") from None
    if not -1 <= at < len(disks) or not disks:
        raise UnknownDisks(f"no disk {at} among the instance's {len(disks)}")
    return len(disks) - 1 if at == -1 else at


def _added(params: dict[str, Any]) -> Disk:
    size = params.get("size")
    if isinstance(size, str) and size.isdigit() and len(size) <= 12:
        size = int(size)
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size < 1 << 40:
        raise UnknownDisks(f"an added disk's size is {size!r:.60}")
    name = params.get("name")
    return Disk(size, name if isinstance(name, str) else "")


def _attach_key(params: dict[str, Any]) -> tuple[str, str]:
    for key in ("uuid", "name"):
        if isinstance(params.get(key), str) and params[key]:
            return key, params[key]
    raise UnknownDisks(f"an attached disk is named by neither uuid nor name: {params!r:.60}")


def refusal(request: QuotaRequest, status: int, answer: Any) -> str:
    """The one line for a portal's answer other than success."""
    message = ""
    if isinstance(answer, dict) and len(answer) == 1:
        fault = next(iter(answer.values()))
        if isinstance(fault, dict):
            message = str(fault.get("message", ""))
    message = " ".join(message.split())[:300] or f"HTTP {status}"
    what = f"snf-quota: {request.op} of {request.instance} refused"
    if status == 413:
        return f"{what}: {message}"
    return f"{what}: the portal answered {status}: {message}"


def ask(url: str, token: str, request: QuotaRequest, timeout: float = TIMEOUT) -> dict[str, Any]:
    """POST the request; the portal's JSON answer on success, :class:`Refused` otherwise.
    The whole exchange (name lookup, connect, answer) must end within ``timeout``."""
    data = json.dumps(request.body).encode()
    headers = {"Content-Type": "application/json", "X-Auth-Token": token}
    call = urllib.request.Request(url.rstrip("/") + PATH, data=data, headers=headers)
    unreachable = f"snf-quota: {request.op} of {request.instance} refused: the portal at {url}"

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        with urllib.request.urlopen(call, timeout=timeout) as answer:
            return json.loads(answer.read(1 << 20))
    except urllib.error.HTTPError as err:
        raise Refused(refusal(request, err.code, _json(err))) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, TimeoutError):
            raise Refused(f"{unreachable} did not answer within {timeout:g} s") from None
        raise Refused(f"{unreachable} cannot be reached: {reason}") from None
    except ValueError:
        raise Refused(f"{unreachable} answered something other than JSON") from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _json(err: urllib.error.HTTPError) -> Any:
    try:
        return json.loads(err.read(1 << 16))
    except (ValueError, OSError):
        return None


def from_job(request: QuotaRequest, env: Mapping[str, str],
             data_dir: Path) -> tuple[QuotaRequest, str]:  # fmt: skip
    """The request as the job that runs the operation tells (its file in ``data_dir``/queue,
    found once): with ``"dry_run": true`` when the op is a dry run, and for a modify with
    the disk total after its disk changes (:func:`modified`); and "" or why the job or its
    disk changes could not be read (the request then goes as it was, as for a real run)."""
    queue, opcode = data_dir / "queue", OPCODES[request.op]
    found = jobs.find_job(queue, opcode, request.instance)
    if found is None:
        return request, f"no job in {queue} runs {opcode} on it"
    job, index = found
    if job["ops"][index]["input"].get("dry_run") is True:
        request = replace(request, body=request.body | {"dry_run": True})
    if request.op != "modify":
        return request, ""
    try:
        return modified(request, env, data_dir, job, index)
    except Exception as exc:  # a reading of Ganeti's files gone wrong must not block
        return request, f"job {job['id']}: {type(exc).__name__}: {exc}"


def modified(request: QuotaRequest, env: Mapping[str, str], data_dir: Path,
             job: dict[str, Any], index: int) -> tuple[QuotaRequest, str]:  # fmt: skip
    """A modify's request with the disk total after the disk changes of op ``index`` of
    ``job``, and ""; or the request as it was (the disks as they were) and why."""
    loaded: list[Any] = []

    def attachable(key: str, value: str) -> Disk:
        path = data_dir / "config.data"
        if not loaded:
            try:
                loaded.append(json.loads(path.read_bytes()))
            except (OSError, ValueError) as exc:
                raise UnknownDisks(f"cannot read {path}: {exc}") from None
        return config_disk(loaded[0], key, value)

    try:
        changes = job["ops"][index]["input"].get("disks") or []
        disks = disks_after(current_disks(env, request.instance), changes, attachable)
    except UnknownDisks as exc:
        return request, f"job {job['id']}: {exc}"
    return replace(request, body=request.body | {"disk_mib": sum(d.size for d in disks)}), ""


def run(env: Mapping[str, str], names: Callable[[], Iterable[str]] = node_names) -> tuple[int, str]:
    """The hook: (exit status, line to print; empty for nothing).  The tags are looked at
    first, so that most instances pass without even a name lookup.  A modify whose disk
    changes could not be read is charged for the disks as they were, and the line says so;
    a dry run is checked and charged nothing (when its job cannot be read, it is charged
    as a real run, as the other operations are, without a word)."""
    unseen = ""
    try:
        request = request_for(env)
        if request is None or not is_master(env, names):
            return 0, ""
        try:
            config = load_config().hooks
        except ConfigError as exc:
            raise Refused(f"snf-quota: {request.op} of {request.instance} refused: {exc}") from None
        data_dir = Path(env.get("GANETI_DATA_DIR") or config.ganeti_data_dir)
        try:
            request, why = from_job(request, env, data_dir)
        except Exception as exc:  # a reading of Ganeti's files gone wrong must not block
            why = f"{type(exc).__name__}: {exc}"
        if why and request.op == "modify":
            unseen = UNSEEN.format(" ".join(why.split())[:300])
        try:
            token = config.service_token_file.read_text().strip()
        except OSError as exc:
            raise Refused(f"snf-quota: {request.op} of {request.instance} refused: cannot read "
                          f"the service token {config.service_token_file}: "
                          f"{exc.strerror}") from None  # fmt: skip
        if not token:
            raise Refused(f"snf-quota: {request.op} of {request.instance} refused: the service "
                          f"token file {config.service_token_file} is empty")  # fmt: skip
        try:
            answer = ask(config.portal_url, token, request, TIMEOUT)
        except Refused as exc:
            if request.op == "stop":  # it only releases: never worth blocking a shutdown
                return 0, f"{exc} (the stop goes on; the next start settles the quota)"
            raise
    except Refused as exc:
        if not is_master(env, names):
            return 0, ""
        line = str(exc)
        line = line if line.startswith("snf-quota:") else f"snf-quota: refused: {line}"
        return 1, line + unseen
    what = f"snf-quota: {request.op} of {request.instance}"
    answer = answer if isinstance(answer, dict) else {}
    if answer.get("dry_run") is True:
        would = _shown(answer.get("would_charge"))
        return 0, f"{what} (dry run): within quota; charged nothing, would charge {would}{unseen}"
    return 0, f"{what}: charged {_shown(answer.get('charged'))}{unseen}"


def _shown(charges: Any) -> str:
    """``{"cyclades.vm": 1, ...}`` as "cyclades.vm +1, ..." ("nothing" when empty)."""
    if not isinstance(charges, dict):
        return "nothing"
    shown = (f"{k} {v:+d}" if isinstance(v, int) else f"{k} {v!r:.20}"
             for k, v in sorted(charges.items()))  # fmt: skip
    return ", ".join(shown) or "nothing"


def _one_uuid(values: list[str], what: str, name: str) -> str:
    if len(set(values)) != 1:
        raise Refused(f"instance {name} has {len(set(values))} snf:{what}: tags, want one")
    try:
        return str(uuid.UUID(values[0]))
    except ValueError:
        raise Refused(f"instance {name}: snf:{what}:{values[0]} is not a UUID") from None


def _number(env: Mapping[str, str], key: str, name: str, fallback: str = "") -> int:
    value = env.get(key) or (env.get(fallback, "") if fallback else "")
    if not value.isdigit() or len(value) > 12:
        raise Refused(f"instance {name}: {key} is {value!r}, not a whole number")
    return int(value)


def main() -> None:
    status, line = run(os.environ)
    if line:
        print(line, flush=True)
        # Ganeti drops a passing pre-hook's output: syslog keeps what was charged, refused,
        # and why a modify's disk changes were not counted.
        unseen = UNSEEN.split("{")[0] in line
        syslog.openlog("snf-quota", 0, syslog.LOG_USER)
        syslog.syslog(syslog.LOG_WARNING if status or unseen else syslog.LOG_INFO, line)
    sys.exit(status)
