"""Benchmark: the portal's object store beside OpenStack Swift, on the same files.

Both run in the testbed's services host, and so do their clients: Swift 2.30.1 as a
single-machine setup (tests/testbed/swift_peer.py, one worker per server) and the portal
under gunicorn (``/object-store/v1/<account uuid>``).  For each, with 1 GiB files of random,
distinct, non-zero data (smoke: 8 MiB), median of 3 rounds (smoke: 1):

- ``swift upload`` (python-swiftclient's CLI, MD5 checked) of a file neither store has seen,
  ``swift download`` of it to a file, and ``swift upload`` of the same file again;
- ``curl -T`` (a plain PUT, no client MD5) of another new file, beside two references on
  one file: ``cp`` + ``sync`` to the same filesystem and sha256 (hashlib, 1 thread);
- portal only: the re-upload through Pithos' hashmap path (block hashes computed here with 2
  threads, then ``PUT ?hashmap``: every block is known, 201) and kamaki 0.16's re-upload,
  against Swift's re-upload with the CLI;
- the peak RSS of the serving worker (and of all workers together) during ``swift upload``,
  sampled from /proc every 50 ms.

Everything it writes (data files, downloads, kamaki's files) lives in a directory under
/var/lib/snf-testbed that is removed at the end; the objects are deleted and both servers
stopped.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import importlib.metadata
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

from snf.archipelago.hashing import BLOCK_SIZE, block_hash
from tests.testbed import namespaces, plan, swift_peer
from tests.testbed import portal as tb_portal
from tests.testbed.cluster import lan
from tests.testbed.namespaces import thread_in_netns

from . import data
from .machine import describe

MiB = 1 << 20
GiB = 1 << 30
CONTAINER = "bench"
OBJECT = "bench.bin"
CURL_OBJECT = "bench-curl.bin"
PORTAL_WORKERS = 2
KAMAKI = Path.home() / ".local" / "bin" / "kamaki"
PYENV_VERSION = "2.7.18"
QUOTA = 1 << 40  # the bench user's pithos.diskspace
TIMEOUT = 900.0


class BenchError(RuntimeError):
    pass


@dataclass(frozen=True)
class Target:
    """An object store: its storage URL, a token, and the process groups of its servers."""

    name: str
    storage_url: str
    token: str
    groups: tuple[int, ...]
    container_headers: tuple[str, ...] = ()

    def swift(self, *argv: str) -> float:
        """Run the swift CLI inside the services host; the seconds it took."""
        options = ["--os-storage-url", self.storage_url, "--os-auth-token", self.token]
        return _timed_in_lan([str(swift_peer.SWIFT_CLI), *options, *argv])

    def curl_put(self, path: Path, name: str) -> float:
        """``curl -T`` (one PUT with a Content-Length, no ETag) inside the services host;
        without ``Expect: 100-continue``, so no round trip before the body."""
        argv = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Expect:",
                "-H", f"X-Auth-Token: {self.token}", "-T", str(path),
                f"{self.storage_url}/{CONTAINER}/{quote(name)}"]  # fmt: skip
        t0 = time.perf_counter()
        proc = _lan_run(argv)
        elapsed = time.perf_counter() - t0
        if proc.stdout.strip() != "201":
            raise BenchError(f"{self.name}: curl -T answered {proc.stdout.strip()}: {proc.stderr}")
        return elapsed


@dataclass
class Results:
    """One store's figures (seconds per round), and its peak RSS (bytes)."""

    upload: list[float] = field(default_factory=list)
    download: list[float] = field(default_factory=list)
    reupload: list[float] = field(default_factory=list)
    curl: list[float] = field(default_factory=list)
    hashmap: list[float] = field(default_factory=list)
    kamaki: list[float] = field(default_factory=list)
    rss_worker: int = 0
    rss_all: int = 0


# --- running things in the services host -------------------------------------------------------


