"""Benchmark: volume snapshots and detach/attach on a real Ganeti cluster (testbed, fake
hypervisor) with the portal in front, against what a copy of the same data costs.

One server (archipelago root disk) gets an extra volume per size (1 GiB and 10 GiB; smoke:
64 MiB written into a 1 GiB volume).  With the server stopped the volume is filled with
random, non-zero, distinct 4 MiB blocks written straight into its archipelago volume; then
the server is started again, so the volume daemon holds the volume (the live path).
Measured per size, from inside the services host (one request, then polling every 0.05 s;
the reconciler looks at the jobs every 0.2 s):

* the snapshot request: ``POST /volume/v2.0/snapshots`` until its 202 answer (the freeze of
  the volume's map through the daemon: O(map));
* until the snapshot is ``available`` (its written blocks hashed into a file in the user's
  ``snapshots`` container: O(data written));
* a full copy of the written data (read through the volume's map, written to a file,
  fsync'd): the least a copying snapshot (``gnt-backup export``) would cost;
* with the server stopped, detach (``DELETE .../os-volume_attachments/<id>`` until the volume
  is ``available``) and attach again (``POST .../os-volume_attachments`` until ``in-use``,
  which /volume/v2.0 spells ``in_use``).

The snapshot and the volume are deleted after each size and their blocks collected.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from snf.archipelago import gc, volumes
from snf.archipelago.store import default_owner
from snf.archipelago.store_dir import DirStore
from snf.archipelago.volume import Volume
from tests.testbed import cluster as tb
from tests.testbed import compute, plan
from tests.testbed import portal as tb_portal
from tests.testbed.cluster import Cluster, lan
from tests.testbed.compute import Cloud

from . import data
from .machine import describe

MiB, GiB = 1 << 20, 1 << 30
V2 = "/volume/v2.0"
POLL = 0.05
TIMEOUT = 1800.0
Done = Callable[[Any], bool]


# --- requests timed inside the services host -------------------------------------------------


def _timed(cloud: Cloud, method: str, path: str, body: Any, done: Done) -> tuple[float, float, Any]:
    """(seconds to the answer, seconds until ``done(answer)``, the answer) of one request,
    timed inside the services host (no fork per poll)."""

    def inside() -> tuple[float, float, Any]:
        t0 = time.perf_counter()
        status, _, answer = compute.http(method, cloud.url + path, cloud.token, body)
        answered = time.perf_counter() - t0
        if status not in (200, 202, 204):
            raise RuntimeError(f"{method} {path}: {status} {answer}")
        while not done(answer):
            if time.perf_counter() - t0 > TIMEOUT:
                raise RuntimeError(f"{method} {path}: not done after {TIMEOUT:.0f} s")
            time.sleep(POLL)
        return answered, time.perf_counter() - t0, answer

    return lan().call(inside, timeout=TIMEOUT + 60)


def _status_in(cloud: Cloud, kind: str, wanted: tuple[str, ...], ident: str = "") -> Done:
    """A check that the volume or snapshot (``kind``; its id from the answer unless given)
    has one of the ``wanted`` statuses (``gone``: 404); any other ``error`` raises.  Runs
    inside the services host."""

    def done(answer: Any) -> bool:
        where = f"{V2}/{kind}s/{ident or answer[kind]['id']}"
        status, _, body = compute.http("GET", cloud.url + where, cloud.token)
        if status == 404 and "gone" in wanted:
            return True
        if status != 200:
            raise RuntimeError(f"GET {where}: {status} {body}")
        got = body[kind]["status"].replace("_", "-")  # /volume/v2.0 says in_use, as Synnefo
        if got == "error" and "error" not in wanted:
            raise RuntimeError(f"{kind} {where} failed: {body[kind]}")
        return got in wanted

    return done


def _round_trip(cloud: Cloud, path: str) -> float:
    """Seconds of one GET from inside the services host: the floor under every timing."""

    def inside() -> float:
        t0 = time.perf_counter()
        status, _, body = compute.http("GET", cloud.url + path, cloud.token)
        assert status == 200, body
        return time.perf_counter() - t0

    return min(lan().call(inside) for _ in range(5))


def _action(cloud: Cloud, server_id: int, action: str, want: str) -> None:
    path = f"/compute/v2.0/servers/{server_id}/action"
    status, _, answer = cloud.api("POST", path, {action: None})
    assert status == 202, answer
    cloud.wait_status(server_id, want, timeout=600)


def _settled(cloud: Cloud, server_id: int) -> str:
    """The server's status once no action of it is under way."""
    deadline = time.monotonic() + 600
    while True:
        server = cloud.api("GET", f"/compute/v2.0/servers/{server_id}")[2]["server"]
        if not server["SNF:task_state"] or time.monotonic() > deadline:
            return str(server["status"])
        time.sleep(0.5)


