"""The Ganeti OS scripts of snf-image: create, import, export, rename and verify.

Every script in ``provider/`` is a link to one shim that calls :func:`main`, which
dispatches on the name it was called by.  Ganeti resets the environment of OS scripts, so
all configuration comes from ``/etc/snf``; messages go to standard error, which Ganeti
keeps in ``/var/log/ganeti/os/`` and quotes (last 20 lines) when the script fails.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping

from snf.common.config import Config, load_config
from snf.common.errors import InvalidInput, SnfError

from . import accounts
from .customize import customize
from .deploy import deploy, export_disk, import_disk
from .ganeti_env import OsEnv, parse_os_env
from .params import ImageParams, params_from_env
from .tasks import Context


def say(message: str) -> None:
    """One line in Ganeti's OS log (a multi-line message from a tool is joined)."""
    line = " / ".join(part.strip() for part in message.splitlines() if part.strip())
    print(f"snf-image: {line}", file=sys.stderr, flush=True)


def check_params(params: ImageParams) -> None:
    """What ``params`` cannot check alone: the keys and the hash."""
    if params.auth_keys:
        accounts.parse_auth_keys(params.auth_keys)
    if params.passwd_hash is not None:
        accounts.check_hash(params.passwd_hash)


def _disk(env: OsEnv, what: str) -> tuple[str, str | None]:
    if not env.disks or env.disks[0].path is None:
        raise InvalidInput(f"{what} needs the instance's first disk as a block device or file")
    return env.disks[0].path, env.disks[0].uuid


def create(environ: Mapping[str, str], config: Config) -> None:
    env = parse_os_env(environ)
    params = params_from_env(environ)
    check_params(params)
    disk, disk_uuid = _disk(env, "create")
    started = time.monotonic()
    say(f"deploying {params.source.kind} {params.source.value} onto {disk} for {env.instance_name}")
    deploy(disk, disk_uuid, params, config, say)
    customize(disk, Context(params, env, say), config.image)
    say(f"{env.instance_name} ready in {time.monotonic() - started:.1f} s")


def verify(environ: Mapping[str, str], config: Config) -> None:
    params = params_from_env(environ)
    check_params(params)


def export(environ: Mapping[str, str], config: Config) -> None:
    env = parse_os_env(environ)
    if env.export_device is None:
        raise InvalidInput("export needs EXPORT_DEVICE")
    fd = environ.get("EXP_SIZE_FD", "")
    export_disk(env.export_device, sys.stdout.fileno(), int(fd) if fd.isdigit() else None)


def import_(environ: Mapping[str, str], config: Config) -> None:
    env = parse_os_env(environ)
    if env.import_device is None:
        raise InvalidInput("import needs IMPORT_DEVICE")
    written = import_disk(env.import_device, sys.stdin.fileno())
    say(f"imported {written >> 20} MiB onto {env.import_device}")


def rename(environ: Mapping[str, str], config: Config) -> None:
    env = parse_os_env(environ)
    say(
        f"{env.old_instance_name} is now {env.instance_name}: the guest keeps its own host name "
        "(it was set at creation and is the guest's to change)"
    )


ACTIONS: dict[str, Callable[[Mapping[str, str], Config], None]] = {
    "create": create,
    "verify": verify,
    "export": export,
    "import": import_,
    "rename": rename,
}


def run(action: str, environ: Mapping[str, str], config: Config | None = None) -> None:
    if action not in ACTIONS:
        raise InvalidInput(f"unknown OS action {action!r}")
    ACTIONS[action](environ, config or load_config())


def main() -> None:
    action = os.path.basename(sys.argv[0])
    try:
        run(action, os.environ)
    except SnfError as exc:
        say(f"{action} failed: {exc}")
        sys.exit(1)
    except Exception as exc:  # one line for Ganeti's log, never a traceback
        say(f"{action} failed: internal error: {type(exc).__name__}: {exc}")
        sys.exit(1)
