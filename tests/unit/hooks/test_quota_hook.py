"""The quota pre-hook: the pure core (hook environment -> request, master check, tag rules,
refusal lines) and the shell against a real local HTTP server (accept, over quota, no
answer in time, nothing listening, no token); a modify's disk changes and dry runs, read
from job files captured on the testbed."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from snf.hooks import quota_hook as qh

OWNER = "6f1c4c2e-9a55-4d0e-8d8f-1c1d7c3e2a10"
PROJECT = "0b7e3f5a-2c6d-4e8f-9a1b-3c5d7e9f1a2b"


def env(**changes: str) -> dict[str, str]:
    """What Ganeti 3.0 gives an instance-add pre-hook (the variables we read, and some)."""
    base = {
        "GANETI_HOOKS_VERSION": "2", "GANETI_HOOKS_PHASE": "pre",
        "GANETI_HOOKS_PATH": "instance-add", "GANETI_OP_CODE": "OP_INSTANCE_CREATE",
        "GANETI_CLUSTER": "cluster1.example.test", "GANETI_MASTER": "node1.example.test",
        "GANETI_INSTANCE_NAME": "vm1.example.test", "GANETI_INSTANCE_STATUS": "True",
        "GANETI_INSTANCE_VCPUS": "2", "GANETI_INSTANCE_MAXMEM": "512",
        "GANETI_INSTANCE_MINMEM": "512", "GANETI_INSTANCE_MEMORY": "512",
        "GANETI_INSTANCE_BE_vcpus": "2", "GANETI_INSTANCE_BE_maxmem": "512",
        "GANETI_INSTANCE_DISK_COUNT": "2", "GANETI_INSTANCE_DISK0_SIZE": "1024",
        "GANETI_INSTANCE_DISK1_SIZE": "256", "GANETI_INSTANCE_DISK0_UUID": "",
        "GANETI_INSTANCE_TAGS": f"web snf:owner:{OWNER}",
    }  # fmt: skip
    return base | changes


def master() -> set[str]:
    return {"node1", "node1.example.test"}


# -- the pure core ---------------------------------------------------------------------------


def test_master_check() -> None:
    assert qh.is_master(env(), master)
    assert qh.is_master(env(GANETI_MASTER="NODE1"), master)
    assert not qh.is_master(env(GANETI_MASTER="node2.example.test"), master)
    asked = []
    assert not qh.is_master(env(GANETI_MASTER=""), lambda: asked.append(1) or set())
    assert not asked  # no name lookup without a master to compare with


def test_request_from_the_environment() -> None:
    request = qh.request_for(env())
    assert request is not None
    assert request.body == {"owner": OWNER, "instance": "vm1.example.test", "op": "add",
                            "cluster": "cluster1.example.test", "vcpus": 2, "memory_mib": 512,
                            "disk_mib": 1280, "running": True}  # fmt: skip
    tagged = qh.request_for(env(GANETI_INSTANCE_TAGS=f"snf:owner:{OWNER} snf:project:{PROJECT}",
                                GANETI_INSTANCE_STATUS="False"))  # fmt: skip
    assert tagged is not None and tagged.body["project"] == PROJECT
    assert tagged.body["running"] is False
    # A modify: the new vcpus/memory are INSTANCE_*, the BE_* ones are still the old ones.
    modify = qh.request_for(env(GANETI_HOOKS_PATH="instance-modify", GANETI_INSTANCE_VCPUS="4",
                                GANETI_INSTANCE_MAXMEM="1024",
                                GANETI_INSTANCE_STATUS="up"))  # fmt: skip
    assert modify is not None and modify.body["running"] is True
    assert (modify.op, modify.body["vcpus"], modify.body["memory_mib"]) == ("modify", 4, 1024)
    remove = qh.request_for(env(GANETI_HOOKS_PATH="instance-remove"))
    assert remove is not None and "vcpus" not in remove.body
    older = env(GANETI_INSTANCE_MEMORY="300")
    del older["GANETI_INSTANCE_MAXMEM"]
    assert qh.request_for(older).body["memory_mib"] == 300  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "changes",
    [
        {"GANETI_INSTANCE_TAGS": "web"},  # no owner: not ours
        {"GANETI_INSTANCE_TAGS": ""},
        {"GANETI_INSTANCE_TAGS": f"snf:owner:{OWNER} snf:server:42 snf:commission:7"},
        {"GANETI_INSTANCE_TAGS": f"snf:owner:{OWNER} snf:commission:7"},  # the portal's own
        {"GANETI_HOOKS_PHASE": "post"},
        {"GANETI_HOOKS_PATH": "instance-reboot"},
    ],
)
def test_instances_that_pass_at_once(changes: dict[str, str]) -> None:
    def no_lookup() -> set[str]:
        raise AssertionError("no name lookup for an instance that is not ours")

    assert qh.request_for(env(**changes)) is None
    assert qh.run(env(**changes), no_lookup) == (0, "")


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"GANETI_INSTANCE_TAGS": "snf:owner:alice"}, "snf:owner:alice is not a UUID"),
        ({"GANETI_INSTANCE_TAGS": f"snf:owner:{OWNER} snf:owner:{PROJECT}"}, "2 snf:owner:"),
        ({"GANETI_INSTANCE_TAGS": f"snf:owner:{OWNER} snf:project:x"}, "snf:project:x is not"),
        ({"GANETI_INSTANCE_VCPUS": "two"}, "GANETI_INSTANCE_VCPUS is 'two'"),
        ({"GANETI_INSTANCE_DISK_COUNT": "3"}, "GANETI_INSTANCE_DISK2_SIZE is ''"),
        ({"GANETI_INSTANCE_DISK_COUNT": "999"}, "999 disks"),
        ({"GANETI_INSTANCE_NAME": ""}, "no GANETI_INSTANCE_NAME"),
    ],
)
def test_bad_owner_tagged_instances_are_refused(changes: dict[str, str], words: str) -> None:
    status, line = qh.run(env(**changes), master)
    assert status == 1 and words in line and line.startswith("snf-quota: refused: ")
    assert "\n" not in line


def test_not_the_master_does_nothing() -> None:
    assert qh.run(env(GANETI_INSTANCE_TAGS="snf:owner:alice"), lambda: {"node2"}) == (0, "")


def test_refusal_lines() -> None:
    request = qh.request_for(env())
    assert request is not None
    fault = {"overLimit": {"code": 413, "message": "cyclades.vm over quota for user U: limit 1, "
                           "usage 1, asked for 1", "details": ""}}  # fmt: skip
    assert qh.refusal(request, 413, fault) == (
        "snf-quota: add of vm1.example.test refused: cyclades.vm over quota for user U: "
        "limit 1, usage 1, asked for 1")  # fmt: skip
    assert qh.refusal(request, 403, {"forbidden": {"message": "no\nway"}}) == (
        "snf-quota: add of vm1.example.test refused: the portal answered 403: no way"
    )
    assert qh.refusal(request, 502, "<html>") == (
        "snf-quota: add of vm1.example.test refused: the portal answered 502: HTTP 502"
    )


# -- the shell, against a real HTTP server ---------------------------------------------------


OVER = "cyclades.vm over quota: limit 1, usage 1, asked for 1"


class Portal(BaseHTTPRequestHandler):
    """Answers as the server's ``mode`` says and records what it was sent."""

    def do_POST(self) -> None:
        server: Any = self.server
        length = int(self.headers["Content-Length"])
        server.seen.append((self.path, dict(self.headers), json.loads(self.rfile.read(length))))
        if server.mode == "slow":
            time.sleep(3)
        over = {"code": 413, "details": "", "message": OVER}
        charges = {"cyclades.vm": 1, "cyclades.cpu": 2}
        dry = {"dry_run": True, "charged": {}, "would_charge": charges}
        status, answer = {
            "ok": (200, dry if server.seen[-1][2].get("dry_run") else {"charged": charges}),
            "over": (413, {"overLimit": over}),
            "slow": (200, {}),
            "odd": (200, ["charged"]),
        }[server.mode]
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def portal() -> Iterator[Any]:
    server: Any = ThreadingHTTPServer(("127.0.0.1", 0), Portal)
    server.mode, server.seen, server.daemon_threads = "ok", [], True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def configure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str,
              token: str | None = "node-token") -> Path:  # fmt: skip
    etc = tmp_path / "etc"
    etc.mkdir(exist_ok=True)
    token_file = tmp_path / "service-token"
    if token is not None:
        token_file.write_text(token + "\n")
    (etc / "snf.toml").write_text(
        f'[hooks]\nportal_url = "{url}"\nservice_token_file = "{token_file}"\n'
    )
    monkeypatch.setenv("SNF_CONFIG_DIR", str(etc))
    return etc