# --- the volume's data, straight in the store ------------------------------------------------


def _disk_volume(c: Cluster, server_id: int, volume_id: str) -> str:
    """The archipelago volume behind the volume's Ganeti disk ``vol-<id>``."""

    def disks() -> dict[str, str]:
        with c.rapi() as rapi:
            fields = rapi.instance(f"snf-{server_id}")
        return dict(zip(fields["disk.names"], fields["disk.uuids"], strict=True))

    store = DirStore(plan.SHARED_STORE)
    try:
        found = volumes.lookup_disk(store, lan().call(disks)[f"vol-{volume_id}"])
        assert found is not None, f"volume {volume_id} has no archipelago volume"
        return str(found["volume"])
    finally:
        store.close()


def _fill(name: str, size: int, seed: int) -> float:
    """Write ``size`` bytes of random 4 MiB blocks into the (unheld) volume; seconds taken."""
    t0 = time.perf_counter()
    store = DirStore(plan.SHARED_STORE)
    try:
        with Volume(store, name, default_owner()) as vol:
            for i in range(size // data.BLOCK):
                vol.write(i * data.BLOCK, data.block(i, seed))
    finally:
        store.close()
    os.sync()  # no writeback left to slow down what is measured
    return time.perf_counter() - t0


def _full_copy(name: str, size: int, dest: Path) -> float:
    """Seconds to read ``size`` bytes of the volume through its map and write them to a
    file, fsync'd (the volume stays with its holder: read as ``peek`` does)."""
    store = DirStore(plan.SHARED_STORE)
    try:
        t0 = time.perf_counter()
        with open(dest, "wb") as f:
            for offset in range(0, size, data.BLOCK):
                f.write(volumes.peek(store, name, offset, min(data.BLOCK, size - offset)))
            f.flush()
            os.fsync(f.fileno())
        return time.perf_counter() - t0
    finally:
        dest.unlink(missing_ok=True)
        store.close()


def _holder(name: str) -> str | None:
    """Who holds the volume open (the volume daemon of the node, while the server runs)."""
    store = DirStore(plan.SHARED_STORE)
    try:
        return volumes.describe(store, name)["holder"]
    finally:
        store.close()


def _daemon_freeze(name: str) -> float:
    """Seconds of the freeze alone, asked of the volume's holder as the portal asks it (no
    HTTP, no RAPI disk lookup); the extra read-only map is removed again."""
    store = DirStore(plan.SHARED_STORE)
    snap = f"bench-freeze-{uuid.uuid4().hex}"
    try:
        t0 = time.perf_counter()
        volumes.snapshot_volume(store, name, snap)
        return time.perf_counter() - t0
    finally:
        if store.has_map(snap):
            volumes.remove_map(store, snap)
        store.close()


def _store_bytes() -> int:
    """Disk space the shared block store takes (hard links counted once)."""
    seen: set[int] = set()
    total = 0
    for root, _, files in os.walk(plan.SHARED_STORE):
        for file in files:
            st = os.lstat(os.path.join(root, file))
            if st.st_ino not in seen:
                seen.add(st.st_ino)
                total += st.st_blocks * 512
    return total


def _collect() -> None:
    store = DirStore(plan.SHARED_STORE)
    try:
        gc.collect(store, window=0)
    finally:
        store.close()


# --- one size ----------------------------------------------------------------------------------


def _measure(cloud: Cloud, c: Cluster, server_id: int, gib: int, written: int,
             folder: Path, seed: int) -> dict[str, float]:  # fmt: skip
    if _settled(cloud, server_id) == "STOPPED":  # as the previous size left it
        _action(cloud, server_id, "os-start", "ACTIVE")
    new = {"volume": {"size": gib, "name": f"bench-{gib}", "server_id": server_id}}
    _, _, answer = _timed(cloud, "POST", f"{V2}/volumes", new,
                          _status_in(cloud, "volume", ("in-use",)))  # fmt: skip
    volume_id = str(answer["volume"]["id"])
    snap_id = ""
    try:
        _action(cloud, server_id, "os-stop", "STOPPED")
        fill = _fill(_disk_volume(c, server_id, volume_id), written, seed)
        _action(cloud, server_id, "os-start", "ACTIVE")
        name = _disk_volume(c, server_id, volume_id)
        assert _holder(name), f"{name} is not held by a volume daemon: not the live path"
        floor = _round_trip(cloud, f"{V2}/volumes/{volume_id}")
        take = {"snapshot": {"volume_id": volume_id}}
        made = _status_in(cloud, "snapshot", ("available",))
        freeze, available, answer = _timed(cloud, "POST", f"{V2}/snapshots", take, made)
        snap_id = answer["snapshot"]["id"]
        copy = _full_copy(name, written, folder / f"copy-{volume_id}.raw")
        alone = _daemon_freeze(name)
        _action(cloud, server_id, "os-stop", "STOPPED")
        attachments = f"/compute/v2.0/servers/{server_id}/os-volume_attachments"
        available_again = _status_in(cloud, "volume", ("available",), volume_id)
        _, detach, _ = _timed(cloud, "DELETE", f"{attachments}/{volume_id}", None,
                              available_again)  # fmt: skip
        in_use = _status_in(cloud, "volume", ("in-use",), volume_id)
        put_back = {"volumeAttachment": {"volumeId": volume_id}}
        _, attach, _ = _timed(cloud, "POST", attachments, put_back, in_use)
    finally:
        _remove(cloud, server_id, volume_id, snap_id)
    return {"fill": fill, "floor": floor, "freeze": freeze, "alone": alone,
            "available": available, "copy": copy, "detach": detach, "attach": attach}  # fmt: skip


def _remove(cloud: Cloud, server_id: int, volume_id: str, snap_id: str) -> None:
    """Delete the snapshot and the volume (the server stopped) and collect their blocks."""
    if snap_id:
        path = f"{V2}/snapshots/{snap_id}"
        _timed(cloud, "GET", path, None,
               _status_in(cloud, "snapshot", ("available", "error"), snap_id))  # fmt: skip
        _timed(cloud, "DELETE", path, None, _status_in(cloud, "snapshot", ("gone",), snap_id))
    if _settled(cloud, server_id) == "ACTIVE":
        _action(cloud, server_id, "os-stop", "STOPPED")
    path = f"{V2}/volumes/{volume_id}"
    _timed(cloud, "GET", path, None,
           _status_in(cloud, "volume", ("in-use", "available", "error"), volume_id))  # fmt: skip
    _timed(cloud, "DELETE", path, None, _status_in(cloud, "volume", ("gone",), volume_id))
    time.sleep(2)  # the reconciler drops the volume's last frozen map (every 0.2 s)
    _collect()


# --- the report --------------------------------------------------------------------------------


def _secs(t: float) -> str:
    return f"{t:.3f} s" if t < 1 else f"{t:.2f} s" if t < 10 else f"{t:.1f} s"


def _label(gib: int, written: int) -> str:
    if written == gib * GiB:
        return f"{gib} GiB"
    return f"{written >> 20} MiB in a {gib} GiB volume"


def run(smoke: bool = False) -> list[str]:
    sizes = [(1, 64 * MiB)] if smoke else [(1, 1 * GiB), (10, 10 * GiB)]
    folder = plan.STATE_DIR / "bench-volumes"
    tb.down()
    c = tb.up(plan.ClusterPlan(1), progress=lambda _m: None)
    tb.namespaces.create_lan()
    portal = tb_portal.start()
    rows: list[tuple[str, dict[str, float]]] = []
    stored: list[int] = []
    try:
        folder.mkdir(parents=True, exist_ok=True)
        compute.ensure_backend(portal, c)
        cloud = compute.user_with_image(portal, "bench", folder)
        for resource in ("cyclades.disk", "pithos.diskspace"):
            portal.snf_portal("quota", "set", cloud.email, resource, str(100 * GiB))
        with compute.reconciler(portal, folder / "reconcile.log", every=0.2):
            server_id = cloud.create_server("bench", cloud.image, cloud.flavor)["id"]
            cloud.wait_status(server_id, "ACTIVE", timeout=600)
            stored.append(_store_bytes())
            for seed, (gib, written) in enumerate(sizes, start=1):
                got = _measure(cloud, c, server_id, gib, written, folder, seed)
                rows.append((_label(gib, written), got))
                stored.append(_store_bytes())
            cloud.delete_server(server_id)
    finally:
        tb_portal.stop()
        tb.down()
        shutil.rmtree(folder, ignore_errors=True)
    lines = [
        describe(),
        "",
        "| size | snapshot request (freeze) | snapshot available | full copy | detach | attach |",
        "|---|---|---|---|---|---|",
    ]
    for label, t in rows:
        cells = [t[k] for k in ("freeze", "available", "copy", "detach", "attach")]
        lines.append(f"| {label} | {' | '.join(_secs(x) for x in cells)} |")
    floor = min(t["floor"] for _, t in rows)
    alone = ", ".join(f"{_secs(t['alone'])} ({label})" for label, t in rows)
    fills = ", ".join(f"{label} in {_secs(t['fill'])}" for label, t in rows)
    lines += [
        "",
        "- size: random, non-zero, distinct 4 MiB blocks written into the volume (filled: "
        f"{fills})",
        "- snapshot request (freeze): POST /volume/v2.0/snapshots to its 202, the server "
        f"running: the volume daemon freezes the map, O(map) (a GET takes {_secs(floor)}; the "
        f"daemon's freeze alone, without HTTP and the RAPI disk lookup: {alone})",
        "- snapshot available: from the same POST until the snapshot is `available`: the "
        "written blocks hashed into a file in `snapshots`, O(data written)",
        "- full copy: the written data read through the volume's map and written to a file, "
        "fsync'd: the least a copying snapshot (gnt-backup export) costs",
        "- detach: DELETE .../os-volume_attachments/<id> until `available`, the server "
        "stopped (freeze + Ganeti disk remove job + reconciler)",
        "- attach: POST .../os-volume_attachments until `in-use` (thin clone of the frozen "
        "map + Ganeti disk add job + reconciler)",
    ]
    lines.append(
        "block store before the first volume and after each size's cleanup: "
        + ", ".join(f"{b / MiB:.0f} MiB" for b in stored)
    )
    for label, t in rows:
        request, whole = t["copy"] / t["freeze"], t["copy"] / t["available"]
        lines.append(f"{label}: the full copy takes {request:.1f}x the snapshot request and "
                     f"{whole:.1f}x the whole snapshot")  # fmt: skip
    return lines
