"""The event post-hook (snf.hooks.post_hook): from Ganeti's hook environment to a delivered
event, only on the master, only for servers, and never a failure."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from snf.hooks import post_hook

from .helpers import PortalStub, job_file, write_job

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def portal() -> Iterator[PortalStub]:
    stub = PortalStub()
    yield stub
    stub.close()


@pytest.fixture
def node(tmp_path: Path, portal: PortalStub) -> Path:
    """A config dir and a data dir with job 12 running OP_INSTANCE_STARTUP on snf-4."""
    etc = tmp_path / "etc"
    etc.mkdir()
    (tmp_path / "token").write_text("svc-token\n")
    (etc / "snf.toml").write_text(
        f'[hooks]\nportal_url = "{portal.url}"\nservice_token_file = "{tmp_path / "token"}"\n'
        f'spool_dir = "{tmp_path / "spool"}"\nhook_deliver_seconds = 2.0\n'
    )
    queue = tmp_path / "ganeti" / "queue"
    write_job(queue, job_file(11, [("OP_INSTANCE_STARTUP", "snf-4", "success")]))
    write_job(queue, job_file(12, [("OP_INSTANCE_STARTUP", "snf-4", "running")]))
    return tmp_path


def env(node: Path, **changes: str) -> dict[str, str]:
    base = {"PATH": "/sbin:/bin:/usr/sbin:/usr/bin", "GANETI_HOOKS_VERSION": "2",
            "GANETI_HOOKS_PHASE": "post", "GANETI_HOOKS_PATH": "instance-start",
            "GANETI_OP_CODE": "OP_INSTANCE_STARTUP", "GANETI_OBJECT_TYPE": "INSTANCE",
            "GANETI_CLUSTER": "c1.example.test", "GANETI_MASTER": socket.getfqdn(),
            "GANETI_DATA_DIR": str(node / "ganeti"), "GANETI_INSTANCE_NAME": "snf-4",
            "GANETI_OP_TARGET": "snf-4"}  # fmt: skip
    return base | changes


def test_the_hook_delivers_a_success_event(node: Path, portal: PortalStub) -> None:
    post_hook.run(env(node), node / "etc")
    (event,) = portal.received
    assert event["id"] == "c1.example.test:12:0" and event["source"] == "hook"
    assert (event["opcode"], event["instance"], event["status"]) == (
        "OP_INSTANCE_STARTUP", "snf-4", "success")  # fmt: skip
    assert list((node / "spool").glob("*.json")) == []


@pytest.mark.parametrize(
    "changes",
    [
        {"GANETI_MASTER": "other.example.test"},
        {"GANETI_INSTANCE_NAME": "vm1.example.test", "GANETI_OP_TARGET": "vm1.example.test"},
        {"GANETI_HOOKS_PHASE": "pre"},
        {"GANETI_OP_CODE": "OP_INSTANCE_REBOOT"},  # no such job running: eventd reports it
    ],
)
def test_nothing_to_report(node: Path, portal: PortalStub, changes: dict[str, str]) -> None:
    post_hook.run(env(node, **changes), node / "etc")
    assert portal.received == [] and not list((node / "spool").glob("*.json"))


def test_a_node_without_a_token_does_nothing(node: Path, portal: PortalStub) -> None:
    (node / "token").unlink()
    post_hook.run(env(node), node / "etc")
    assert portal.received == [] and not (node / "spool").exists()


def test_the_portal_down_leaves_the_event_spooled_and_the_job_alone(
    node: Path, portal: PortalStub
) -> None:
    """The installed shim, run as Ganeti runs it (reset environment), exits 0."""
    portal.default = 503
    shim = REPO / "hooks" / "ganeti" / "snf-events"
    source = shim.read_text().replace("#!/usr/bin/python3", f"#!{sys.executable}", 1)
    installed = node / "snf-events"
    installed.write_text(source)
    installed.chmod(0o755)
    # The configuration comes from /etc/snf on a node; here SNF_CONFIG_DIR points at ours.
    proc = subprocess.run([str(installed)], env=env(node, SNF_CONFIG_DIR=str(node / "etc")),
                          capture_output=True, text=True, timeout=30)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "not delivered" in proc.stderr and "HTTP 503" in proc.stderr
    (spooled,) = (node / "spool").glob("*.json")
    assert json.loads(spooled.read_text())["id"] == "c1.example.test:12:0"


def test_a_broken_configuration_is_a_warning_not_a_failure(node: Path) -> None:
    (node / "etc" / "snf.toml").write_text("[hooks]\nbogus = 1\n")
    proc = subprocess.run([sys.executable, "-c", "from snf.hooks.post_hook import main; main()"],
                          env=env(node, SNF_CONFIG_DIR=str(node / "etc")),
                          capture_output=True, text=True, timeout=30)  # fmt: skip
    assert proc.returncode == 0 and "snf-events: warning" in proc.stderr
    assert os.path.exists(node / "etc")