def test_accepted(portal: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    configure(tmp_path, monkeypatch, f"http://127.0.0.1:{portal.server_port}/")
    status, line = qh.run(env(), master)
    assert (status, line) == (0, "snf-quota: add of vm1.example.test: charged "
                                 "cyclades.cpu +2, cyclades.vm +1")  # fmt: skip
    path, headers, sent = portal.seen[0]
    assert path == "/internal/quota/instance" and headers["X-Auth-Token"] == "node-token"
    assert sent["owner"] == OWNER and sent["disk_mib"] == 1280


def test_over_quota(portal: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    configure(tmp_path, monkeypatch, f"http://127.0.0.1:{portal.server_port}")
    portal.mode = "over"
    assert qh.run(env(), master) == (
        1,
        "snf-quota: add of vm1.example.test refused: "
        "cyclades.vm over quota: limit 1, usage 1, asked for 1",
    )


def test_no_answer_in_time(portal: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    configure(tmp_path, monkeypatch, f"http://127.0.0.1:{portal.server_port}")
    portal.mode = "slow"
    monkeypatch.setattr(qh, "TIMEOUT", 0.5)
    started = time.monotonic()
    status, line = qh.run(env(), master)
    assert time.monotonic() - started < 2
    assert status == 1 and line.endswith("did not answer within 0.5 s")
    # A stop only releases: it goes on, saying why nothing was released.
    status, line = qh.run(env(GANETI_HOOKS_PATH="instance-stop"), master)
    assert status == 0 and "did not answer" in line and "the stop goes on" in line


def test_a_silent_listener_times_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A socket that accepts and never answers: the whole call ends at the deadline."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        configure(tmp_path, monkeypatch, f"http://127.0.0.1:{silent.getsockname()[1]}")
        monkeypatch.setattr(qh, "TIMEOUT", 0.5)
        started = time.monotonic()
        status, line = qh.run(env(), master)
        assert time.monotonic() - started < 2 and status == 1 and "within 0.5 s" in line


def test_unreachable_and_no_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
    configure(tmp_path, monkeypatch, f"http://127.0.0.1:{port}")
    status, line = qh.run(env(), master)
    assert status == 1 and line.startswith(
        f"snf-quota: add of vm1.example.test refused: the portal at http://127.0.0.1:{port} "
        "cannot be reached: "
    )
    configure(tmp_path, monkeypatch, f"http://127.0.0.1:{port}", token=None)
    (tmp_path / "service-token").unlink(missing_ok=True)
    status, line = qh.run(env(), master)
    assert status == 1 and "cannot read the service token" in line and "\n" not in line
    (tmp_path / "service-token").write_text("\n")
    assert "is empty" in qh.run(env(), master)[1]
    (tmp_path / "etc" / "snf.toml").write_text("[hooks]\nportal_url = 7\n")
    status, line = qh.run(env(), master)
    assert status == 1 and line.startswith("snf-quota: add of vm1.example.test refused: ")


def test_main_prints_one_line(tmp_path: Path) -> None:
    """As Ganeti runs it: a reset environment, one line on stdout, the exit status."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
    etc = tmp_path / "etc"
    etc.mkdir()
    token = tmp_path / "token"
    token.write_text("t\n")
    (etc / "snf.toml").write_text(
        f'[hooks]\nportal_url = "http://127.0.0.1:{port}"\nservice_token_file = "{token}"\n'
    )
    hook_env = env(GANETI_MASTER=socket.gethostname()) | {
        "PATH": "/sbin:/bin:/usr/sbin:/usr/bin", "SNF_CONFIG_DIR": str(etc)}  # fmt: skip
    done = subprocess.run([sys.executable, "-c", "from snf.hooks.quota_hook import main; main()"],
                          env=hook_env, capture_output=True, text=True, timeout=30)  # fmt: skip
    assert done.returncode == 1 and done.stderr == ""
    assert done.stdout.count("\n") == 1 and "cannot be reached" in done.stdout


# -- a modify's disk changes, from the job files a testbed cluster wrote -------------------

#: One folder per ``gnt-instance modify`` captured on the testbed (Ganeti 3.0.2) by a pre-hook
#: that copied its environment (``env``) and the newest job files (``queue/``) as they were
#: while the hook ran; ``attach-by-name`` also has the cluster's ``config.data`` (its
#: ``version`` and ``disks`` only, as they were at the end of the capture).
CAPTURED = Path(__file__).parent / "data" / "set-params"
CAP_MASTER = "n1.c1.snf.test"


def captured(case: str, data_dir: Path | None = None, base: Path = CAPTURED) -> dict[str, str]:
    """The environment of a captured operation (in ``base``: a modify unless told), tagged
    with an owner, reading its job queue from ``data_dir`` (its own folder unless told)."""
    lines = (base / case / "env").read_text().splitlines()
    hook_env = dict(line.split("=", 1) for line in lines if line)
    hook_env["GANETI_INSTANCE_TAGS"] = f"snf:owner:{OWNER}"
    hook_env["GANETI_DATA_DIR"] = str(data_dir or base / case)
    return hook_env


def cap_master() -> set[str]:
    return {CAP_MASTER}


@pytest.mark.parametrize(
    ("case", "before", "after"),
    [
        ("add", 64, 96),  # --disk add:size=32M,name=data1 -> ["add", -1, {...}]
        ("add-at-index", 96, 112),  # --disk 1:add,size=16M -> ["add", "1", {...}]
        ("remove-by-name", 112, 80),  # --disk data1:remove
        ("detach-last", 80, 64),  # --disk -1:detach -> ["detach", "-1", {}]
        ("detach-by-name", 72, 64),  # --disk extra:detach
        ("attach-by-name", 64, 72),  # --disk attach:name=extra: its size from config.data
        ("add-and-rename", 80, 84),  # --disk -1:add,size=4M --disk 0:modify,name=r3
        ("memory-only", 84, 84),  # -B memory=96: "disks": []
        ("rapi-legacy-add", 84, 96),  # RAPI [["add", {"size": 12}]]: upgraded in the file
    ],
)
def test_the_disks_after_a_captured_modify(case: str, before: int, after: int) -> None:
    hook_env = captured(case)
    request = qh.request_for(hook_env)
    assert request is not None and request.body["disk_mib"] == before  # as Ganeti says
    changed, why = qh.from_job(request, hook_env, CAPTURED / case)
    assert why == "" and changed.body["disk_mib"] == after
    assert changed.body | {"disk_mib": before} == request.body


def test_a_captured_modify_is_charged_for_its_new_disks(
    portal: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(tmp_path, monkeypatch, f"http://127.0.0.1:{portal.server_port}")
    status, line = qh.run(captured("rapi-legacy-add"), cap_master)
    assert status == 0 and line.endswith("charged cyclades.cpu +2, cyclades.vm +1")
    (_, _, sent) = portal.seen[0]
    assert (sent["op"], sent["memory_mib"], sent["disk_mib"]) == ("modify", 96, 96)
    portal.mode = "over"
    status, line = qh.run(captured("add"), cap_master)
    assert (status, line) == (1, f"snf-quota: modify of cap1.snf.test refused: {OVER}")


def test_without_its_job_the_disks_are_as_they_were(
    portal: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(tmp_path, monkeypatch, f"http://127.0.0.1:{portal.server_port}")
    empty = tmp_path / "ganeti"
    (empty / "queue").mkdir(parents=True)
    status, line = qh.run(captured("add", empty), cap_master)
    why = (" (disk changes not counted, the disks as they were: no job in "
           f"{empty}/queue runs OP_INSTANCE_SET_PARAMS on it)")  # fmt: skip
    assert (status, line) == (0, "snf-quota: modify of cap1.snf.test: charged "
                                 f"cyclades.cpu +2, cyclades.vm +1{why}")  # fmt: skip
    assert portal.seen[-1][2]["disk_mib"] == 64
    portal.mode = "over"
    status, line = qh.run(captured("add", tmp_path / "nowhere"), cap_master)
    assert status == 1 and "\n" not in line
    assert line.startswith(f"snf-quota: modify of cap1.snf.test refused: {OVER} (disk changes ")
    # The others look for their own opcode; without it they go as a real run, saying nothing.
    start = qh.request_for(captured("add") | {"GANETI_HOOKS_PATH": "instance-start"})
    assert start is not None
    assert qh.from_job(start, {}, empty) == (
        start, f"no job in {empty}/queue runs OP_INSTANCE_STARTUP on it")  # fmt: skip
    status, line = qh.run(captured("add", empty) | {"GANETI_HOOKS_PATH": "instance-start"},
                          cap_master)  # fmt: skip
    assert (status, line) == (1, f"snf-quota: start of cap1.snf.test refused: {OVER}")


def test_a_job_whose_changes_cannot_be_read(tmp_path: Path) -> None:
    """The job is there, but its changes name a disk the instance lacks, or an attached disk
    the configuration does not have: the disks as they were, and why."""
    data = tmp_path / "ganeti"
    shutil.copytree(CAPTURED / "remove-by-name" / "queue", data / "queue")
    job = json.loads((data / "queue" / "job-5").read_text())
    job["ops"][0]["input"]["disks"] = [["remove", "data2", {}]]
    (data / "queue" / "job-5").write_text(json.dumps(job))
    request = qh.request_for(captured("remove-by-name", data))
    assert request is not None
    assert qh.from_job(request, captured("remove-by-name", data), data) == (
        request, "job 5: no disk 'data2' among the instance's disks")  # fmt: skip
    attach = captured("attach-by-name", data)
    shutil.copytree(CAPTURED / "attach-by-name" / "queue", data / "queue", dirs_exist_ok=True)
    request = qh.request_for(attach)
    assert request is not None
    kept, why = qh.from_job(request, attach, data)
    assert kept == request and why.startswith(f"job 11: cannot read {data}/config.data: ")
    (data / "config.data").write_text('{"version": 3000000, "disks": {}}')
    assert qh.from_job(request, attach, data)[1] == (
        "job 11: 0 disks with name 'extra' in Ganeti's configuration")  # fmt: skip


# -- dry runs, from the job files a testbed cluster wrote ---------------------------------

#: Captured alike (Ganeti 3.0.2, the testbed): ``gnt-instance add --dry-run`` of
#: ``CAP1.snf.test`` (``add``; Ganeti lower-cases the name), of ``cap2`` with the name check
#: (``add-resolved``: resolved to ``cap2.snf.test`` in the environment and the job alike), a
#: RAPI create with ``dry-run=1`` (``rapi-add``), ``modify --dry-run --disk add:size=32M``,
#: ``shutdown``, ``startup`` and ``remove`` with ``--dry-run``; and the real ``add``, ``stop``
#: and ``remove``, each with a finished dry run of the same opcode in the queue before it.
DRY = Path(__file__).parent / "data" / "dry-run"


@pytest.mark.parametrize(
    ("case", "op", "name", "dry"),
    [
        ("add", "add", "cap1.snf.test", True),
        ("add-resolved", "add", "cap2.snf.test", True),
        ("rapi-add", "add", "cap3.snf.test", True),
        ("modify", "modify", "cap1.snf.test", True),
        ("stop", "stop", "cap1.snf.test", True),
        ("start", "start", "cap1.snf.test", True),
        ("remove", "remove", "cap1.snf.test", True),
        ("add-real", "add", "cap1.snf.test", False),
        ("stop-real", "stop", "cap1.snf.test", False),
        ("remove-real", "remove", "cap1.snf.test", False),
    ],
)
def test_a_captured_dry_run_is_marked(case: str, op: str, name: str, dry: bool) -> None:
    hook_env = captured(case, base=DRY)
    request = qh.request_for(hook_env)
    assert request is not None and (request.op, request.instance) == (op, name)
    marked, why = qh.from_job(request, hook_env, DRY / case)
    assert why == ""
    assert marked.body.get("dry_run") is (True if dry else None)
    # The disk the dry-run modify would add counts as a real one would.
    added = 32 if op == "modify" else 0
    assert marked.body == request.body | ({"dry_run": True} if dry else {}) | (
        {"disk_mib": request.body["disk_mib"] + added} if added else {})  # fmt: skip


def test_a_captured_dry_run_charges_nothing(
    portal: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(tmp_path, monkeypatch, f"http://127.0.0.1:{portal.server_port}")
    status, line = qh.run(captured("add", base=DRY), cap_master)
    assert (status, line) == (0, "snf-quota: add of cap1.snf.test (dry run): within quota; "
                                 "charged nothing, would charge cyclades.cpu +2, "
                                 "cyclades.vm +1")  # fmt: skip
    sent = portal.seen[-1][2]
    assert sent["dry_run"] is True and (sent["op"], sent["disk_mib"]) == ("add", 64)
    status, line = qh.run(captured("modify", base=DRY), cap_master)
    assert status == 0 and "(dry run)" in line and portal.seen[-1][2]["disk_mib"] == 96
    # A real run after a dry run is charged: the dry run's job has ended.
    assert qh.run(captured("add-real", base=DRY), cap_master) == (
        0, "snf-quota: add of cap1.snf.test: charged cyclades.cpu +2, cyclades.vm +1")  # fmt: skip
    assert "dry_run" not in portal.seen[-1][2]
    # Over quota, a dry run gets the line a real run would get.
    portal.mode = "over"
    for case in ("add", "add-real"):
        assert qh.run(captured(case, base=DRY), cap_master) == (
            1, f"snf-quota: add of cap1.snf.test refused: {OVER}")  # fmt: skip
    status, line = qh.run(captured("stop", base=DRY), cap_master)
    assert status == 0 and "the stop goes on" in line


def test_a_dry_run_whose_job_cannot_be_read(
    portal: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without its job a dry run goes as a real one (charged, as before dry runs were seen);
    a dry-run modify whose disk changes cannot be read is still a dry run."""
    configure(tmp_path, monkeypatch, f"http://127.0.0.1:{portal.server_port}")
    empty = tmp_path / "ganeti"
    (empty / "queue").mkdir(parents=True)
    assert qh.run(captured("add", empty, base=DRY), cap_master) == (
        0, "snf-quota: add of cap1.snf.test: charged cyclades.cpu +2, cyclades.vm +1")  # fmt: skip
    assert "dry_run" not in portal.seen[-1][2]
    data = tmp_path / "broken"
    shutil.copytree(DRY / "modify" / "queue", data / "queue")
    job = json.loads((data / "queue" / "job-4").read_text())
    job["ops"][0]["input"]["disks"] = [["remove", "data9", {}]]
    (data / "queue" / "job-4").write_text(json.dumps(job))
    status, line = qh.run(captured("modify", data, base=DRY), cap_master)
    assert status == 0 and line.startswith("snf-quota: modify of cap1.snf.test (dry run): ")
    assert line.endswith("the disks as they were: job 4: no disk 'data9' among the "
                         "instance's disks)")  # fmt: skip
    assert portal.seen[-1][2]["dry_run"] is True and portal.seen[-1][2]["disk_mib"] == 64
    # A modify that fails otherwise (here: disks_after itself) is read alike.
    monkeypatch.setattr(qh, "disks_after", lambda *args: 1 / 0)
    status, line = qh.run(captured("modify", base=DRY), cap_master)
    assert status == 0 and "(dry run)" in line and "job 4: ZeroDivisionError" in line
    # An answer that is not the portal's shape does not crash the hook.
    portal.mode = "odd"
    assert qh.run(captured("add-real", base=DRY), cap_master) == (
        0, "snf-quota: add of cap1.snf.test: charged nothing")  # fmt: skip


# -- disks_after, the pure core, for the shapes the captures do not show --------------------

DISKS = [qh.Disk(64, "root", "u-0"), qh.Disk(16, "", "u-1"), qh.Disk(32, "data", "u-2")]
DETACHED = {"u-9": qh.Disk(8, "spare", "u-9")}


def attachable(key: str, value: str) -> qh.Disk:
    found = [d for d in DETACHED.values() if getattr(d, key) == value]
    if not found:
        raise qh.UnknownDisks(f"no disk {value}")
    return found[0]


@pytest.mark.parametrize(
    ("changes", "sizes"),
    [
        ([], [64, 16, 32]),
        ([["remove", "u-1", {}]], [64, 32]),  # by UUID
        ([["detach", 0, {}], ["remove", 0, {}]], [32]),  # in order: 0 twice
        ([["add", 0, {"size": "5"}]], [5, 64, 16, 32]),
        ([["add", 3, {"size": 5, "name": "new"}], ["remove", "new", {}]], [64, 16, 32]),
        ([["modify", "data", {"name": "gone"}], ["remove", "gone", {}]], [64, 16]),
        ([["attach", -1, {"uuid": "u-9"}], ["detach", "-1", {}]], [64, 16, 32]),
        ([["attach", 1, {"name": "spare"}]], [64, 8, 16, 32]),
        ([["add", {"size": 7}]], [64, 16, 32, 7]),  # the legacy two-item form
        ([["remove", {}]], [64, 16]),
        ([["root", {"mode": "ro"}]], [64, 16, 32]),  # legacy: a modify of disk "root"
    ],
)
def test_disks_after(changes: list[Any], sizes: list[int]) -> None:
    assert [d.size for d in qh.disks_after(DISKS, changes, attachable)] == sizes


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"add": 1}, "dict, not a list"),
        ([{"op": "add", "size": 1}], "is not [action, disk, params]"),
        ([["grow", 0, {}]], "is not [action, disk, params]"),
        ([["add", -1, {"size": "1G"}]], "an added disk's size is '1G'"),
        ([["add", -1, {}]], "an added disk's size is None"),
        ([["add", 4, {"size": 1}]], "cannot add a disk at index 4 of 3"),
        ([["add", "end", {"size": 1}]], "'end' is not a disk index"),
        ([["remove", 3, {}]], "no disk 3 among the instance's 3"),
        ([["remove", -2, {}]], "no disk -2"),
        ([["remove", "", {}]], "names disk ''"),
        ([["remove", True, {}]], "names disk True"),
        ([["detach", "swap", {}]], "no disk 'swap' among"),
        ([["attach", -1, {"name": "other"}]], "no disk other"),
        ([["attach", -1, {}]], "neither uuid nor name"),
    ],
)
def test_disk_changes_that_cannot_be_read(changes: Any, words: str) -> None:
    with pytest.raises(qh.UnknownDisks, match=re.escape(words)):
        qh.disks_after(DISKS, changes, attachable)
    with pytest.raises(qh.UnknownDisks, match="no disk -1 among the instance's 0"):
        qh.disks_after([], [["remove", -1, {}]], attachable)


def test_attached_disks_in_the_configuration() -> None:
    config = json.loads((CAPTURED / "attach-by-name" / "config.data").read_text())
    extra = qh.config_disk(config, "name", "extra")
    assert extra == qh.Disk(8, "extra", "be18e7f8-a4ac-4ec9-a258-c746df8e4476")
    assert qh.config_disk(config, "uuid", extra.uuid) == extra
    # Disks without a name (None in config.data) are found by UUID only.
    assert qh.config_disk(config, "uuid", "28a507a6-34a5-4805-aa2d-e6a30a76fb94").size == 16
    config["disks"]["x"] = {"name": "extra", "size": 1}
    with pytest.raises(qh.UnknownDisks, match="2 disks with name 'extra'"):
        qh.config_disk(config, "name", "extra")
    for bad in ({}, [], {"disks": {"u": {"size": "8"}}}):
        with pytest.raises(qh.UnknownDisks):
            qh.config_disk(bad, "uuid", "u")
