"""Benchmark: archipelago clones, snapshots, hashing, block-device I/O and daemon memory.

Each figure has its comparison measured in the same run:
- clone of a 10 GiB image vs a full copy of a 10 GiB file on the same disk (cp + fsync),
  and a 1 GiB clone beside the 10 GiB one;
- snapshot (freeze) of a 10 GiB volume with 1 GiB written; hashing its private blocks;
- fio --direct=1 through a volume's block device vs a loop device on a plain file:
  sequential 4 MiB read/write, 4 KiB random writes at iodepth 16 right after a clone
  (copy-on-write) and in steady state;
- peak RSS of archipelagod serving 10 volumes.
Everything lives in a temporary directory under /var/tmp and is removed at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from snf.archipelago import control, volumes
from snf.archipelago.hashing import BLOCK_SIZE
from snf.archipelago.store_dir import DirStore
from snf.archipelago.volume import Volume
from snf.common.config import load_config

from . import data
from .machine import describe

REPO = Path(__file__).resolve().parents[2]
GiB = 1 << 30
MiB = 1 << 20


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _image(store: DirStore, name: str, size: int, seed: int) -> float:
    """Store ``size`` bytes of random blocks and map them; returns seconds."""
    t0 = time.perf_counter()
    hashes = [store.put_block(b) for b in data.blocks(size // BLOCK_SIZE, seed)]
    volumes.create_image_map(store, name, hashes, size)
    return time.perf_counter() - t0


def _provider_clone(tmp: Path, store: DirStore, origin: str, size: int, rounds: int) -> float:
    """Median time of the ExtStorage ``create`` script making a clone (process included)."""
    conf = tmp / "etc-provider"
    conf.mkdir(exist_ok=True)
    (conf / "snf.toml").write_text(f'[store]\npath = "{store.root}"\n')
    script = REPO / "extstorage" / "archipelago" / "provider" / "create"
    times = []
    for i in range(rounds):
        env = {**os.environ, "SNF_CONFIG_DIR": str(conf), "VOL_NAME": f"pc-{origin}-{i}",
               "VOL_SIZE": str(size // MiB), "EXTP_ORIGIN": origin}  # fmt: skip
        t0 = time.perf_counter()
        subprocess.run([sys.executable, str(script)], env=env, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _qemu_bench(target: str, write: bool, size: str, count: int, depth: int) -> float:
    """qemu-img bench: MB/s for 4 MiB requests, IOPS for 4 KiB ones."""
    argv = ["qemu-img", "bench", "-f", "raw", "-t", "none", "-c", str(count), "-d", str(depth),
            "-s", size, *(["-w"] if write else []), target]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=True).stdout
    seconds = float(out.split("Run completed in ")[1].split()[0])
    per = int(size.rstrip("kM")) * (1 << 20 if size.endswith("M") else 1 << 10)
    return count / seconds if size.endswith("k") else count * per / seconds / 1e6


def _drop_caches() -> None:
    subprocess.run(["sync"], check=True)
    with contextlib.suppress(OSError):
        Path("/proc/sys/vm/drop_caches").write_text("3\n")


def _fio(device: str, rw: str, bs: str, size: int, iodepth: int, runtime: int) -> float:
    """fio's bandwidth in MB/s (or IOPS for 4k random) for one job."""
    argv = ["fio", "--name=bench", f"--filename={device}", "--direct=1", "--ioengine=libaio",
            f"--rw={rw}", f"--bs={bs}", f"--size={size}", f"--iodepth={iodepth}",
            f"--runtime={runtime}", "--time_based=0" if rw in ("read", "write") else "--time_based",
            "--output-format=json", "--randrepeat=0", "--refill_buffers"]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=True).stdout
    job = json.loads(out)["jobs"][0]
    side = job["write"] if "write" in rw else job["read"]
    return side["iops"] if rw == "randwrite" else side["bw_bytes"] / 1e6


def _fio_suite(device: str, size: int, runtime: int, fresh_clone: bool) -> dict[str, float]:
    figures: dict[str, float] = {}
    if fresh_clone:
        figures["randwrite_cow"] = _fio(device, "randwrite", "4k", size, 16, runtime)
    _drop_caches()
    figures["seq_read"] = _fio(device, "read", "4M", size, 4, runtime)
    figures["seq_write"] = _fio(device, "write", "4M", size, 4, runtime)
    figures["randwrite_steady"] = _fio(device, "randwrite", "4k", size, 16, runtime)
    return figures


