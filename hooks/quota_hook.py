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
shutdown may be urgent): it says so and lets Ganeti go on.

:func:`request_for` (environment -> request or None) and :func:`refusal` (answer -> line)
are pure; :func:`main` is the shell.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from snf.common.config import ConfigError, load_config

#: Seconds the whole call to the portal may take (Ganeti itself would wait 15 minutes).
TIMEOUT = 9.0
PATH = "/internal/quota/instance"
#: Ganeti's hook path -> our operation.
OPS = {"instance-add": "add", "instance-modify": "modify", "instance-start": "start",
       "instance-stop": "stop", "instance-remove": "remove"}  # fmt: skip
#: Tags of instances the portal made (and charged) itself.
PORTAL_TAGS = ("snf:commission:", "snf:server:")
MAX_DISKS = 64


class Refused(Exception):
    """The hook refuses the operation; the message is the line Ganeti shows."""


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
    """The instance after the operation.  For a modify Ganeti gives the new vcpus and
    memory in ``INSTANCE_VCPUS``/``INSTANCE_MAXMEM`` (the ``BE_*`` variables still hold the
    old ones) and the disks as they were (it does not export disk changes)."""
    vcpus = _number(env, "GANETI_INSTANCE_VCPUS", name)
    memory = _number(env, "GANETI_INSTANCE_MAXMEM", name, fallback="GANETI_INSTANCE_MEMORY")
    count = _number(env, "GANETI_INSTANCE_DISK_COUNT", name)
    if count > MAX_DISKS:
        raise Refused(f"instance {name}: {count} disks, more than {MAX_DISKS}")
    disk = sum(_number(env, f"GANETI_INSTANCE_DISK{i}_SIZE", name) for i in range(count))
    # An existing instance's admin state ("up"); instance-add gives its start flag ("True").
    running = env.get("GANETI_INSTANCE_STATUS", "") in ("up", "True")
    return {"vcpus": vcpus, "memory_mib": memory, "disk_mib": disk, "running": running}


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


def run(env: Mapping[str, str], names: Callable[[], Iterable[str]] = node_names) -> tuple[int, str]:
    """The hook: (exit status, line to print; empty for nothing).  The tags are looked at
    first, so that most instances pass without even a name lookup."""
    try:
        request = request_for(env)
        if request is None or not is_master(env, names):
            return 0, ""
        try:
            config = load_config().hooks
        except ConfigError as exc:
            raise Refused(f"snf-quota: {request.op} of {request.instance} refused: {exc}") from None
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
        return 1, line if line.startswith("snf-quota:") else f"snf-quota: refused: {line}"
    charged = answer.get("charged") or {}
    shown = ", ".join(f"{k} {v:+d}" for k, v in sorted(charged.items())) or "nothing"
    return 0, f"snf-quota: {request.op} of {request.instance}: charged {shown}"


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
    sys.exit(status)
