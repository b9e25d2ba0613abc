"""The archipelago ExtStorage provider in a real Ganeti cluster (testbed, fake hypervisor).

The test process reads the shared `dir` store directly (its host path), the way an operator's
tools do; everything Ganeti does runs inside the node's namespaces.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from snf.archipelago import control, volumes
from snf.archipelago.hashing import BLOCK_SIZE
from snf.archipelago.store_dir import DirStore
from snf.common.errors import CommandFailed
from tests.testbed import install, plan, test_providers
from tests.testbed.cluster import Cluster
from tests.testbed.test_providers import OS_NAME

pytestmark = pytest.mark.ganeti
MiB = 1 << 20
RUN_DIR = "/run/snf/archipelagod"


@pytest.fixture(scope="module")
def arch(cluster1: Cluster) -> Cluster:
    for node in cluster1.plan.nodes:
        install.install_snf(node)
    return cluster1


@pytest.fixture
def store(arch: Cluster) -> Iterator[DirStore]:
    test_providers.clear_calls(arch.plan.master)
    s = DirStore(plan.SHARED_STORE)
    yield s
    s.close()


def add(c: Cluster, name: str, size: str = "64", **params: str) -> None:
    disk = f"0:size={size},provider=archipelago" + "".join(f",{k}={v}" for k, v in params.items())
    c.gnt("gnt-instance", "add", "-t", "ext", "--disk", disk, "-o", OS_NAME,
          "-n", c.info.master, "--no-name-check", "--no-ip-check", "-B", "memory=64",
          name)  # fmt: skip


def remove(c: Cluster, name: str) -> None:
    c.gnt("gnt-instance", "remove", "-f", "--shutdown-timeout=0", name, check=False)


def volume_of(c: Cluster, store: DirStore, instance: str) -> str:
    """The instance's volume, found the way snf-image will: by Ganeti's disk UUID."""
    (create,) = [
        call for call in test_providers.calls(c.plan.master)
        if call["kind"] == "os" and call["action"] == "create"
        and call["env"]["INSTANCE_NAME"] == instance
    ]  # fmt: skip
    found = volumes.lookup_disk(store, create["env"]["DISK_0_UUID"])
    assert found is not None
    return found["volume"]


def attached_devices(c: Cluster) -> dict[str, str]:
    return c.master.call(_list_daemon)


def _list_daemon() -> dict[str, str]:
    return control.request(Path(RUN_DIR), {"op": "list"})["volumes"]


def image_bytes(size: int) -> bytes:
    return os.urandom(size)


def test_thin_volume_lifecycle(arch: Cluster, store: DirStore) -> None:
    name = "vm-arch.snf.test"
    objects_before = {o for o, _, _ in store.iter_objects()}
    add(arch, name)
    try:
        vol = volume_of(arch, store, name)
        # The OS script wrote through /dev/loopN -> FUSE -> NBD -> archipelagod -> the store.
        assert volumes.peek(store, vol, 0, 64).startswith(b"SNFTEST-OS " + name.encode())
        info = volumes.describe(store, vol)
        assert info["size"] == 64 * MiB and info["instance"] == name
        assert info["holder"] == f"archipelagod@{arch.plan.master.name}"
        assert vol in attached_devices(arch)

        arch.gnt("gnt-instance", "shutdown", name)
        assert volumes.describe(store, vol)["holder"] is None
        assert vol not in attached_devices(arch)
        arch.gnt("gnt-instance", "startup", name)
        assert volumes.describe(store, vol)["holder"] is not None

        arch.gnt("gnt-instance", "grow-disk", name, "0", "32M")
        assert volumes.describe(store, vol)["size"] == 96 * MiB
    finally:
        remove(arch, name)
    assert not store.has_map(vol)
    assert {o for o, _, _ in store.iter_objects()} == objects_before


def test_clone_of_an_image_is_thin_and_never_changes_the_image(
    arch: Cluster, store: DirStore
) -> None:
    data = image_bytes(2 * BLOCK_SIZE + 1000)
    volumes.import_image(store, "img-arch", io.BytesIO(data))
    try:
        objects_before = {o for o, _, _ in store.iter_objects()}
        blocks_before = {b for b, _, _ in store.iter_blocks()}
        name = "vm-clone.snf.test"
        add(arch, name, origin="img-arch")
        try:
            vol = volume_of(arch, store, name)
            assert (
                volumes.lookup_disk(store, volumes.describe(store, vol)["disk_uuid"])["origin"]
                == "img-arch"
            )
            marker = b"SNFTEST-OS " + name.encode() + b"\n"
            head = volumes.peek(store, vol, 0, 2 * BLOCK_SIZE + 1000)
            assert head == marker + data[len(marker) :]
            # Only the block the OS script wrote was copied; the image is untouched.
            new_objects = {o for o, _, _ in store.iter_objects()} - objects_before
            assert len(new_objects) == 1
            assert {b for b, _, _ in store.iter_blocks()} == blocks_before
            assert volumes.peek(store, "img-arch", 0, len(data)) == data
        finally:
            remove(arch, name)
        assert {o for o, _, _ in store.iter_objects()} == objects_before  # private ones freed
        assert {b for b, _, _ in store.iter_blocks()} == blocks_before  # shared ones kept
    finally:
        volumes.remove_map(store, "img-arch")


@pytest.mark.parametrize(
    "size,origin,message",
    [
        ("4", "img-small", "below the size of its origin"),
        ("64", "no-such-image", "no volume, snapshot or image named no-such-image"),
    ],
)
def test_bad_create_fails_the_job_with_one_clear_line(
    arch: Cluster, store: DirStore, size: str, origin: str, message: str
) -> None:
    volumes.import_image(store, "img-small", io.BytesIO(image_bytes(BLOCK_SIZE + 1)))
    maps = store.list_maps()
    try:
        with pytest.raises(CommandFailed) as failed:
            add(arch, "vm-bad.snf.test", size=size, origin=origin)
        assert "archipelago create: " in failed.value.output
        assert message in failed.value.output
        assert "Traceback" not in failed.value.output
        assert store.list_maps() == maps
    finally:
        volumes.remove_map(store, "img-small")


def _write_pattern(device: str, offset: int, pattern: int, length: int) -> None:
    fd = os.open(device, os.O_WRONLY)
    try:
        os.pwrite(fd, bytes([pattern]) * length, offset)
        os.fsync(fd)
    finally:
        os.close(fd)


def test_live_snapshot_while_the_volume_is_written(arch: Cluster, store: DirStore) -> None:
    name = "vm-snap.snf.test"
    add(arch, name)
    try:
        vol = volume_of(arch, store, name)
        device = attached_devices(arch)[vol]
        arch.master.call(_write_pattern, device, 0, 0xAA, 4 * MiB)
        # Keep writing elsewhere on the device while the snapshot is taken.
        writer = subprocess.Popen(
            [*arch.master.enter_argv(), "dd", "if=/dev/urandom", f"of={device}", "bs=1M",
             "seek=32", "count=24", "oflag=direct", "status=none"]
        )  # fmt: skip
        try:
            time.sleep(0.2)
            t0 = time.monotonic()
            snap = volumes.snapshot_volume(store, vol, "snap-live")
            took = time.monotonic() - t0
        finally:
            assert writer.wait(timeout=120) == 0
        assert snap["readonly"] and snap["source"] == vol
        assert took < 10
        assert volumes.peek(store, "snap-live", 0, 4 * MiB) == b"\xaa" * 4 * MiB
        # The volume goes on; the snapshot does not change.
        arch.master.call(_write_pattern, device, 0, 0x55, MiB)
        assert volumes.peek(store, vol, 0, MiB) == b"\x55" * MiB
        assert volumes.peek(store, "snap-live", 0, MiB) == b"\xaa" * MiB
        # Hashed, the snapshot is an image: a new volume cloned from it reads the same.
        volumes.hash_snapshot(store, "snap-live")
        volumes.create_volume(store, "vol-from-snap", 64 * MiB, origin="snap-live")
        assert volumes.peek(store, "vol-from-snap", 0, 4 * MiB) == b"\xaa" * 4 * MiB
        volumes.remove_volume(store, "vol-from-snap")
    finally:
        remove(arch, name)
        if store.has_map("snap-live"):
            volumes.remove_map(store, "snap-live")


def _qemu_io(volume: str, *commands: str) -> str:
    argv = ["qemu-io", "-f", "raw"]
    for command in commands:
        argv += ["-c", command]
    argv.append(f"nbd:unix:{RUN_DIR}/nbd.sock:exportname={volume}")
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    return proc.stdout + proc.stderr


def test_qemu_reads_and_writes_through_the_nbd_uri(arch: Cluster, store: DirStore) -> None:
    name = "vm-nbd.snf.test"
    add(arch, name)
    try:
        vol = volume_of(arch, store, name)
        out = arch.master.call(_qemu_io, vol, "write -P 0x3c 8M 1M", "flush",
                               "read -P 0x3c 8M 1M")  # fmt: skip
        assert "Pattern verification failed" not in out and "read 1048576/1048576" in out, out
        assert volumes.peek(store, vol, 8 * MiB, MiB) == b"\x3c" * MiB
        out = arch.master.call(_qemu_io, vol, "read 0 10")
        assert "read 10/10" in out
    finally:
        remove(arch, name)


def _kill_and_restart_daemon() -> dict[str, Any]:
    import signal
    import sys

    pid = int(Path(RUN_DIR, "archipelagod.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.3)
    log = open("/var/log/snf/archipelagod.log", "ab")  # noqa: SIM115 - handed to the child
    subprocess.Popen([sys.executable, "-m", "snf.archipelago.daemon"], stdout=log, stderr=log,
                     stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    return {"killed": pid}


@pytest.mark.parametrize("method", ["fuse-loop", "qsd-loop"])
def test_daemon_killed_with_9_loses_no_flushed_write(
    arch: Cluster, store: DirStore, method: str
) -> None:
    dropin = arch.node_path("/etc/snf/conf.d/60-blockdev.toml")
    dropin.parent.mkdir(exist_ok=True)
    dropin.write_text(f'[archipelagod]\nblockdev = "{method}"\n')
    _stop_daemon(arch)
    name = "vm-kill.snf.test"
    add(arch, name)
    try:
        vol = volume_of(arch, store, name)
        device = attached_devices(arch)[vol]
        arch.master.call(_write_pattern, device, 4 * MiB, 0x77, 2 * MiB)  # fsync'd
        arch.master.call(_kill_and_restart_daemon)
        if method == "qsd-loop":
            # The device waited for the new daemon, which took the volume back.
            arch.master.call(_write_pattern, device, 12 * MiB, 0x99, MiB)
        else:
            # The old device died with its FUSE server; the new daemon made a new one.
            arch.master.call(_write_pattern, _wait_attached(arch, vol), 12 * MiB, 0x99, MiB)
        assert volumes.peek(store, vol, 4 * MiB, 2 * MiB) == b"\x77" * 2 * MiB
        assert volumes.peek(store, vol, 12 * MiB, MiB) == b"\x99" * MiB
        assert volumes.describe(store, vol)["holder"] == f"archipelagod@{arch.plan.master.name}"
    finally:
        remove(arch, name)
        dropin.unlink()
        _stop_daemon(arch)


def _fio_verify(device: str, rw: str, bs: str) -> str:
    argv = ["fio", "--name=integrity", f"--filename={device}", "--direct=1", "--ioengine=libaio",
            f"--rw={rw}", f"--bs={bs}", "--size=48M", "--iodepth=16", "--verify=crc32c",
            "--do_verify=1", "--verify_fatal=1", "--verify_state_save=0"]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    return f"exit {proc.returncode}\n{proc.stdout}{proc.stderr}"


@pytest.mark.parametrize("rw,bs", [("randwrite", "64k"), ("write", "1M"), ("randwrite", "4k")])
def test_concurrent_writes_through_the_block_device_keep_every_byte(
    arch: Cluster, store: DirStore, rw: str, bs: str
) -> None:
    """fio at iodepth 16 with checksums: QEMU 7.2's FUSE export corrupted such writes until
    the kernel was told to send it one request at a time (blockdev.serialize_fuse)."""
    name = "vm-fio.snf.test"
    add(arch, name)
    try:
        device = attached_devices(arch)[volume_of(arch, store, name)]
        out = arch.master.call(_fio_verify, device, rw, bs)
        assert out.startswith("exit 0"), out
        assert "verify:" not in out, out
    finally:
        remove(arch, name)


def _wait_attached(c: Cluster, vol: str, timeout: float = 30) -> str:
    """The volume's device once the (restarted) daemon answers and holds it again."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            device = attached_devices(c).get(vol)
        except control.DaemonUnavailable:
            device = None
        if device:
            return device
        if time.monotonic() > deadline:
            raise TimeoutError(f"{vol} was not attached again within {timeout} s")
        time.sleep(0.1)


