"""NIC setup and teardown on a node: what Ganeti's KVM hypervisor and our hooks run.

Entry points (committed shims in ``ganeti/`` call them; Ganeti resets the environment, so
settings come from /etc/snf):

- ``kvm-vif-bridge`` (Ganeti 3.0's kvm-ifup runs it), ``kvm-ifup-custom`` and
  ``network/<mode>/up`` (newer Ganeti): set the tap up from Ganeti's NIC environment;
- ``kvm-ifdown-custom`` and ``network/<mode>/down``: tear the tap's setup down;
- the post-hooks of instance stop, remove, migrate and failover: tear down every NIC of
  that instance whose tap is gone from this node (Ganeti 3.0 has no ifdown).

Setup records the NIC's environment in ``[network] state_dir/<tap>.json`` so that teardown
removes exactly what setup added.  With ``[network] dry_run`` the commands are printed.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from snf.common.config import Config, load_config
from snf.common.errors import CommandFailed, InvalidInput, SnfError

from .announce import announce
from .commands import Action, Command, Write, dry_run, profile_chains, setup, teardown
from .nic_env import IFNAME, Nic, parse_nic_env

#: The variables of Ganeti's NIC environment that a teardown needs again.
SAVED = (
    "INSTANCE", "INTERFACE", "MAC", "MODE", "LINK", "IP", "INTERFACE_INDEX", "TAGS",
    "NETWORK_NAME", "NETWORK_UUID", "NETWORK_TAGS", "NETWORK_SUBNET", "NETWORK_GATEWAY",
    "NETWORK_SUBNET6", "NETWORK_GATEWAY6", "NETWORK_MAC_PREFIX",
)  # fmt: skip


def _atomic_write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def execute(actions: list[Action], *, dry: bool) -> None:
    """Run the actions in order (or print them); a failing checked command stops."""
    if dry:
        sys.stdout.write(dry_run(actions))
        return
    for action in actions:
        if isinstance(action, Write):
            path = Path(action.path)
            if action.path.startswith("/proc/sys/"):
                path.write_text(action.value + "\n")
            else:  # the nfdhcpd binding: nfdhcpd must never read half a file
                _atomic_write(path, action.value)
            continue
        assert isinstance(action, Command)
        done = subprocess.run(action.argv, capture_output=True, text=True, check=False)
        if done.returncode != 0 and action.check:
            raise CommandFailed(list(action.argv), done.returncode, done.stderr)


def _bridge_mtu(nic: Nic) -> int | None:
    if nic.mode != "bridged" or nic.link is None:
        return None
    try:
        return int(Path("/sys/class/net", nic.link, "mtu").read_text())
    except (OSError, ValueError):
        raise InvalidInput(f"LINK {nic.link}: no such bridge on this node") from None


def _uplink(nic: Nic, family: str) -> str | None:
    """The interface of the default route (``-4`` or ``-6``) in the routed NIC's table."""
    if nic.mode != "routed" or (family == "-6" and nic.subnet6 is None):
        return None
    out = subprocess.run(
        ["ip", family, "route", "show", "table", str(nic.link), "default"],
        capture_output=True, text=True, check=False,
    ).stdout.split()  # fmt: skip
    return out[out.index("dev") + 1] if "dev" in out[:-1] else None


def _state(config: Config, tap: str) -> Path:
    return config.network.state_dir / f"{tap}.json"


def up(env: Mapping[str, str], config: Config) -> Nic:
    nic = parse_nic_env(env)
    uplink6 = _uplink(nic, "-6")
    bindings = str(config.nfdhcpd.bindings_dir)
    actions = profile_chains() if nic.firewall else []
    actions += setup(nic, bindings_dir=bindings, uplink6=uplink6, mtu=_bridge_mtu(nic))
    execute(actions, dry=config.network.dry_run)
    if not config.network.dry_run:
        saved = {k: env[k] for k in SAVED if env.get(k)}
        state = {"env": saved, "uplink6": uplink6}
        _atomic_write(_state(config, nic.interface), json.dumps(state, indent=1) + "\n", 0o600)
        if nic.mode == "routed":  # the uplink's neighbours learn where the addresses went
            uplink4 = _uplink(nic, "-4")
            if uplink4 is not None and nic.ip is not None:
                announce(uplink4, nic.ip, None)
            if uplink6 is not None and nic.eui64 is not None:
                announce(uplink6, None, nic.eui64)
    return nic


def down(tap: str, config: Config) -> bool:
    """Tear down what setup added for ``tap``; False if it has no recorded setup."""
    path = _state(config, tap)
    try:
        state = json.loads(path.read_text())
        nic = parse_nic_env(state["env"])
    except FileNotFoundError:
        return False
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidInput(f"{path}: not a NIC state file ({exc})") from None
    bindings = str(config.nfdhcpd.bindings_dir)
    execute(
        teardown(nic, bindings_dir=bindings, uplink6=state.get("uplink6")),
        dry=config.network.dry_run,
    )
    if not config.network.dry_run:
        path.unlink(missing_ok=True)
    return True


def down_instance(instance: str, config: Config) -> list[str]:
    """Tear down the NICs of ``instance`` whose taps are gone from this node."""
    done = []
    for path in sorted(config.network.state_dir.glob("*.json")):
        try:
            env = json.loads(path.read_text())["env"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        tap = path.stem
        if env.get("INSTANCE") == instance and not Path("/sys/class/net", tap).exists():
            down(tap, config)
            done.append(tap)
    return done


def _fail(prog: str, exc: Exception) -> None:
    text = " / ".join(str(exc).splitlines()) or type(exc).__name__
    print(f"{prog}: {text}", file=sys.stderr, flush=True)
    sys.exit(1)


def main() -> None:
    """Every shim: dispatch on the name it was called by (and its folder, for network/)."""
    path = Path(sys.argv[0])
    name = path.name
    action = "down" if name in ("kvm-ifdown-custom", "down") else "up"
    prog = f"snf-network {action}"
    try:
        config = load_config()
        if name.endswith("-post") or "-post.d" in str(path.parent):
            instance = os.environ.get("GANETI_INSTANCE_NAME", "")
            if instance:
                down_instance(instance, config)
            return
        if action == "up":
            up(os.environ, config)
        else:
            tap = os.environ.get("INTERFACE") or (sys.argv[1] if len(sys.argv) > 1 else "")
            if not IFNAME.fullmatch(tap):
                raise InvalidInput(f"INTERFACE {tap!r} is not an interface name")
            down(tap, config)
    except SnfError as exc:
        _fail(prog, exc)
    except Exception as exc:  # one line for Ganeti's log, never a traceback
        _fail(prog, RuntimeError(f"internal error: {type(exc).__name__}: {exc}"))
