"""snf-image in a real Ganeti cluster (testbed, fake hypervisor): deploy real Linux disk
images onto `file` disks and archipelago clones, in both modes, then inspect the disks."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import subprocess
import urllib.request
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from snf.archipelago import volumes
from snf.archipelago.mapfile import OBJECT
from snf.archipelago.store_dir import DirStore
from tests.testbed import images, install, plan
from tests.testbed.cluster import Cluster, lan

pytestmark = pytest.mark.ganeti
OS = "snf-image+default"
MiB = 1 << 20
PASSWORD = "correct horse, battery=staple"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGvQ2xk3Qm5hZ0n8m3b8b3Vx0cH4eXJ0Z2V0c3RyaW5n me@laptop"
IMAGES = plan.STATE_DIR / "snf-image-tests"


def crypt_hash(password: str, setting: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt as libcrypt

        return libcrypt.crypt(password, setting)


@pytest.fixture(scope="module")
def c(cluster1: Cluster) -> Cluster:
    for node in cluster1.plan.nodes:
        install.install_snf(node)
    return cluster1


@pytest.fixture(scope="module")
def image_dir() -> Iterator[Path]:
    IMAGES.mkdir(parents=True, exist_ok=True)
    root = images.build_root(IMAGES / "root", payload=32 * MiB)
    images.build_disk(IMAGES / "linux-ext4.raw", 64 * MiB, root)
    images.build_disk(
        IMAGES / "linux-xfs-gpt.raw", 320 * MiB, root, fs="xfs", table="gpt", fs_size=310 * MiB
    )
    yield IMAGES
    subprocess.run(["rm", "-rf", str(IMAGES)], check=False)


def set_mode(c: Cluster, mode: str) -> None:
    for node in c.plan.nodes:
        dropins = node.state_dir / "etc-snf" / "conf.d"
        dropins.mkdir(exist_ok=True)
        (dropins / "image.toml").write_text(f'[image]\nmode = "{mode}"\n')


def osparams(values: dict[str, str]) -> str:
    """gnt-* key=value lists: commas inside values are escaped with a backslash."""
    return ",".join(f"{k}={v.replace(',', chr(92) + ',')}" for k, v in values.items())


def add(
    c: Cluster,
    name: str,
    img_id: str,
    *,
    disk: str = "0:size=256M",
    template: str = "file",
    params: dict[str, str] | None = None,
    secret: dict[str, str] | None = None,
    hypervisor: str | None = None,
    memory: int = 64,
    start: bool = True,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    argv = ["gnt-instance", "add", "-t", template, "--disk", disk, "-o", OS,
            "-O", osparams({"img_id": img_id, "img_format": "diskdump", **(params or {})}),
            "-n", c.info.master, "--no-name-check", "--no-ip-check",
            "-B", f"memory={memory}"]  # fmt: skip
    if secret:
        argv += ["--os-parameters-secret", osparams(secret)]
    if hypervisor:
        argv += ["-H", hypervisor]
    if not start:
        argv += ["--no-start"]
    return c.gnt(*argv, name, check=check, timeout=600)


def gnt_ok(c: Cluster, *argv: str) -> str:
    done = c.gnt(*argv, check=False, timeout=600)
    assert done.returncode == 0, f"{' '.join(argv[:2])}: {done.stdout}{done.stderr}"
    return done.stdout


def remove(c: Cluster, name: str) -> None:
    c.gnt("gnt-instance", "remove", "-f", "--shutdown-timeout=0", name, check=False)


def file_disk(c: Cluster, name: str) -> Path:
    (path,) = (c.plan.master.state_dir / "srv-ganeti" / "file-storage" / name).glob("*disk0*")
    return path


def os_log(c: Cluster, name: str) -> str:
    logs = sorted((c.plan.master.state_dir / "log-ganeti" / "os").glob(f"add-*-{name}-*.log"))
    return logs[-1].read_text() if logs else ""


def customized_checks(root: Path, name: str) -> None:
    """What every customized test image must show."""
    assert (root / "etc/hostname").read_text() == name + "\n"
    assert f"127.0.1.1\t{name} {name.split('.')[0]}" in (root / "etc/hosts").read_text()
    shadow = {
        line.split(":")[0]: line.split(":")
        for line in (root / "etc/shadow").read_text().splitlines()
    }
    for user in ("root", "user"):
        hashed = shadow[user][1]
        assert hashed.startswith("$6$") and crypt_hash(PASSWORD, hashed) == hashed
    assert crypt_hash("wrong", shadow["root"][1]) != shadow["root"][1]
    keys = root / "root/.ssh/authorized_keys"
    assert keys.read_text() == KEY + "\n"
    assert keys.stat().st_mode & 0o777 == 0o600
    user_keys = root / "home/user/.ssh/authorized_keys"
    assert (user_keys.stat().st_uid, user_keys.stat().st_gid) == (1000, 1000)
    assert (root / "home/user/.ssh").stat().st_mode & 0o777 == 0o700
    injected = root / images.INJECTED.lstrip("/")
    assert injected.read_bytes() == b"hello from the portal\n"
    st = injected.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (1000, 100, 0o640)
    assert not [p for p in (root / "etc/ssh").iterdir() if p.name.startswith("ssh_host_")]
    assert (root / "etc/ssh/sshd_config").exists()
    assert (root / "etc/machine-id").read_bytes() == b""
    assert (
        not (root / "var/lib/dbus/machine-id").exists()
        or (root / "var/lib/dbus/machine-id").is_symlink()
    )
    assert "iface eth0 inet dhcp" in (root / "etc/network/interfaces").read_text()


PARAMS = {
    "img_properties": json.dumps({"OSFAMILY": "linux", "USERS": "root user"}),
    "img_personality": json.dumps(
        [
            {
                "path": images.INJECTED,
                "contents": base64.b64encode(b"hello from the portal\n").decode(),
                "owner": "user",
                "group": "users",
                "mode": 0o640,
            }
        ]
    ),
    "auth_keys": KEY,
}


@pytest.mark.parametrize("mode", ["direct", "helper"])
def test_deploy_onto_a_file_disk(c: Cluster, image_dir: Path, mode: str) -> None:
    set_mode(c, mode)
    name = f"vm-img-{mode}.snf.test"
    try:
        add(
            c,
            name,
            str(image_dir / "linux-ext4.raw"),
            params=PARAMS,
            secret={"img_passwd": PASSWORD},
        )
        log = os_log(c, name)
        assert "copied 64 of 64 MiB (100%)" in log and f"{mode} mode" in log
        disk = file_disk(c, name)
        part, _ = images.fs_partition(disk)
        assert part.end > 255 * MiB  # the partition was grown to the 256 MiB disk ...
        with images.mounted(disk) as root:
            st = os.statvfs(root)
            assert st.f_blocks * st.f_frsize > 200 * MiB  # ... and so was the filesystem
            customized_checks(root, name)
        # The password never reached Ganeti's configuration or its job files.
        lib = c.plan.master.state_dir / "lib-ganeti"
        for path in [lib / "config.data", *(lib / "queue").glob("job-*")]:
            assert PASSWORD.encode() not in path.read_bytes()
    finally:
        remove(c, name)


def test_xfs_on_gpt_in_the_helper(c: Cluster, image_dir: Path) -> None:
    set_mode(c, "helper")
    name = "vm-img-xfs.snf.test"
    try:
        add(c, name, str(image_dir / "linux-xfs-gpt.raw"), disk="0:size=512M", params=PARAMS,
            secret={"img_passwd": PASSWORD})  # fmt: skip
        disk = file_disk(c, name)
        check = subprocess.run(["sgdisk", "-v", str(disk)], capture_output=True, text=True)
        assert "No problems found" in check.stdout
        with images.mounted(disk) as root:
            st = os.statvfs(root)
            assert st.f_blocks * st.f_frsize > 400 * MiB  # from 310 MiB
            customized_checks(root, name)
    finally:
        remove(c, name)


@pytest.mark.parametrize("mode", ["direct", "helper"])
def test_an_archipelago_clone_is_customized_without_copying(
    c: Cluster, image_dir: Path, mode: str
) -> None:
    set_mode(c, mode)
    store = DirStore(plan.SHARED_STORE)
    image = f"img-snf-{mode}"
    raw = (image_dir / "linux-ext4.raw").read_bytes()
    volumes.import_image(store, image, io.BytesIO(raw))
    name = f"vm-clone-{mode}.snf.test"
    try:
        add(c, name, f"map:{image}", template="ext",
            disk=f"0:size=256M,provider=archipelago,origin={image}", params=PARAMS,
            secret={"img_passwd": PASSWORD})  # fmt: skip
        assert f"the disk is a clone of {image}: nothing to copy" in os_log(c, name)
        listed = c.gnt("gnt-instance", "list", "--no-headers", "-o", "disk.uuids", name).stdout
        found = volumes.lookup_disk(store, listed.strip(" \n[]'"))
        assert found is not None and found["origin"] == image
        vmap = volumes.load_map(store, found["volume"])
        # Copy-on-write: only the blocks customization touched (superblock, inode tables,
        # journal, /etc) were written; the rest, the 32 MiB payload included, is shared.
        image_blocks = len(raw) // vmap.block_size
        written = [i for i, e in vmap.entries() if e.kind == OBJECT and i < image_blocks]
        assert len(written) <= image_blocks // 2, f"blocks {written} of {image_blocks} written"
        data = volumes.peek(store, found["volume"], 0, vmap.size)
        copy = image_dir / f"{name}.raw"
        copy.write_bytes(data)
        try:
            with images.mounted(copy) as root:
                customized_checks(root, name)
        finally:
            copy.unlink()
        # The image itself never changed.
        assert volumes.peek(store, image, 0, len(raw)) == raw
    finally:
        remove(c, name)
        volumes.remove_map(store, image)
        store.close()


def tree_digest(path: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        st = p.lstat()
        h.update(f"{p} {st.st_mode} {st.st_size} {st.st_mtime_ns}\n".encode())
        if p.is_file() and not p.is_symlink():
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.mark.parametrize("mode", ["direct", "helper"])
def test_hostile_images_fail_cleanly_and_touch_nothing_outside(
    c: Cluster, image_dir: Path, mode: str, tmp_path: Path
) -> None:
    set_mode(c, mode)
    outside = plan.STATE_DIR / "snf-image-outside"
    outside.mkdir(exist_ok=True)
    (outside / "shadow").write_text("root:OUTSIDE:1:0:99999:7:::\n")
    (outside / "keys").mkdir(exist_ok=True)
    before = tree_digest(outside)
    root = images.build_root(tmp_path / "root")
    (root / "etc/shadow").unlink()
    (root / "etc/shadow").symlink_to(str(outside / "shadow"))
    (root / "root/.ssh").symlink_to(str(outside / "keys"))
    hostile = image_dir / f"hostile-{mode}.raw"
    images.build_disk(hostile, 64 * MiB, root)
    name = f"vm-hostile-{mode}.snf.test"
    try:
        done = add(c, name, str(hostile), params={"auth_keys": KEY},
                   secret={"img_passwd": PASSWORD}, check=False)  # fmt: skip
        assert done.returncode != 0
        assert "refusing to write /etc/shadow: it is a symbolic link in the image" in os_log(
            c, name
        )
        assert tree_digest(outside) == before
        remove(c, name)  # Ganeti keeps an instance whose OS create failed
        # Keys only (no password): /root/.ssh -> outside is followed inside the image.
        done = add(c, name, str(hostile), params={"auth_keys": KEY}, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        assert tree_digest(outside) == before
        with images.mounted(file_disk(c, name)) as mnt:
            assert (
                mnt / str(outside).lstrip("/") / "keys/authorized_keys"
            ).read_text() == KEY + "\n"
    finally:
        remove(c, name)
        hostile.unlink(missing_ok=True)
        subprocess.run(["rm", "-rf", str(outside)], check=False)


def test_a_corrupt_filesystem_fails_with_a_clear_message(c: Cluster, image_dir: Path) -> None:
    set_mode(c, "helper")
    corrupt = image_dir / "corrupt.raw"
    data = bytearray((image_dir / "linux-ext4.raw").read_bytes())
    data[MiB + 4096 : MiB + 2 * 4096] = os.urandom(4096)  # the group descriptors
    corrupt.write_bytes(bytes(data))
    name = "vm-corrupt.snf.test"
    try:
        done = add(c, name, str(corrupt), check=False)
        assert done.returncode != 0
        assert "e2fsck failed" in os_log(c, name)
    finally:
        remove(c, name)
        corrupt.unlink()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"img_properties": "{not json"}, "img_properties is not valid JSON"),
        ({"img_personality": json.dumps([{"path": "/etc/big", "contents": base64.b64encode(
            os.urandom(11 * 1024)).decode()}])}, "10240"),
        ({"img_format": "vmdk"}, "img_format"),
        ({"auth_keys": "ssh-rsa not-base64"}, "auth_keys"),
    ],
)  # fmt: skip
def test_verify_refuses_bad_parameters_before_anything_is_made(
    c: Cluster, image_dir: Path, params: dict[str, str], message: str
) -> None:
    name = "vm-bad.snf.test"
    done = add(c, name, str(image_dir / "linux-ext4.raw"), params=params, check=False)
    try:
        assert done.returncode != 0
        assert message in done.stdout + done.stderr
        listed = c.gnt("gnt-instance", "list", "--no-headers", "-o", "name").stdout
        assert name not in listed
    finally:
        remove(c, name)


def _rename(c: Cluster, old: str, new: str) -> None:
    # gnt-instance rename --no-name-check asks for a confirmation on a terminal: use RAPI.
    with c.rapi() as rapi:
        rapi.wait_for_job(rapi.rename_instance(old, new, name_check=False, ip_check=False))


def test_export_import_and_rename(c: Cluster, image_dir: Path) -> None:
    set_mode(c, "direct")
    name, renamed, imported = "vm-exp.snf.test", "vm-exp2.snf.test", "vm-imp.snf.test"
    try:
        add(c, name, str(image_dir / "linux-ext4.raw"), params=PARAMS,
            secret={"img_passwd": PASSWORD})  # fmt: skip
        gnt_ok(c, "gnt-instance", "shutdown", "--timeout=0", name)
        lan().call(_rename, c, name, renamed)
        assert "is now vm-exp2.snf.test" in "".join(
            p.read_text() for p in (c.plan.master.state_dir / "log-ganeti" / "os").glob("rename-*")
        )
        gnt_ok(c, "gnt-backup", "export", "-n", c.info.master, renamed)
        original = file_disk(c, renamed).read_bytes()
        gnt_ok(c, "gnt-backup", "import", "-t", "file", "--disk", "0:size=256M",
               "--net", "0:mac=generate", "-n", c.info.master, "--src-node", c.info.master,
               "--src-dir", f"/var/lib/ganeti/export/{renamed}",
               "--no-name-check", "--no-ip-check", imported)  # fmt: skip
        assert file_disk(c, imported).read_bytes() == original
    finally:
        for n in (name, renamed, imported):
            remove(c, n)
        c.gnt("gnt-backup", "remove", renamed, check=False)


def _upload(url: str, token: str, path: str) -> int:
    with open(path, "rb") as f:
        size = str(os.fstat(f.fileno()).st_size)
        headers = {"X-Auth-Token": token, "Content-Length": size}
        request = urllib.request.Request(url, data=f, method="PUT", headers=headers)
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status


def test_a_pithos_image_is_read_from_the_portal_with_the_node_token(
    c: Cluster, image_dir: Path, portal: Any
) -> None:
    set_mode(c, "direct")
    email = f"img-{uuid.uuid4().hex[:8]}@example.test"
    account = portal.snf_portal("user", "add", email, "--name", "Images", "--active").strip()
    token = portal.snf_portal("token", "issue", email).strip()
    base = f"{portal.base_url}/object-store/v1/{account}"
    assert lan().call(_upload, f"{base}/images", token, "/dev/null") in (201, 202)
    obj = "images/linux%20image.raw"
    assert lan().call(_upload, f"{base}/{obj}", token, str(image_dir / "linux-ext4.raw")) == 201
    service = portal.snf_portal("service", "add", f"node-{uuid.uuid4().hex[:6]}").strip()
    for node in c.plan.nodes:
        etc = node.state_dir / "etc-snf"
        (etc / "service-token").write_text(service + "\n")
        (etc / "service-token").chmod(0o600)
        (etc / "conf.d" / "image.toml").write_text(
            '[image]\nmode = "direct"\n'
            f'portal_url = "{portal.base_url}"\nservice_token_file = "/etc/snf/service-token"\n'
        )
    name = "vm-pithos.snf.test"
    try:
        add(c, name, f"pithos://{account}/images/linux image.raw")
        assert "copied 64 of 64 MiB (100%)" in os_log(c, name)
        with images.mounted(file_disk(c, name)) as root:
            assert (root / "etc/hostname").read_text() == name + "\n"
        remove(c, name)
        # A token the portal does not know: a clean failure naming the answer.
        for node in c.plan.nodes:
            (node.state_dir / "etc-snf" / "service-token").write_text("not-a-token\n")
        done = add(c, name, f"pithos://{account}/images/linux image.raw", check=False)
        assert done.returncode != 0
        assert "cannot read the image: 401" in os_log(c, name)
    finally:
        remove(c, name)
        for node in c.plan.nodes:
            (node.state_dir / "etc-snf" / "service-token").unlink(missing_ok=True)