def _stop_daemon(c: Cluster) -> None:
    """Stop the node's archipelagod (it reads its configuration only when it starts)."""
    pidfile = c.node_path(f"{RUN_DIR}/archipelagod.pid")
    text = pidfile.read_text().strip() if pidfile.exists() else ""
    if not text:
        return
    pid = int(text)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, 15)
        for _ in range(100):
            os.kill(pid, 0)
            if Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z":
                break
            time.sleep(0.05)


def test_an_instance_on_the_rados_store(arch: Cluster, store: DirStore, ceph: Any) -> None:
    from tests.integration.test_store_rados import open_store

    dropin = arch.node_path("/etc/snf/conf.d/50-rados.toml")
    dropin.parent.mkdir(exist_ok=True)
    dropin.write_text(f'[store]\nbackend = "rados"\nceph_conf = "{ceph.conf}"\n')
    _stop_daemon(arch)
    rados_store = open_store(ceph.conf)
    name = "vm-rados.snf.test"
    try:
        add(arch, name)
        vol = None
        for call in test_providers.calls(arch.plan.master):
            if call["kind"] == "os" and call["env"].get("INSTANCE_NAME") == name:
                vol = volumes.lookup_disk(rados_store, call["env"]["DISK_0_UUID"])["volume"]
        assert vol is not None and not store.has_map(vol)  # in RADOS, not in the dir store
        assert volumes.peek(rados_store, vol, 0, 64).startswith(b"SNFTEST-OS " + name.encode())
        out = arch.master.call(_fio_verify, attached_devices(arch)[vol], "randwrite", "64k")
        assert out.startswith("exit 0") and "verify:" not in out, out
        assert volumes.describe(rados_store, vol)["holder"] is not None
        remove(arch, name)
        assert not rados_store.has_map(vol)
    finally:
        remove(arch, name)
        dropin.unlink()
        _stop_daemon(arch)
        rados_store.close()


