"""The ``archipelago`` ExtStorage provider: what Ganeti's scripts call.

Every script in provider/ is the same shim; it calls :func:`main`, which dispatches on the
name it was called by.  Ganeti passes everything in the environment (reference/ganeti.md §1):
``VOL_NAME``, ``VOL_SIZE`` (MiB), ``VOL_NEW_SIZE``, ``VOL_UUID``, ``VOL_METADATA``,
``VOL_SNAPSHOT_NAME``, ``EXTP_ORIGIN``.  Output for Ganeti goes to stdout (attach only);
messages go to stderr, which Ganeti keeps in its per-action log and shows the last lines of.
Bad input is one line and exit 1, and changes nothing.

=========  =========================================================================
create     a thin volume, or with ``origin=<map>`` a thin clone of an image or snapshot
attach     volume daemon attaches it; prints the kernel device, then the QEMU NBD URI
detach     the daemon closes it (idempotent)
remove     detaches it here if needed, then deletes its map and private blocks
grow       to ``VOL_NEW_SIZE`` MiB (through the holder if attached)
snapshot   freezes it into the read-only map ``VOL_SNAPSHOT_NAME`` (live if attached)
setinfo    records ``VOL_METADATA`` (the instance) with the volume
verify     checks the parameters
open/close nothing to do: attach already holds the volume exclusively
=========  =========================================================================
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Callable, Mapping

from snf.common.config import Config, load_config
from snf.common.errors import InvalidInput, SnfError

from . import control, volumes
from .backends import open_store
from .store import Store, check_map_name

MiB = 1 << 20
_UUID = re.compile(r"[0-9a-fA-F-]{1,64}")
PARAMETERS = {"origin": "the read-only map (an image or a snapshot) the new volume clones"}


def _env(env: Mapping[str, str], key: str) -> str:
    value = env.get(key, "")
    if not value:
        raise InvalidInput(f"{key} is missing from the environment")
    return value


def _mib(env: Mapping[str, str], key: str) -> int:
    value = _env(env, key)
    if not value.isdigit() or int(value) == 0:
        raise InvalidInput(f"{key} must be a positive number of MiB, not {value!r}")
    return int(value) * MiB


def _name(env: Mapping[str, str], key: str = "VOL_NAME") -> str:
    return check_map_name(_env(env, key))


def _disk_uuid(env: Mapping[str, str]) -> str | None:
    value = env.get("VOL_UUID") or None
    if value is not None and not _UUID.fullmatch(value):
        raise InvalidInput(f"VOL_UUID is not a UUID: {value!r}")
    return value


def _origin(env: Mapping[str, str]) -> str | None:
    value = env.get("EXTP_ORIGIN") or None
    return check_map_name(value) if value is not None else None


# --- actions: each a function of (environment, store, configuration) ---------------------------


def create(env: Mapping[str, str], store: Store, config: Config) -> str:
    name, size = _name(env), _mib(env, "VOL_SIZE")
    volumes.create_volume(store, name, size, origin=_origin(env), disk_uuid=_disk_uuid(env))
    return ""


def attach(env: Mapping[str, str], store: Store, config: Config) -> str:
    name = _name(env)
    volumes.load_map(store, name)  # a clear error for an unknown volume
    control.ensure_daemon(config.archipelagod)
    answer = control.request(config.archipelagod.run_dir, {"op": "attach", "volume": name})
    return f"{answer['device']}\n{answer['uri']}\n"


def detach(env: Mapping[str, str], store: Store, config: Config) -> str:
    name = _name(env)
    with contextlib.suppress(control.DaemonUnavailable):  # no daemon: nothing attached here
        control.request(config.archipelagod.run_dir, {"op": "detach", "volume": name})
    return ""


def remove(env: Mapping[str, str], store: Store, config: Config) -> str:
    name = _name(env)
    if not store.has_map(name):
        return ""  # already gone: removing twice is fine
    detach(env, store, config)
    volumes.remove_volume(store, name)
    return ""


def grow(env: Mapping[str, str], store: Store, config: Config) -> str:
    volumes.grow_volume(store, _name(env), _mib(env, "VOL_NEW_SIZE"))
    return ""


def snapshot(env: Mapping[str, str], store: Store, config: Config) -> str:
    name, snap = _name(env), _name(env, "VOL_SNAPSHOT_NAME")
    volumes.snapshot_volume(store, name, snap, meta={"disk_uuid": _disk_uuid(env)})
    return ""


def setinfo(env: Mapping[str, str], store: Store, config: Config) -> str:
    metadata = env.get("VOL_METADATA", "")
    instance = metadata.removeprefix("originstname+") if metadata else None
    volumes.update_meta(store, _name(env), instance=instance)
    return ""


def verify(env: Mapping[str, str], store: Store, config: Config) -> str:
    _origin(env)
    return ""


def nothing(env: Mapping[str, str], store: Store, config: Config) -> str:
    _name(env)
    return ""


ACTIONS: dict[str, Callable[[Mapping[str, str], Store, Config], str]] = {
    "create": create,
    "attach": attach,
    "detach": detach,
    "remove": remove,
    "grow": grow,
    "snapshot": snapshot,
    "setinfo": setinfo,
    "verify": verify,
    "open": nothing,
    "close": nothing,
}


def run(action: str, env: Mapping[str, str], config: Config | None = None) -> str:
    """Run one action; return what goes to stdout."""
    if action not in ACTIONS:
        raise InvalidInput(f"unknown ExtStorage action {action!r}")
    config = config or load_config()
    store = open_store(config.store)
    try:
        return ACTIONS[action](env, store, config)
    finally:
        store.close()


def main() -> None:
    action = os.path.basename(sys.argv[0])
    prog = f"archipelago {action}"
    try:
        out = run(action, os.environ)
    except SnfError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        sys.exit(1)
    except Exception as exc:  # one line for Ganeti's log, never a traceback
        print(f"{prog}: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)
    sys.stdout.write(out)
