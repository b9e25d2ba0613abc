"""The quota pre-hook: the pure core (hook environment -> request, master check, tag rules,
refusal lines) and the shell against a real local HTTP server (accept, over quota, no
answer in time, nothing listening, no token)."""

from __future__ import annotations

import json
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
        status, answer = {
            "ok": (200, {"charged": {"cyclades.vm": 1, "cyclades.cpu": 2}}),
            "over": (413, {"overLimit": over}),
            "slow": (200, {}),
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