@pytest.mark.kvm
def test_kvm_opens_the_volume_through_nbd_with_userspace_access(
    arch: Cluster, store: DirStore
) -> None:
    from tests.testbed import guest

    initrd = guest.write_initramfs(plan.STATE_DIR / "guest" / "initramfs.cpio")
    name = "vm-kvm-nbd.snf.test"
    arch.gnt("gnt-instance", "add", "-H", f"kvm:initrd_path={initrd}", "-t", "ext",
             "--disk", "0:size=64,provider=archipelago,access=userspace", "-o", OS_NAME,
             "-B", "memory=128", "--no-name-check", "--no-ip-check", "-n", arch.info.master,
             name)  # fmt: skip
    try:
        ps = arch.master.run(["ps", "-eo", "args"]).stdout
        (qemu,) = [line for line in ps.splitlines() if "qemu-system" in line and name in line]
        assert f"nbd:unix:{RUN_DIR}/nbd.sock:exportname=" in qemu
        sock = f"/run/ganeti/kvm-hypervisor/ctrl/{name}.serial"
        output, _ = arch.master.call(guest.read_console_until, sock, guest.HELLO, 120)
        assert guest.HELLO in output
    finally:
        arch.gnt("gnt-instance", "remove", "-f", "--shutdown-timeout=0", name, check=False)
