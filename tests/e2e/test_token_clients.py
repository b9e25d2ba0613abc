"""Real clients against the portal in the testbed: python-openstackclient (Keystone v3) and
kamaki 0.16 under Python 2.7 (Astakos v2.0), each run inside the services host."""

from __future__ import annotations

import json
import shutil
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require
from tests.testbed import plan
from tests.testbed.cluster import lan

KAMAKI = Path.home() / ".local" / "bin" / "kamaki"
OPENSTACK = Path(sys.executable).parent / "openstack"
PASSWORD = "e2e password 1"


@pytest.fixture(scope="module")
def alice(portal: Any) -> dict[str, str]:
    email = "alice-e2e@example.test"
    uuid = portal.snf_portal("user", "add", email, "--name", "Alice E2E", "--active",
                             "--password-stdin", input=PASSWORD + "\n").strip()  # fmt: skip
    token = portal.snf_portal("token", "issue", email).strip()
    return {"email": email, "uuid": uuid, "token": token}


def kamaki_config(portal: Any, user: dict[str, str]) -> Path:
    """A kamakirc for ``user`` (kamaki 0.16 under Python 2.7 must be installed)."""
    require(KAMAKI.exists() and shutil.which("python2") is not None,
            "kamaki 0.16 for Python 2.7 is not installed (make deps)")  # fmt: skip
    conf = plan.STATE_DIR / "portal" / "kamakirc"
    conf.write_text(
        "[global]\ndefault_cloud = snf\n\n"
        f'[cloud "snf"]\nurl = {portal.base_url}/identity/v2.0\ntoken = {user["token"]}\n'
    )
    return conf


def test_openstack_token_issue(portal: Any, alice: dict[str, str]) -> None:
    require(OPENSTACK.exists(), "python-openstackclient is not installed (make deps)")
    out = lan().run([
        str(OPENSTACK), "--os-auth-url", f"{portal.base_url}/identity/v3",
        "--os-identity-api-version", "3", "--os-username", alice["email"],
        "--os-password", PASSWORD, "--os-user-domain-name", "Default",
        "--os-project-name", alice["email"], "--os-project-domain-name", "Default",
        "token", "issue", "-f", "json",
    ], timeout=120).stdout  # fmt: skip
    issued = json.loads(out)
    assert issued["user_id"] == alice["uuid"]
    assert issued["project_id"] == alice["uuid"]
    assert issued["id"] and issued["expires"]


def test_openstack_refuses_a_wrong_password(portal: Any, alice: dict[str, str]) -> None:
    require(OPENSTACK.exists(), "python-openstackclient is not installed (make deps)")
    proc = lan().run([
        str(OPENSTACK), "--os-auth-url", f"{portal.base_url}/identity/v3",
        "--os-identity-api-version", "3", "--os-username", alice["email"],
        "--os-password", "not the password", "--os-user-domain-name", "Default",
        "token", "issue",
    ], timeout=120, check=False)  # fmt: skip
    assert proc.returncode != 0
    assert "401" in proc.stderr or "authenticate" in proc.stderr.lower()


def test_kamaki_user_info(portal: Any, alice: dict[str, str]) -> None:
    conf = kamaki_config(portal, alice)
    out = lan().run([str(KAMAKI), "-c", str(conf), "user", "info"], timeout=120).stdout
    assert alice["uuid"] in out
    assert "Alice E2E" in out


def test_kamaki_quota_and_resource_list(portal: Any, alice: dict[str, str]) -> None:
    conf = kamaki_config(portal, alice)
    out = lan().run([str(KAMAKI), "-c", str(conf), "quota", "list"], timeout=120).stdout
    assert alice["uuid"] in out and "cyclades.vm" in out
    out = lan().run([str(KAMAKI), "-c", str(conf), "resource", "list"], timeout=120).stdout
    assert "pithos.diskspace" in out


def test_kamaki_projects_and_memberships(portal: Any, alice: dict[str, str]) -> None:
    conf = kamaki_config(portal, alice)

    def kamaki(*args: str) -> str:
        return lan().run([str(KAMAKI), "-c", str(conf), *args], timeout=120).stdout

    out = kamaki("project", "list")
    assert f"system:{alice['uuid']}" in out
    out = kamaki("project", "info", alice["uuid"])
    assert "system_project: True" in out and "cyclades.vm" in out
    out = kamaki("membership", "list")
    assert f"project: {alice['uuid']}" in out and "state: accepted" in out
    name = f"e2e-{uuid.uuid4().hex[:8]}.example.org"
    out = kamaki("project", "create", "--name", name, "--end-date", "2030-01-01",
                 "--resource", "cyclades.vm=1,2")  # fmt: skip
    project = next(line.split()[1] for line in out.splitlines() if line.startswith("id:"))
    out = kamaki("project", "info", project)
    assert f"name: {name}" in out and "state: uninitialized" in out
    assert "state: pending" in out  # its last application, which alice sees