def _lan_run(
    argv: list[str], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return lan().run(argv, timeout=TIMEOUT, env=env)


def _timed_in_lan(argv: list[str], env: dict[str, str] | None = None) -> float:
    t0 = time.perf_counter()
    _lan_run(argv, env)
    return time.perf_counter() - t0


def _note(text: str) -> None:
    print(f"pithos: {text}", file=sys.stderr, flush=True)


# --- peak RSS ----------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str]:
    """/proc/<pid>/stat after the command name: state, ppid, pgrp, ..."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _cpu_ticks(pid: int) -> int:
    try:
        fields = _stat_fields(pid)
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime + stime


def _rss(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def _workers(groups: tuple[int, ...]) -> list[int]:
    """The processes of these process groups but their leaders (gunicorn's or Swift's
    parent): the workers."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) not in groups:
            with contextlib.suppress(OSError, IndexError, ValueError):
                if int(_stat_fields(int(entry.name))[2]) in groups:
                    found.append(int(entry.name))
    return found


class PeakRss:
    """Samples the RSS of the workers of some process groups every 50 ms while it is entered;
    then ``worker`` is the peak of the one that used the most CPU (the one that served the
    request) and ``total`` the peak of their sum."""

    def __init__(self, groups: tuple[int, ...], interval: float = 0.05) -> None:
        self.pids = _workers(groups)
        self.interval = interval
        self.peaks = dict.fromkeys(self.pids, 0)
        self.total = self.worker = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while True:
            sizes = {pid: _rss(pid) for pid in self.pids}
            for pid, size in sizes.items():
                self.peaks[pid] = max(self.peaks[pid], size)
            self.total = max(self.total, sum(sizes.values()))
            if self._done.wait(self.interval):
                return

    def __enter__(self) -> PeakRss:
        self._cpu = {pid: _cpu_ticks(pid) for pid in self.pids}
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()
        used = {pid: _cpu_ticks(pid) - ticks for pid, ticks in self._cpu.items()}
        if used:
            self.worker = self.peaks[max(used, key=lambda pid: used[pid])]


# --- the measurements --------------------------------------------------------------------------


def _references(path: Path, work: Path, rounds: int) -> tuple[float, float]:
    """Seconds for ``cp`` + ``sync`` of the file (to the same filesystem) and for its sha256."""
    copies, hashes = [], []
    copy = work / "copy.bin"
    for _ in range(rounds):
        t0 = time.perf_counter()
        subprocess.run(["cp", str(path), str(copy)], check=True, timeout=TIMEOUT)
        subprocess.run(["sync", str(copy)], check=True, timeout=TIMEOUT)
        copies.append(time.perf_counter() - t0)
        copy.unlink()
        hashes.append(_sha256_seconds(path))
    return statistics.median(copies), statistics.median(hashes)


def _sha256_seconds(path: Path) -> float:
    digest = hashlib.sha256()
    buf = bytearray(BLOCK_SIZE)
    view = memoryview(buf)
    t0 = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            digest.update(view[:n])
    digest.hexdigest()
    return time.perf_counter() - t0


def _hashmap_put(target: Target, path: Path, name: str) -> float:
    """Re-upload through the hashmap: hash the blocks here (2 threads), then one
    ``PUT ?hashmap&format=json``, which must answer 201 (every block already stored)."""
    t0 = time.perf_counter()
    size = path.stat().st_size
    fd = os.open(path, os.O_RDONLY)
    try:
        count = max(1, -(-size // BLOCK_SIZE))
        with ThreadPoolExecutor(2) as pool:
            hashes = list(pool.map(lambda i: block_hash(os.pread(fd, BLOCK_SIZE, i * BLOCK_SIZE)),
                                   range(count)))  # fmt: skip
    finally:
        os.close(fd)
    url = urlsplit(target.storage_url)
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=TIMEOUT)
    try:
        with thread_in_netns(plan.LAN_NS):
            conn.connect()  # the socket stays in the services host
        conn.request(
            "PUT", f"{url.path}/{CONTAINER}/{quote(name)}?hashmap&format=json",
            json.dumps({"bytes": size, "hashes": hashes}),
            {"X-Auth-Token": target.token, "Content-Type": "application/json"},
        )  # fmt: skip
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    elapsed = time.perf_counter() - t0
    if response.status != 201:
        raise BenchError(f"{target.name}: PUT ?hashmap answered {response.status}: "
                         f"{body[:500].decode(errors='replace')}")  # fmt: skip
    return elapsed


def _kamaki_upload(conf: Path, path: Path, name: str) -> float:
    argv = [str(KAMAKI), "-c", str(conf), "file", "upload", "-f", "-N", str(path),
            f"/{CONTAINER}/{name}"]  # fmt: skip
    return _timed_in_lan(argv, env={"PYENV_VERSION": PYENV_VERSION})


def _rounds(
    target: Target,
    work: Path,
    size: int,
    rounds: int,
    reupload_extras: Callable[[Path, Results], None] | None = None,
) -> Results:
    """Upload, download and re-upload a new file, then ``curl -T`` another, ``rounds`` times.
    ``reupload_extras(path, results)`` adds the other re-uploads of the file (portal only)."""
    results = Results()
    target.swift("post", *(f"-H{h}" for h in target.container_headers), CONTAINER)
    for r in range(rounds):
        with _data_file(work / "upload.bin", size, seed=1 + 2 * r) as path:
            with PeakRss(target.groups) as rss:
                results.upload.append(target.swift("upload", "--object-name", OBJECT,
                                                   CONTAINER, str(path)))  # fmt: skip
            results.rss_worker = max(results.rss_worker, rss.worker)
            results.rss_all = max(results.rss_all, rss.total)
            download = work / "download.bin"
            try:
                results.download.append(target.swift("download", CONTAINER, OBJECT,
                                                     "-o", str(download)))  # fmt: skip
            finally:
                download.unlink(missing_ok=True)
            results.reupload.append(target.swift("upload", "--object-name", OBJECT,
                                                 CONTAINER, str(path)))  # fmt: skip
            if reupload_extras is not None:
                reupload_extras(path, results)
        with _data_file(work / "curl.bin", size, seed=2 + 2 * r) as path:
            results.curl.append(target.curl_put(path, CURL_OBJECT))
        done = {k: v[-1] for k, v in vars(results).items() if isinstance(v, list) and v}
        _note(
            f"{target.name} round {r + 1}: " + ", ".join(f"{k} {v:.2f} s" for k, v in done.items())
        )
    return results


@contextlib.contextmanager
def _data_file(path: Path, size: int, seed: int) -> Iterator[Path]:
    try:
        data.write_file(path, size, seed)
        yield path
    finally:
        path.unlink(missing_ok=True)


def _swift_half(work: Path, size: int, rounds: int) -> Results:
    peer = swift_peer.start()
    try:
        storage_url, token = peer.authenticate()
        groups = tuple(pid for name, pid in peer.pids.items() if name != "memcached")
        target = Target("Swift", storage_url, token, groups)
        try:
            return _rounds(target, work, size, rounds)
        finally:
            with contextlib.suppress(Exception):
                target.swift("delete", CONTAINER)
    finally:
        swift_peer.stop()


def _portal_half(work: Path, size: int, rounds: int) -> Results:
    portal = tb_portal.start(workers=PORTAL_WORKERS)
    try:
        email = f"bench-pithos-{secrets.token_hex(4)}@example.test"
        account = portal.snf_portal("user", "add", email, "--name", "Bench Pithos",
                                    "--active").strip()  # fmt: skip
        portal.snf_portal("quota", "set", account, "pithos.diskspace", str(QUOTA))
        token = portal.snf_portal("token", "issue", account).strip()
        target = Target("portal", f"{tb_portal.BASE_URL}/object-store/v1/{account}", token,
                        (portal.pid,), ("X-Container-Policy-Versioning: none",))  # fmt: skip
        conf = _kamaki_config(work, portal.base_url, token)

        def extras(path: Path, results: Results) -> None:
            results.hashmap.append(_hashmap_put(target, path, OBJECT))
            if conf is not None:
                results.kamaki.append(_kamaki_upload(conf, path, OBJECT))

        try:
            return _rounds(target, work, size, rounds, extras)
        finally:
            with contextlib.suppress(Exception):
                target.swift("delete", CONTAINER)
    finally:
        tb_portal.stop()


def _kamaki_config(work: Path, base_url: str, token: str) -> Path | None:
    """A kamakirc (as tests/e2e/test_token_clients.py writes it) keeping kamaki's history
    and log in ``work``; None when kamaki 0.16 is not installed."""
    if not KAMAKI.exists() or shutil.which("python2") is None:
        return None
    conf = work / "kamakirc"
    conf.write_text(
        f"[global]\ndefault_cloud = snf\nhistory_file = {work / 'kamaki.history'}\n"
        f"log_file = {work / 'kamaki.log'}\n\n"
        f'[cloud "snf"]\nurl = {base_url}/identity/v2.0\ntoken = {token}\n'
    )
    return conf


# --- the report --------------------------------------------------------------------------------


def _mbps(size: int, seconds: list[float]) -> float:
    return size / statistics.median(seconds) / 1e6


def _mib(size: int) -> str:
    return f"{size / MiB:.0f} MiB"


def _table(size: int, rounds: int, refs: tuple[float, float], sw: Results,
           pt: Results) -> list[str]:  # fmt: skip
    cp_sync, sha = (size / s / 1e6 for s in refs)
    floor = min(cp_sync, sha)
    swift_re, hashmap = statistics.median(sw.reupload), statistics.median(pt.hashmap)
    kamaki = f"{statistics.median(pt.kamaki):.2f} s" if pt.kamaki else "not installed"
    client = importlib.metadata.version("python-swiftclient")
    label = f"{size / GiB:.0f} GiB" if size >= GiB else _mib(size)

    def curl(r: Results) -> str:
        return f"{_mbps(size, r.curl):.0f} MB/s ({_mbps(size, r.curl) / floor:.2f}x)"

    return [
        f"Machine: {describe()}",
        "",
        f"Object store, {label} files of random data, median of {rounds}: OpenStack Swift "
        f"2.30.1 (Debian, one worker per server, tempauth) beside the portal (gunicorn, "
        f"{PORTAL_WORKERS} sync workers); servers and clients in the testbed's services host.",
        "",
        "| measurement | OpenStack Swift | portal | comparison |",
        "|---|---|---|---|",
        f"| `swift upload` (swiftclient {client} CLI, MD5 checked) of a new file | "
        f"{_mbps(size, sw.upload):.0f} MB/s | {_mbps(size, pt.upload):.0f} MB/s | |",
        f"| `swift download` to a file | {_mbps(size, sw.download):.0f} MB/s | "
        f"{_mbps(size, pt.download):.0f} MB/s | |",
        f"| `curl -T` (one PUT, no client MD5) of a new file | {curl(sw)} | {curl(pt)} | "
        f"x: ratio to min(sha256, cp + sync) = {floor:.0f} MB/s |",
        f"| re-upload of the same file: `swift upload` | {swift_re:.2f} s | "
        f"{statistics.median(pt.reupload):.2f} s | |",
        f"| re-upload through the hashmap: block hashes (Python 3, 2 threads) + `PUT ?hashmap` "
        f"(201) | | {hashmap:.2f} s | speedup {swift_re / hashmap:.1f}x over Swift's re-upload |",
        f"| re-upload with kamaki 0.16 (`file upload -f`, Python 2.7) | | {kamaki} | |",
        f"| peak RSS during `swift upload`: serving worker (all workers) | "
        f"{_mib(sw.rss_worker)} ({_mib(sw.rss_all)}) | {_mib(pt.rss_worker)} "
        f"({_mib(pt.rss_all)}) | |",
        "",
        f"References on one such file (in the page cache), same filesystem as both stores: "
        f"`cp` + `sync` {cp_sync:.0f} MB/s; sha256 (hashlib, 1 thread, 4 MiB chunks) "
        f"{sha:.0f} MB/s.",
    ]


def run(smoke: bool = False) -> list[str]:
    size = 8 * MiB if smoke else GiB
    rounds = 1 if smoke else 3
    work = plan.STATE_DIR / "bench-pithos"
    shutil.rmtree(work, ignore_errors=True)
    namespaces.create_lan()
    work.mkdir(parents=True)
    try:
        with _data_file(work / "reference.bin", size, seed=0) as path:
            refs = _references(path, work, rounds)
        _note(f"references: cp + sync {refs[0]:.2f} s, sha256 {refs[1]:.2f} s")
        swift = _swift_half(work, size, rounds)
        portal = _portal_half(work, size, rounds)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return _table(size, rounds, refs, swift, portal)
