"""Kernel block devices for volumes served over NBD.

Ganeti's ``attach`` must print a block device.  Three ways to make one:

* ``nbd-client``: the kernel's nbd driver on the daemon's NBD export
  (``nbd-client -unix SOCK /dev/nbdN -N VOLUME``);
* ``fuse-loop`` (the default where the kernel has no nbd, as on the CI machines): the
  volume daemon itself offers the volume as a one-file FUSE filesystem (fuse.py) and
  ``losetup --direct-io`` makes a loop device of that file.  Fast; but the device dies with
  the daemon: a daemon killed and restarted gives the volume a new device at the next attach;
* ``qsd-loop``: ``qemu-storage-daemon`` connects to the NBD export and offers it as a FUSE
  file for the loop device.  It runs detached (its own session, no inherited pipes: Ganeti
  waits for the attach script's pipes to close) and reconnects to the NBD socket for 30 s,
  so a restarted volume daemon takes over without the device failing; but QEMU 7.2's FUSE
  export must be fed one request at a time (``serialize_fuse``), which makes it slow.

The argv builders are pure (the dry run and the tests print them); ``make_device`` and
``remove_device`` run them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from snf.common.errors import CommandFailed, SnfError

from .fuse import FuseExport
from .nbd import BlockDevice
from .store import check_map_name

RECONNECT_DELAY = 30
#: Threads per FUSE export: on 2 cores, 2 beat 4 for sequential I/O and halve the memory.
FUSE_WORKERS = 2


class BlockDeviceError(SnfError):
    """A kernel block device could not be made or removed."""


#: The in-process FUSE exports of this process, by mountpoint (fuse-loop devices).
_EXPORTS: dict[str, FuseExport] = {}


@dataclass(frozen=True)
class KernelDevice:
    method: str  # "nbd-client" | "fuse-loop" | "qsd-loop"
    device: str
    mountpoint: str = ""
    pidfile: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> KernelDevice:
        return cls(**json.loads(text))


def kernel_has_nbd() -> bool:
    return Path("/sys/module/nbd").exists() or Path("/dev/nbd0").exists()


def choose_method(configured: str) -> str | None:
    """The method to use: None means no kernel device (userspace access only)."""
    if configured == "none":
        return None
    if configured == "auto":
        return "nbd-client" if kernel_has_nbd() else "fuse-loop"
    return configured


def qsd_argv(volume: str, nbd_socket: Path, mountpoint: Path, pidfile: Path) -> list[str]:
    check_map_name(volume)  # no commas or '=' can reach QEMU's option parser
    return [
        "qemu-storage-daemon",
        "--blockdev",
        f"driver=nbd,server.type=unix,server.path={nbd_socket},export={volume},"
        f"node-name=vol,reconnect-delay={RECONNECT_DELAY}",
        "--export",
        f"type=fuse,id=exp,node-name=vol,mountpoint={mountpoint},writable=on",
        "--pidfile",
        str(pidfile),
    ]


def losetup_argv(mountpoint: Path) -> list[str]:
    return ["losetup", "--find", "--show", "--direct-io=on", str(mountpoint)]


def serialize_fuse(mountpoint: Path) -> None:
    """Let the kernel send qemu-storage-daemon one FUSE request at a time.

    QEMU 7.2's FUSE export reads every request into one shared buffer, so concurrent
    writes (a direct-I/O loop device issues them) can land with another request's data:
    seen here as fio --verify failures.  FUSE's max_background = 1 keeps one asynchronous
    request in flight; verified with fio --verify at iodepth 16.
    """
    connections = Path("/sys/fs/fuse/connections")
    if not any(connections.iterdir()):
        subprocess.run(["mount", "-t", "fusectl", "fusectl", str(connections)],
                       capture_output=True, timeout=10)  # fmt: skip
    knob = connections / str(os.stat(mountpoint).st_dev) / "max_background"
    try:
        knob.write_text("1\n")
    except OSError as exc:
        raise BlockDeviceError(f"cannot limit FUSE requests for {mountpoint}: {exc}") from None


def nbd_client_argv(volume: str, nbd_socket: Path, device: str) -> list[str]:
    return ["nbd-client", "-unix", str(nbd_socket), device, "-N", check_map_name(volume)]


def _run(argv: list[str], timeout: float = 30) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise CommandFailed(argv, proc.returncode, proc.stdout + proc.stderr)
    return proc.stdout


def _loops_of(path: Path) -> list[str]:
    out = subprocess.run(["losetup", "-j", str(path)], capture_output=True, text=True).stdout
    return [line.split(":", 1)[0] for line in out.splitlines() if line]


def _free_nbd() -> str:
    for dev in sorted(Path("/sys/block").glob("nbd*")):
        if not (dev / "pid").exists():
            return f"/dev/{dev.name}"
    raise BlockDeviceError("no free /dev/nbd device")


def make_device(
    method: str,
    volume: str,
    nbd_socket: Path,
    work_dir: Path,
    log_file: Path,
    device: BlockDevice | None = None,
) -> KernelDevice:
    """Make a kernel device for ``volume`` (``device`` is the open volume, for fuse-loop)."""
    if method == "nbd-client":
        dev = _free_nbd()
        _run(nbd_client_argv(volume, nbd_socket, dev))
        return KernelDevice("nbd-client", dev)
    if method == "fuse-loop":
        if device is None:
            raise BlockDeviceError("fuse-loop needs the open volume")
        return _fuse_loop(volume, device, work_dir)
    mountpoint = work_dir / "qsd" / volume
    pidfile = work_dir / "qsd" / f"{volume}.pid"
    for folder in (mountpoint.parent, pidfile.parent):
        folder.mkdir(parents=True, exist_ok=True)
    if not os.path.ismount(mountpoint):
        mountpoint.touch()
        with open(log_file, "ab") as log:
            subprocess.Popen(
                qsd_argv(volume, nbd_socket, mountpoint, pidfile),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                close_fds=True,
            )
        deadline = time.monotonic() + 15
        while not os.path.ismount(mountpoint):
            if time.monotonic() > deadline:
                _stop_qsd(pidfile)
                raise BlockDeviceError(
                    f"qemu-storage-daemon did not export {volume} within 15 s (see {log_file})"
                )
            time.sleep(0.02)
    loops = _loops_of(mountpoint)
    if not loops:
        serialize_fuse(mountpoint)  # QEMU 7.2's FUSE export: one request at a time
    loop = loops[0] if loops else _run(losetup_argv(mountpoint)).strip()
    return KernelDevice("qsd-loop", loop, str(mountpoint), str(pidfile))


def _fuse_loop(volume: str, device: BlockDevice, work_dir: Path) -> KernelDevice:
    mountpoint = work_dir / "fuse" / check_map_name(volume)
    mountpoint.parent.mkdir(parents=True, exist_ok=True)
    _clear_stale_mount(mountpoint)
    export = FuseExport(device, mountpoint, workers=FUSE_WORKERS)
    export.start()
    _EXPORTS[str(mountpoint)] = export
    try:
        loop = _run(losetup_argv(mountpoint)).strip()
    except BaseException:
        _EXPORTS.pop(str(mountpoint)).close()
        raise
    return KernelDevice("fuse-loop", loop, str(mountpoint))


def _clear_stale_mount(mountpoint: Path) -> None:
    """A mount left by a daemon that died: its loop devices and the dead FUSE mount go."""
    if str(mountpoint) in _EXPORTS or not FuseExport.is_mounted(mountpoint):
        return
    for loop in _loops_of(mountpoint):
        subprocess.run(["losetup", "-d", loop], capture_output=True, timeout=30)
    subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True, timeout=30)


def remove_device(dev: KernelDevice) -> None:
    """Undo make_device; safe to call again after a partial failure."""
    if dev.method == "nbd-client":
        subprocess.run(["nbd-client", "-d", dev.device], capture_output=True, timeout=30)
        return
    mountpoint = Path(dev.mountpoint)
    for loop in _loops_of(mountpoint):
        _run(["losetup", "-d", loop])
    if dev.method == "fuse-loop":
        export = _EXPORTS.pop(str(mountpoint), None)
        if export is not None:
            export.close()
        else:
            _clear_stale_mount(mountpoint)
        return
    _stop_qsd(Path(dev.pidfile))
    deadline = time.monotonic() + 10
    while os.path.ismount(mountpoint) and time.monotonic() < deadline:
        time.sleep(0.02)
    if os.path.ismount(mountpoint):
        subprocess.run(["fusermount", "-u", "-z", str(mountpoint)], capture_output=True)
    mountpoint.unlink(missing_ok=True)


def _stop_qsd(pidfile: Path) -> None:
    try:
        pid = int(pidfile.read_text())
    except (FileNotFoundError, ValueError):
        return
    try:
        os.kill(pid, signal.SIGTERM)
        for _ in range(200):
            if not _alive(pid):
                break
            time.sleep(0.025)
        else:
            os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    pidfile.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    """True unless the process is gone or a zombie (its parent may reap it late)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def device_usable(dev: KernelDevice) -> bool:
    """Still working after a restart of the volume daemon?  (fuse-loop devices never are:
    their FUSE server was the old daemon.)"""
    if dev.method == "nbd-client":
        return Path(dev.device).exists()
    if dev.method == "fuse-loop":
        return str(Path(dev.mountpoint)) in _EXPORTS
    return os.path.ismount(dev.mountpoint) and dev.device in _loops_of(Path(dev.mountpoint))
