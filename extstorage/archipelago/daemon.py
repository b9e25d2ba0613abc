"""archipelagod: the volume daemon, one per node.

It holds every volume attached on this node open (and locked in the store), serves them
over NBD on ``<run_dir>/nbd.sock`` (one export per volume, named like the volume, so that
QEMU opens ``nbd:unix:<run_dir>/nbd.sock:exportname=<volume>``), makes a kernel block device
of each (blockdev.py), and answers requests that other processes leave in the store for the
volumes it holds (live snapshots, grow).  Control: ``<run_dir>/control.sock`` (control.py).

State survives the daemon: ``<run_dir>/attached/<volume>`` records each attached volume and
its kernel device, so a daemon killed with -9 and started again takes its volumes back (its
lock owner name is the same: ``archipelagod@<host>``): nbd-client and qsd-loop devices go on
working (they reconnect); fuse-loop devices, served by this process, are made anew.  SIGTERM
flushes and closes every volume; ``detach`` is what removes a device.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import resource
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from snf.common.cli import run_main
from snf.common.config import Config, load_config
from snf.common.errors import SnfError
from snf.common.log import setup_logging

from . import blockdev, volumes
from .backends import open_store
from .control import CONTROL_SOCKET, NBD_SOCKET
from .nbd import NbdServer
from .store import LockHeld, Store
from .volume import Volume

log = logging.getLogger("snf.archipelagod")
POLL = 0.1


def owner_name() -> str:
    return f"archipelagod@{socket.gethostname()}"


class Archipelagod:
    def __init__(self, config: Config, store: Store) -> None:
        self.config = config
        self.section = config.archipelagod
        self.store = store
        self.run_dir = self.section.run_dir
        self.owner = owner_name()
        self.volumes: dict[str, Volume] = {}
        self.devices: dict[str, blockdev.KernelDevice] = {}
        self.method = blockdev.choose_method(self.section.blockdev)
        self.nbd = NbdServer(self.run_dir / NBD_SOCKET, self.volumes.get,
                             workers=self.section.workers)  # fmt: skip
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._ops = asyncio.Lock()
        self._unwatch: dict[str, Any] = {}

    @property
    def state_dir(self) -> Path:
        return self.run_dir / "attached"

    def uri(self, volume: str) -> str:
        return f"kvm:nbd:unix:{self.run_dir / NBD_SOCKET}:exportname={volume}"

    # --- volumes ---------------------------------------------------------------------------------

    async def attach(self, name: str) -> dict[str, Any]:
        async with self._ops:
            if name not in self.volumes:
                vol = await asyncio.to_thread(
                    Volume, self.store, name, self.owner, stale_after=volumes.LOCK_STALE
                )
                self.volumes[name] = vol
                self._watch(name)
                log.info("attached %s (%d bytes)", name, vol.size)
            device = self.devices.get(name)
            if device is None and self.method is not None:
                try:
                    device = await asyncio.to_thread(
                        blockdev.make_device, self.method, name, self.run_dir / NBD_SOCKET,
                        self.run_dir, self.section.log_file, self.volumes[name],
                    )  # fmt: skip
                except BaseException:
                    await self._close_volume(name)
                    raise
                self.devices[name] = device
                log.info("%s is %s (%s)", name, device.device, device.method)
            self._save(name)
            return {"device": device.device if device else "", "uri": self.uri(name)}

    async def detach(self, name: str) -> dict[str, Any]:
        async with self._ops:
            device = self.devices.pop(name, None)
            if device is not None:
                await asyncio.to_thread(blockdev.remove_device, device)
            await self._close_volume(name)
            (self.state_dir / name).unlink(missing_ok=True)
            log.info("detached %s", name)
            return {}

    async def _close_volume(self, name: str) -> None:
        await self.nbd.drop_export(name)
        unwatch = self._unwatch.pop(name, None)
        if unwatch:
            unwatch()
        vol = self.volumes.pop(name, None)
        if vol is not None:
            await asyncio.to_thread(vol.close)

    def _save(self, name: str) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        device = self.devices.get(name)
        state = {"device": json.loads(device.to_json()) if device else None}
        tmp = self.state_dir / f".{name}.tmp"
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self.state_dir / name)

    def _watch(self, name: str) -> None:
        loop = asyncio.get_running_loop()
        self._unwatch[name] = self.store.wake_on_request(
            name, lambda: loop.call_soon_threadsafe(self._wake.set)
        )

    async def restore(self) -> None:
        """Take back the volumes a previous daemon on this node had attached."""
        if not self.state_dir.is_dir():
            return
        for path in sorted(self.state_dir.iterdir()):
            if path.name.startswith("."):
                continue
            name = path.name
            try:
                state = json.loads(path.read_text())
                if state.get("device"):
                    device = blockdev.KernelDevice(**state["device"])
                    if blockdev.device_usable(device):
                        self.devices[name] = device
                    else:  # its server died with the old daemon: clean up, make a new one
                        log.warning("%s: %s no longer works; making a new device",
                                    name, device.device)  # fmt: skip
                        await asyncio.to_thread(blockdev.remove_device, device)
                await self.attach(name)
                log.info("took back %s after a restart", name)
            except (SnfError, OSError, ValueError) as exc:
                log.error("cannot take back %s: %s", name, exc)

    # --- requests from other processes, lock refresh -------------------------------------------

    async def maintain(self) -> None:
        last_refresh = time.monotonic()
        while not self._stop.is_set():
            for name in list(self.volumes):
                for request_id, req in await asyncio.to_thread(self.store.take_requests, name):
                    answer = await self._handle(name, req)
                    await asyncio.to_thread(self.store.answer_request, name, request_id, answer)
            if time.monotonic() - last_refresh > volumes.LOCK_REFRESH:
                last_refresh = time.monotonic()
                for name in list(self.volumes):
                    try:
                        await asyncio.to_thread(self.store.refresh_lock, name, self.owner)
                    except LockHeld as exc:
                        log.error("lost the lock of %s: %s", name, exc)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL)

    async def _handle(self, name: str, req: dict[str, Any]) -> dict[str, Any]:
        vol = self.volumes.get(name)
        try:
            if vol is None:
                raise SnfError(f"{name} is not attached here any more")
            if req.get("op") == "snapshot":
                snap = str(req["snapshot"])
                await asyncio.to_thread(vol.snapshot, snap, dict(req.get("meta") or {}))
                log.info("snapshot %s of %s taken live", snap, name)
                return {"ok": True}
            if req.get("op") == "grow":
                await asyncio.to_thread(vol.grow, int(req["size"]))
                log.info("grew %s to %d bytes", name, vol.size)
                return {"ok": True}
            raise SnfError(f"unknown request {req.get('op')!r}")
        except (SnfError, KeyError, ValueError, OSError) as exc:
            log.error("request %s on %s failed: %s", req.get("op"), name, exc)
            return {"ok": False, "error": str(exc)}

    # --- control socket -------------------------------------------------------------------------

    async def _serve_control(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            line = await reader.readline()
            answer = await self._dispatch(line)
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _dispatch(self, line: bytes) -> dict[str, Any]:
        try:
            req = json.loads(line)
            op = req.get("op")
            if op == "ping":
                return {"ok": True, "pid": os.getpid()}
            if op == "list":
                return {"ok": True, "volumes": {n: self.devices.get(n) and self.devices[n].device
                                                for n in self.volumes}}  # fmt: skip
            name = str(req.get("volume", ""))
            if op == "attach":
                return {"ok": True, **await self.attach(name)}
            if op == "detach":
                return {"ok": True, **await self.detach(name)}
            return {"ok": False, "error": f"unknown operation {op!r}", "kind": "InvalidInput"}
        except SnfError as exc:
            return {"ok": False, "error": str(exc), "kind": type(exc).__name__}
        except (ValueError, AttributeError, OSError) as exc:
            log.exception("control request failed")
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}

    # --- running ----------------------------------------------------------------------------------

    async def run(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        await self.nbd.start()
        control_path = self.run_dir / CONTROL_SOCKET
        control_path.unlink(missing_ok=True)
        server = await asyncio.start_unix_server(self._serve_control, path=str(control_path))
        os.chmod(control_path, 0o600)
        await self.restore()
        log.info("archipelagod %d serving on %s (kernel devices: %s)",
                 os.getpid(), self.run_dir, self.method or "none")  # fmt: skip
        maintainer = asyncio.create_task(self.maintain())
        await self._stop.wait()
        log.info("stopping: closing %d volumes", len(self.volumes))
        server.close()
        maintainer.cancel()
        for name in list(self.volumes):
            device = self.devices.get(name)
            if device is not None and device.method == "fuse-loop":
                # This process serves the device: it cannot outlive us.
                log.warning("%s: %s stops working with this daemon", name, device.device)
                await asyncio.to_thread(blockdev.remove_device, device)
            await self._close_volume(name)  # other devices stay; a new daemon takes them back
        await self.nbd.close()
        control_path.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    config = load_config()
    section = config.archipelagod
    setup_logging("archipelagod", config.log.level)
    section.run_dir.mkdir(parents=True, exist_ok=True)
    pid_lock = open(section.run_dir / "archipelagod.pid", "a+")  # noqa: SIM115 - held for life
    try:
        fcntl.flock(pid_lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print("archipelagod: another archipelagod runs on this node", file=sys.stderr)
        return 1
    pid_lock.truncate(0)
    pid_lock.write(f"{os.getpid()}\n")
    pid_lock.flush()
    # Every attached volume keeps descriptors open (objects, FUSE, sockets): use the hard limit.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    store = open_store(config.store)
    try:
        asyncio.run(Archipelagod(config, store).run())
    finally:
        store.close()
    return 0


def cli() -> None:
    run_main(main, prog="archipelagod")


if __name__ == "__main__":
    cli()
