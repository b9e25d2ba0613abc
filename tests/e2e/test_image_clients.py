"""Real image clients against the portal in the testbed: kamaki 0.16 (Python 2.7) uploads a
file and registers it with Plankton, lists, shows, modifies and unregisters it; the
OpenStack CLI (Glance v2 through the Keystone catalog and the discovery document at
``/image``) lists and shows the same image.  Every client runs inside the services host.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require
from tests.testbed.cluster import lan

KAMAKI = Path.home() / ".local" / "bin" / "kamaki"
OPENSTACK = Path(sys.executable).parent / "openstack"
MIB = 1 << 20
PASSWORD = "e2e image password"

Completed = subprocess.CompletedProcess[str]


def run(argv: list[str | Path], *, check: bool = True) -> Completed:
    """Run a client inside the services host; on failure, its output goes into the error."""
    proc = lan().run([str(a) for a in argv], timeout=180, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(str(a) for a in argv)} exited {proc.returncode}:\n"
            f"{proc.stdout}\n{proc.stderr}"
        )
    return proc


@pytest.fixture
def user(portal: Any) -> dict[str, str]:
    email = f"images-{uuid.uuid4().hex[:8]}@example.test"
    uid = portal.snf_portal("user", "add", email, "--name", "Image E2E", "--active",
                            "--password-stdin", input=PASSWORD + "\n").strip()  # fmt: skip
    return {
        "email": email,
        "uuid": uid,
        "token": portal.snf_portal("token", "issue", email).strip(),
    }


def kamaki_for(portal: Any, user: dict[str, str], home: Path) -> Any:
    require(KAMAKI.exists() and shutil.which("python2") is not None,
            "kamaki 0.16 for Python 2.7 is not installed (make deps)")  # fmt: skip
    home.mkdir(parents=True, exist_ok=True)
    conf = home / "kamakirc"
    conf.write_text(
        "[global]\ndefault_cloud = snf\n"
        f"history_file = {home / 'history'}\nlog_file = {home / 'log'}\n\n"
        f'[cloud "snf"]\nurl = {portal.base_url}/identity/v2.0\ntoken = {user["token"]}\n'
    )

    def kamaki(*args: str | Path, check: bool = True) -> Completed:
        return run([KAMAKI, "-c", conf, *args], check=check)

    return kamaki


def openstack_for(portal: Any, user: dict[str, str]) -> Any:
    require(OPENSTACK.exists(), "python-openstackclient is not installed (make deps)")
    auth = ["--os-auth-url", f"{portal.base_url}/identity/v3", "--os-identity-api-version", "3",
            "--os-username", user["email"], "--os-password", PASSWORD,
            "--os-user-domain-name", "Default", "--os-project-name", user["email"],
            "--os-project-domain-name", "Default"]  # fmt: skip

    def openstack(*args: str, check: bool = True) -> Completed:
        return run([OPENSTACK, *auth, *args], check=check)

    return openstack


def test_kamaki_registers_and_openstack_sees(
    portal: Any, user: dict[str, str], tmp_path: Path
) -> None:
    kamaki = kamaki_for(portal, user, tmp_path / "kamaki")
    openstack = openstack_for(portal, user)
    disk = tmp_path / "disk.diskdump"
    data = os.urandom(5 * MIB + 4321)  # two blocks, the last one partial
    disk.write_bytes(data)

    kamaki("container", "create", "images")
    kamaki("file", "upload", "-N", disk, "/images/disk.diskdump")
    info = kamaki("file", "info", "/images/disk.diskdump").stdout
    object_uuid = next(
        line.split(":", 1)[1].strip() for line in info.splitlines() if "x-object-uuid" in line
    )

    # kamaki sends X-Image-Meta-Property-<KEY> as given: ROOT_PARTITION has an underscore
    registered = kamaki("image", "register", "--name", "e2e debian", "--location",
                        "/images/disk.diskdump", "--disk-format", "diskdump",
                        "-p", "OSFAMILY=linux", "-p", "USERS=root",
                        "-p", "ROOT_PARTITION=1").stdout  # fmt: skip
    assert f"id: {object_uuid}" in registered, registered
    assert f"size: {len(data)}" in registered and "osfamily: linux" in registered
    # register also stored its metadata beside the file, as kamaki does
    assert "disk.diskdump.meta" in kamaki("file", "list", "/images").stdout

    listed = kamaki("image", "list").stdout
    assert object_uuid in listed and "e2e debian" in listed, listed
    shown = json.loads(kamaki("image", "info", object_uuid, "--output-format", "json").stdout)
    assert shown["size"] == str(len(data)) and shown["name"] == "e2e debian"
    assert shown["owner"] == user["uuid"] and shown["status"] == "AVAILABLE"
    assert shown["properties"] == {"osfamily": "linux", "users": "root", "root_partition": "1"}
    filtered = kamaki("image", "list", "--disk-format", "qcow2").stdout
    assert object_uuid not in filtered

    images = json.loads(openstack("image", "list", "-f", "json").stdout)
    assert {"ID": object_uuid, "Name": "e2e debian", "Status": "active"} in images, images
    for ref in (object_uuid, "e2e debian"):  # by id, and by name (a 404 first, then a listing)
        image = json.loads(openstack("image", "show", ref, "-f", "json").stdout)
        assert image["id"] == object_uuid and image["size"] == len(data), image
        assert image["disk_format"] == "diskdump" and image["visibility"] == "private"

    kamaki("image", "modify", object_uuid, "--name", "e2e renamed", "--public")
    image = json.loads(openstack("image", "show", object_uuid, "-f", "json").stdout)
    assert image["name"] == "e2e renamed" and image["visibility"] == "public"

    kamaki("image", "unregister", object_uuid)
    assert object_uuid not in kamaki("image", "list").stdout
    images = json.loads(openstack("image", "list", "-f", "json").stdout)
    assert all(i["ID"] != object_uuid for i in images)
    missing = openstack("image", "show", object_uuid, check=False)
    assert missing.returncode != 0
    # the file stays
    assert "disk.diskdump" in kamaki("file", "list", "/images").stdout


def test_kamaki_refuses_a_file_that_is_not_there(
    portal: Any, user: dict[str, str], tmp_path: Path
) -> None:
    kamaki = kamaki_for(portal, user, tmp_path / "kamaki")
    kamaki("container", "create", "images")
    failed = kamaki("image", "register", "--name", "nothing", "--location",
                    "/images/missing.diskdump", "--no-metafile-upload", check=False)  # fmt: skip
    assert failed.returncode != 0
    assert "Nonexistent image file location" in failed.stdout + failed.stderr
