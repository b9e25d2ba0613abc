"""Benchmark: a server through the compute API, from the create request to ACTIVE, on a real
Ganeti cluster (testbed, fake hypervisor) with the portal in front.

A random-content Linux image (ext4 three quarters full of random data) of 1 GiB and of
10 GiB is uploaded to the object store and registered; servers are created from it with a
flavor whose disk is an archipelago thin clone of the image's map (``ext_archipelago``) and
with one whose disk is a Ganeti ``file`` disk that snf-image fills with a full copy, side by
side, with snf-image in ``direct`` mode and (1 GiB) in ``helper`` mode.  The time is from
the POST to the first GET that shows ACTIVE (polled every 0.1 s; the reconciler looks at
the jobs every 0.2 s).  Then ``GET /servers/detail`` with 1,000 servers in the database
(rows inserted directly, each server with its root volume: a thousand Ganeti instances are
not what is measured).
"""

from __future__ import annotations

import shutil
import statistics
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, insert, select

from snf.portal.compute.models import Flavor, Server
from snf.portal.volumes.models import Volume
from tests.testbed import cluster as tb
from tests.testbed import compute, images, plan
from tests.testbed import portal as tb_portal
from tests.testbed.cluster import lan

from . import data
from .machine import describe

MiB, GiB = 1 << 20, 1 << 30


