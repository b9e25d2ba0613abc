"""Benchmark: deploying an image with snf-image, in a real Ganeti cluster (testbed).

A random-content Linux image (2 GiB: an ext4 filesystem three quarters full of random data) is
deployed four ways, side by side in one run: onto a `file` disk (a full copy, then
customization) and onto an archipelago clone of the image's map (customization only),
each in `direct` and `helper` mode. Reported per way: the OS create script's own time (its
"ready in" line in Ganeti's OS log), the helper VM's boot time, and the whole
`gnt-instance add`. Files are removed at the end.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

from snf.archipelago import volumes
from snf.archipelago.store_dir import DirStore
from tests.integration.test_snf_image_ganeti import add, os_log, remove, set_mode
from tests.testbed import cluster as tb
from tests.testbed import images, install, plan

from . import data
from .machine import describe

MiB = 1 << 20
GiB = 1 << 30
PASSWORD = {"img_passwd": "bench-password"}


def _image(folder: Path, size: int) -> Path:
    root = images.build_root(folder / "root")
    (root / "usr" / "share").mkdir(parents=True, exist_ok=True)
    data.write_file(root / "usr" / "share" / "payload.bin", size * 3 // 4)
    path = folder / "image.raw"
    images.build_disk(path, size, root, fs_size=size - MiB)
    shutil.rmtree(root)
    return path


def _seconds(pattern: str, log: str) -> float | None:
    found = re.findall(pattern, log)
    return float(found[-1]) if found else None


def run(smoke: bool = False) -> list[str]:
    size = 64 * MiB if smoke else 2 * GiB
    disk = 2 * size // MiB
    tb.down()
    c = tb.up(plan.ClusterPlan(1), progress=lambda _m: None)
    folder = plan.STATE_DIR / "bench-image"
    folder.mkdir(parents=True, exist_ok=True)
    store = DirStore(plan.SHARED_STORE)
    rows = []
    try:
        for node in c.plan.nodes:
            install.install_snf(node)
        image = _image(folder, size)
        t0 = time.perf_counter()
        with open(image, "rb") as f:
            volumes.import_image(store, "bench-image", f)
        imported = time.perf_counter() - t0
        ways = [
            ("file disk (full copy)", "file", f"0:size={disk}M", str(image)),
            ("archipelago clone", "ext", f"0:size={disk}M,provider=archipelago,origin=bench-image",
             "map:bench-image"),
        ]  # fmt: skip
        for mode in ("direct", "helper"):
            set_mode(c, mode)
            for label, template, disk_spec, img_id in ways:
                name = f"bench-{mode}-{template}.snf.test"
                t0 = time.perf_counter()
                add(c, name, img_id, template=template, disk=disk_spec, secret=PASSWORD)
                total = time.perf_counter() - t0
                log = os_log(c, name)
                remove(c, name)
                script = _seconds(r"ready in ([0-9.]+) s", log)
                boot = _seconds(r"helper VM ready in ([0-9.]+) s", log)
                rows.append((mode, label, script, boot, total))
    finally:
        for mode in ("direct", "helper"):
            for template in ("file", "ext"):
                remove(c, f"bench-{mode}-{template}.snf.test")
        if store.has_map("bench-image"):
            volumes.remove_map(store, "bench-image")
        store.close()
        shutil.rmtree(folder, ignore_errors=True)
        tb.down()
    lines = [
        describe(),
        f"image: {size >> 20} MiB of random content (ext4, MBR) onto a {disk} MiB disk; "
        f"importing it into the store as a map took {imported:.1f} s",
        "",
        "| mode | disk | OS create script | helper VM boot | gnt-instance add |",
        "|---|---|---|---|---|",
    ]
    for mode, label, script, boot, total in rows:
        fmt_boot = f"{boot:.1f} s" if boot is not None else "-"
        fmt_script = f"{script:.1f} s" if script is not None else "?"
        lines.append(f"| {mode} | {label} | {fmt_script} | {fmt_boot} | {total:.1f} s |")
    for mode in ("direct", "helper"):
        copy, clone = (r[2] for r in rows if r[0] == mode)
        if copy and clone:
            lines.append(f"{mode}: the clone path is {copy / clone:.1f}x faster than the copy path")
    return lines