def run(smoke: bool = False) -> list[str]:
    big, small = (64 * MiB, 16 * MiB) if smoke else (10 * GiB, 1 * GiB)
    written = 16 * MiB if smoke else 1 * GiB
    fio_size, fio_runtime = (32 * MiB, 1) if smoke else (1 * GiB, 10)
    lines = [f"Machine: {describe()}", ""]
    with tempfile.TemporaryDirectory(dir="/var/tmp", prefix="snf-bench-") as tmpdir:
        tmp = Path(tmpdir)
        store = DirStore(tmp / "store")
        t_import = _image(store, "img-big", big, seed=1)
        _image(store, "img-small", small, seed=2)
        lines.append(f"image import (hash + store, fsync per block): "
                     f"{big / t_import / 1e6:.0f} MB/s for {big // MiB} MiB")  # fmt: skip

        rounds = 5
        clone_big = statistics.median(
            _timed(lambda i=i: volumes.create_volume(store, f"cb-{i}", big, origin="img-big"))
            for i in range(rounds)
        )
        clone_small = statistics.median(
            _timed(lambda i=i: volumes.create_volume(store, f"cs-{i}", small, origin="img-small"))
            for i in range(rounds)
        )
        provider_big = _provider_clone(tmp, store, "img-big", big, rounds)
        provider_small = _provider_clone(tmp, store, "img-small", small, rounds)
        src, dst = tmp / "file.raw", tmp / "copy.raw"
        data.write_file(src, big, seed=3)
        copy = ["sh", "-c", 'cp --reflink=never "$0" "$1" && sync "$1"', src, dst]
        t_copy = _timed(lambda: subprocess.run(copy, check=True))
        src.unlink()
        dst.unlink()
        lines += [
            "",
            "| operation | time |",
            "|---|---|",
            f"| clone of a {big // MiB} MiB image (thin, median of {rounds}) | "
            f"{clone_big * 1000:.1f} ms |",
            f"| clone of a {small // MiB} MiB image (median of {rounds}) | "
            f"{clone_small * 1000:.1f} ms |",
            f"| the provider's `create` with `origin=`, as Ganeti runs it (a new process), "
            f"{big // MiB} MiB | {provider_big * 1000:.0f} ms |",
            f"| the same, {small // MiB} MiB | {provider_small * 1000:.0f} ms |",
            f"| full copy of a {big // MiB} MiB file (cp + fsync), the comparison | "
            f"{t_copy:.1f} s |",
        ]

        volumes.create_volume(store, "snapvol", big)
        with Volume(store, "snapvol", "bench") as vol:
            for i, chunk in enumerate(data.blocks(written // BLOCK_SIZE, seed=4)):
                vol.write(i * BLOCK_SIZE * (big // written), chunk)
            vol.flush()
            t_snap = _timed(lambda: vol.snapshot("snap-1"))
        t_hash = _timed(lambda: volumes.hash_snapshot(store, "snap-1"))
        lines += [
            f"| snapshot (freeze) of a {big // MiB} MiB volume with {written // MiB} MiB "
            f"written | {t_snap * 1000:.1f} ms |",
            f"| hashing the snapshot's {written // MiB} MiB of private blocks into content "
            f"blocks | {t_hash:.2f} s = {written / t_hash / 1e9:.2f} GB/s |",
        ]
        for name in store.list_maps():
            if store.get_meta(name).get("kind") == "volume":
                volumes.remove_volume(store, name)

        lines += ["", *_device_figures(tmp, store, fio_size, fio_runtime, smoke)]
        store.close()
    return lines


def _device_figures(tmp: Path, store: DirStore, size: int, runtime: int, smoke: bool) -> list[str]:
    conf = tmp / "etc"
    conf.mkdir()
    (conf / "snf.toml").write_text(
        f'[store]\npath = "{store.root}"\n[archipelagod]\nrun_dir = "{tmp / "run"}"\n'
        f'log_file = "{tmp / "archipelagod.log"}"\n'
    )
    os.environ["SNF_CONFIG_DIR"] = str(conf)
    section = load_config(conf).archipelagod
    plain = tmp / "plain.raw"
    data.write_file(plain, size, seed=5)
    losetup = ["losetup", "--find", "--show", "--direct-io=on", str(plain)]
    loop = subprocess.run(losetup, capture_output=True, text=True, check=True).stdout.strip()
    volumes_used = 2 if smoke else 10
    try:
        _image(store, "img-fio", size, seed=6)
        volumes.create_volume(store, "fio-vol", size, origin="img-fio")
        control.ensure_daemon(section)
        device = control.request(section.run_dir, {"op": "attach", "volume": "fio-vol"})["device"]
        ours = _fio_suite(device, size, runtime, fresh_clone=True)
        base = _fio_suite(loop, size, runtime, fresh_clone=False)
        uri = f"nbd:unix:{section.run_dir}/nbd.sock:exportname=fio-vol"
        count4m, count4k = (8, 2000) if smoke else (size // (4 * MiB), 50000)
        nbd = {
            "seq_write": _qemu_bench(uri, True, "4M", count4m, 4),
            "seq_read": _qemu_bench(uri, False, "4M", count4m, 4),
            "randwrite": _qemu_bench(uri, True, "4k", count4k, 16),
        }
        raw = {
            "seq_write": _qemu_bench(str(plain), True, "4M", count4m, 4),
            "seq_read": _qemu_bench(str(plain), False, "4M", count4m, 4),
            "randwrite": _qemu_bench(str(plain), True, "4k", count4k, 16),
        }
        for i in range(volumes_used - 1):
            volumes.create_volume(store, f"rss-{i}", size)
            dev = control.request(section.run_dir, {"op": "attach", "volume": f"rss-{i}"})
            subprocess.run(["dd", "if=/dev/urandom", f"of={dev['device']}", "bs=1M", "count=8",
                            "oflag=direct", "status=none"], check=True)  # fmt: skip
        pid = control.request(section.run_dir, {"op": "ping"})["pid"]
        status = Path(f"/proc/{pid}/status").read_text()
        hwm = int(next(line.split()[1] for line in status.splitlines()
                       if line.startswith("VmHWM")))  # fmt: skip
        for name in store.list_maps():
            if name.startswith(("fio-", "rss-")):
                control.request(section.run_dir, {"op": "detach", "volume": name})
    finally:
        subprocess.run(["losetup", "-d", loop], check=False)
        pidfile = section.run_dir / "archipelagod.pid"
        if pidfile.exists() and pidfile.read_text().strip():
            subprocess.run(["kill", pidfile.read_text().strip()], check=False)
            time.sleep(0.5)
        os.environ.pop("SNF_CONFIG_DIR", None)
    pct = {k: 100 * ours[k] / base[k] for k in base}
    return [
        f"fio --direct=1 on {size // MiB} MiB, {runtime} s per job: the volume's block device "
        "(a loop device on archipelagod's own FUSE export of the volume) vs a loop "
        "device on a plain file",
        "",
        "| job | volume | plain loop | ratio | goal |",
        "|---|---|---|---|---|",
        f"| sequential read, 4 MiB | {ours['seq_read']:.0f} MB/s | {base['seq_read']:.0f} MB/s | "
        f"{pct['seq_read']:.0f}% | ≥ 50% |",
        f"| sequential write, 4 MiB | {ours['seq_write']:.0f} MB/s | "
        f"{base['seq_write']:.0f} MB/s | {pct['seq_write']:.0f}% | ≥ 50% |",
        f"| random write 4 KiB, iodepth 16, right after a clone (copy-on-write) | "
        f"{ours['randwrite_cow']:.0f} IOPS | | | |",
        f"| random write 4 KiB, iodepth 16, steady state | {ours['randwrite_steady']:.0f} IOPS | "
        f"{base['randwrite_steady']:.0f} IOPS | {pct['randwrite_steady']:.0f}% | ≥ 25% |",
        "",
        "What KVM sees with `access=userspace` (QEMU's own NBD client; `qemu-img bench -t none`) "
        "vs the same on the plain file:",
        "",
        "| job | volume over NBD | plain file | ratio |",
        "|---|---|---|---|",
        f"| sequential write, 4 MiB, depth 4 | {nbd['seq_write']:.0f} MB/s | "
        f"{raw['seq_write']:.0f} MB/s | {100 * nbd['seq_write'] / raw['seq_write']:.0f}% |",
        f"| sequential read, 4 MiB, depth 4 | {nbd['seq_read']:.0f} MB/s | "
        f"{raw['seq_read']:.0f} MB/s | {100 * nbd['seq_read'] / raw['seq_read']:.0f}% |",
        f"| random write 4 KiB, depth 16 (sequential offsets: qemu-img bench) | "
        f"{nbd['randwrite']:.0f} IOPS | {raw['randwrite']:.0f} IOPS | "
        f"{100 * nbd['randwrite'] / raw['randwrite']:.0f}% |",
        "",
        f"archipelagod peak RSS serving {volumes_used} volumes: {hwm / 1024:.0f} MiB "
        "(goal ≤ 200 MiB)",
    ]