def _image(folder: Path, size: int) -> Path:
    root = images.build_root(folder / "root")
    (root / "usr" / "share").mkdir(parents=True, exist_ok=True)
    data.write_file(root / "usr" / "share" / "payload.bin", size * 3 // 4)
    path = folder / f"image-{size >> 20}.raw"
    images.build_disk(path, size, root, fs_size=size - MiB)
    shutil.rmtree(root)
    return path


def _put_file(url: str, token: str, path: str) -> int:
    """Stream a file into the object store (inside the testbed)."""
    with open(path, "rb") as body:
        size = Path(path).stat().st_size
        request = urllib.request.Request(url, data=body, method="PUT", headers={
            "X-Auth-Token": token, "Content-Type": "application/octet-stream",
            "Content-Length": str(size)})  # fmt: skip
        with urllib.request.urlopen(request, timeout=1800) as answer:
            return answer.status


def _create_to_active(cloud: compute.Cloud, image: str, flavor: int) -> float:
    t0 = time.perf_counter()
    server = cloud.create_server("bench", image, flavor)
    while True:
        _, _, body = cloud.api("GET", f"/compute/v2.0/servers/{server['id']}")
        if body["server"]["status"] == "ACTIVE":
            elapsed = time.perf_counter() - t0
            break
        if body["server"]["status"] == "ERROR":
            raise RuntimeError(f"bench server failed: {body['server'].get('fault')}")
        time.sleep(0.1)
    cloud.delete_server(server["id"])
    return elapsed


def _set_mode(c: tb.Cluster, mode: str) -> None:
    for node in c.plan.nodes:
        (node.state_dir / "etc-snf" / "conf.d" / "image.toml").write_text(
            f'[image]\nmode = "{mode}"\n'
        )


def _detail_listing(cloud: compute.Cloud, portal: Any, count: int, rounds: int) -> float:
    """Median milliseconds of GET /servers/detail with ``count`` servers of one user."""
    engine = create_engine(f"sqlite:///{portal.config_dir.parent / 'portal.db'}")
    user = uuid.UUID(cloud.uuid)
    with engine.begin() as conn:
        flavor = conn.execute(select(Flavor.id).limit(1)).scalar_one()
        now = time.time()
        conn.execute(insert(Server), [
            {"name": f"listed-{i}", "user_uuid": user, "project": user, "flavor_id": flavor,
             "image_id": str(uuid.uuid4()), "operstate": "STARTED", "action_args": {},
             "charges": {}, "meta": {"role": "bench", "index": str(i)}, "key_names": [],
             "created": now, "updated": now, "deleted": False}
            for i in range(count)
        ])  # fmt: skip
        listed = conn.execute(select(Server.id).where(Server.name.like("listed-%"))).scalars()
        conn.execute(insert(Volume), [  # each with its root volume, as real servers have
            {"user_uuid": user, "project": user, "name": "", "description": "", "size": 1,
             "volume_type": "ext_archipelago", "status": "in-use", "server_id": server_id,
             "root": True, "attached": now, "charges": {}, "meta": {}, "created": now,
             "updated": now, "deleted": False}
            for server_id in listed
        ])  # fmt: skip
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        status, _, body = cloud.api("GET", "/compute/v2.0/servers/detail")
        times.append((time.perf_counter() - t0) * 1000)
        assert status == 200 and len(body["servers"]) == count
    engine.dispose()
    return statistics.median(times)


def run(smoke: bool = False) -> list[str]:
    sizes = [64 * MiB] if smoke else [1 * GiB, 10 * GiB]
    folder = plan.STATE_DIR / "bench-compute"
    tb.down()
    c = tb.up(plan.ClusterPlan(1), progress=lambda _m: None)
    tb.namespaces.create_lan()
    portal = tb_portal.start(extra_config=f"[pithos]\nmax_object_bytes = {16 * GiB}\n")
    rows: list[tuple[str, str, str, float]] = []
    try:
        folder.mkdir(parents=True, exist_ok=True)
        compute.ensure_backend(portal, c)
        cloud = compute.new_user(portal, "bench@example.test")
        for resource in ("cyclades.disk", "pithos.diskspace"):
            portal.snf_portal("quota", "set", cloud.email, resource, str(100 * GiB))
        with compute.reconciler(portal, folder / "reconcile.log", every=0.2):
            for size in sizes:
                disk_gib = -(-size // GiB) + 1
                clone = compute.ensure_flavor(portal, f"clone-{disk_gib}", 1, 128, disk_gib)
                copy = compute.ensure_flavor(portal, f"copy-{disk_gib}", 1, 128, disk_gib,
                                             template="file")  # fmt: skip
                path = _image(folder, size)
                cloud.api("PUT", f"/object-store/v1/{cloud.uuid}/images", data=b"")
                url = f"{cloud.url}/object-store/v1/{cloud.uuid}/images/{path.name}"
                assert lan().call(_put_file, url, cloud.token, str(path), timeout=3600) == 201
                path.unlink()
                image = cloud.register_image(path.name, "images", path.name)
                label = f"{size >> 20} MiB" if size < GiB else f"{size >> 30} GiB"
                modes = ["direct", "helper"] if size <= GiB else ["direct"]
                for mode in modes:
                    _set_mode(c, mode)
                    for way, flavor in (
                        ("archipelago clone", clone),
                        ("file disk, full copy", copy),
                    ):
                        rows.append((label, mode, way, _create_to_active(cloud, image, flavor)))
        listing = _detail_listing(cloud, portal, 50 if smoke else 1000, 5 if smoke else 20)
    finally:
        tb_portal.stop()
        tb.down()
        shutil.rmtree(folder, ignore_errors=True)
    lines = [
        describe(),
        "",
        "| image | snf-image mode | disk | create → ACTIVE |",
        "|---|---|---|---|",
    ]
    lines += [f"| {label} | {mode} | {way} | {secs:.1f} s |" for label, mode, way, secs in rows]
    for label in dict.fromkeys(r[0] for r in rows):
        for mode in ("direct", "helper"):
            pair = {r[2]: r[3] for r in rows if r[0] == label and r[1] == mode}
            if len(pair) == 2:
                ratio = pair["file disk, full copy"] / pair["archipelago clone"]
                lines.append(f"{label}, {mode}: the clone path is {ratio:.1f}x faster")
    count = 50 if smoke else 1000
    lines.append(f"GET /servers/detail with {count} servers: median {listing:.0f} ms")
    lines.append(
        "goals: clone path ≤ 5 s at any size and ≥ 10x the copy at 10 GiB; listing ≤ 150 ms"
    )
    return lines
