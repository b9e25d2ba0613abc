"""snf.image.tasks on a real (unmounted) Linux root made by ``tests.testbed.images.build_root``:
each task's effect on the files, owners and modes; EXCLUDE_TASK_<NAME> skipping exactly its
task; refusals.  Every task runs through an ``agent.Worker`` rooted at the image by a
``SafeRoot``, called directly (``direct`` mode) or through the JSON-lines protocol of the
helper VM's agent (``helper`` mode, without the VM)."""

from __future__ import annotations

import base64
import json
import os
import stat
import struct
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from snf.common.errors import InvalidInput
from snf.image import agent, tasks
from snf.image.ganeti_env import parse_os_env
from snf.image.helper_vm import HelperError
from snf.image.params import TASKS, parse_params
from snf.image.saferoot import SafeRoot
from snf.image.tasks import Context, Guest, run_mounted_tasks
from tests.conftest import require
from tests.testbed import images

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt  # the system's crypt(3): checks our hashes against libxcrypt

HASH = crypt.crypt("hashed", crypt.mksalt(crypt.METHOD_SHA512))

PASSWORD = "correct horse battery"
DAY = 20_000
NOW = DAY * 86400 + 12345.0
UUID = "6f0e1d2c-3b4a-4596-8877-a1b2c3d4e5f6"
MAC = "aa:00:00:12:34:56"
SEED = "var/lib/cloud/seed/nocloud"
USERDATA = b"#cloud-config\nruncmd: [echo hi]\n"
PAYLOAD = b"injected \xff\x00 bytes\n"  # not text: written verbatim
#: users and groups that exist only in the image, or with other ids on the node
#: (the node's daemon is uid 1, its staff group gid 50)
IMAGE_USERS = "daemon:x:4004:4005:daemon:/usr/sbin:/bin/false\n"
IMAGE_GROUPS = "staff:x:3003:\ndaemon:x:4005:\n"


def ssh_key(comment: str, seed: int = 7) -> str:
    blob = struct.pack(">I", 11) + b"ssh-ed25519" + struct.pack(">I", 32) + bytes([seed]) * 32
    return f"ssh-ed25519 {base64.b64encode(blob).decode()} {comment}"


KEY = ssh_key("alice@laptop")
ENV = {
    "OS_API_VERSION": "20",
    "OS_NAME": "snf-image",
    "OS_VARIANT": "default",
    "INSTANCE_NAME": "vm1.example.org",
    "INSTANCE_UUID": UUID,
    "NIC_COUNT": "1",
    "NIC_0_MAC": MAC.upper(),
}


def osp(**props: str) -> dict[str, str]:
    """Every parameter a create gets, with the image properties ``props`` (USERS: root user).

    The password is the ready hash HASH: hashing a password takes a while."""
    return {
        "img_id": "map:img",
        "img_format": "diskdump",
        "img_passwd_hash": HASH,
        "auth_keys": KEY + "\n",
        "img_properties": json.dumps({"USERS": "root user", **props}),
        "img_personality": json.dumps(
            [
                {
                    "path": "/etc/snf-injected",
                    "contents": base64.b64encode(PAYLOAD).decode(),
                    "owner": "daemon",
                    "group": "staff",
                    "mode": 0o640,
                }
            ]
        ),
        "cloud_userdata": base64.b64encode(USERDATA).decode(),
    }


def with_password(params: dict[str, str]) -> dict[str, str]:
    """``params`` with the password PASSWORD instead of the ready hash HASH."""
    params = {**params, "img_passwd": PASSWORD}
    del params["img_passwd_hash"]
    return params


# --- the image and the two ways to reach it -------------------------------------------------------


@pytest.fixture
def image(tmp_path: Path) -> Path:
    require(os.geteuid() == 0, "owners in the image need root")
    require(images.BUSYBOX.exists(), f"{images.BUSYBOX} is not installed")
    root = images.build_root(tmp_path / "image")
    with open(root / "etc/passwd", "a") as f:
        f.write(IMAGE_USERS)
    with open(root / "etc/group", "a") as f:
        f.write(IMAGE_GROUPS)
    return root


class DirectCalls:
    """``direct`` mode: the worker's methods, called in this process."""

    def __init__(self, worker: agent.Worker) -> None:
        self.worker = worker

    def call(self, op: str, **args: Any) -> Any:
        return getattr(self.worker, op)(**args)


class ProtocolCalls(DirectCalls):
    """``helper`` mode without the VM: one JSON request line per call, as HelperVM sends."""

    def call(self, op: str, **args: Any) -> Any:
        request = {"op": op, "args": {k: agent.encode(v) for k, v in args.items()}}
        answer = agent.handle(self.worker, json.dumps(request).encode())
        answer = json.loads(json.dumps(answer))
        if answer["ok"] is not True:
            raise HelperError(answer["error"])
        return agent.decode(answer["result"])


@pytest.fixture(params=["direct", "protocol"])
def guest(request: pytest.FixtureRequest, image: Path) -> Iterator[Guest]:
    worker = agent.Worker(str(image))
    worker.root = SafeRoot(str(image))
    calls = DirectCalls if request.param == "direct" else ProtocolCalls
    yield Guest(calls(worker))
    worker.root.close()
    assert not list(image.rglob(".snf-image-*"))  # no temporary file left


def run(guest: Guest, params: dict[str, str], env: dict[str, str] | None = None) -> list[str]:
    said: list[str] = []
    ctx = Context(parse_params(params), parse_os_env(ENV if env is None else env), said.append,
                  now=NOW)  # fmt: skip
    run_mounted_tasks(guest, ctx)
    return said


def owner_mode(path: Path) -> tuple[int, int, int]:
    st = path.lstat()
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)


def shadow_entries(image: Path) -> dict[str, list[str]]:
    lines = (image / "etc/shadow").read_text().splitlines()
    return {fields[0]: fields for fields in (line.split(":") for line in lines)}


def snapshot(top: Path) -> dict[str, tuple[Any, ...]]:
    """Every entry below ``top``: type and mode, owner, and contents or link target."""
    out: dict[str, tuple[Any, ...]] = {}
    for path in sorted(top.rglob("*")):
        st = path.lstat()
        data: bytes | str | None = None
        if stat.S_ISREG(st.st_mode):
            data = path.read_bytes()
        elif stat.S_ISLNK(st.st_mode):
            data = os.readlink(path)
        out[str(path.relative_to(top))] = (st.st_mode, st.st_uid, st.st_gid, data)
    return out


# --- every task at once ---------------------------------------------------------------------------


def test_every_task(guest: Guest, image: Path) -> None:
    said = run(guest, with_password(osp()))

    assert (image / "etc/hostname").read_text() == "vm1.example.org\n"
    assert (
        image / "etc/hosts"
    ).read_text() == "127.0.0.1\tlocalhost\n127.0.1.1\tvm1.example.org vm1\n"

    shadow = shadow_entries(image)
    for user in ("root", "user"):
        hashed = shadow[user][1]
        assert hashed.startswith("$6$")
        assert crypt.crypt(PASSWORD, hashed) == hashed
        assert crypt.crypt("wrong", hashed) != hashed
        assert shadow[user][2:] == [str(DAY), "0", "99999", "7", "", "", ""]
    assert owner_mode(image / "etc/shadow") == (0, 0, 0o640)  # kept

    assert owner_mode(image / "root/.ssh") == (0, 0, 0o700)
    assert owner_mode(image / "root/.ssh/authorized_keys") == (0, 0, 0o600)
    assert (image / "root/.ssh/authorized_keys").read_text() == KEY + "\n"
    assert owner_mode(image / "home/user/.ssh") == (1000, 1000, 0o700)
    assert owner_mode(image / "home/user/.ssh/authorized_keys") == (1000, 1000, 0o600)
    assert (image / "home/user/.ssh/authorized_keys").read_text() == KEY + "\n"

    assert sorted(os.listdir(image / "etc/ssh")) == ["sshd_config"]

    assert (image / "etc/machine-id").read_bytes() == b""
    assert owner_mode(image / "etc/machine-id") == (0, 0, 0o444)
    assert os.readlink(image / "var/lib/dbus/machine-id") == "/etc/machine-id"  # link kept

    injected = image / "etc/snf-injected"
    assert injected.read_bytes() == PAYLOAD
    assert owner_mode(injected) == (4004, 3003, 0o640)  # the image's daemon and staff

    interfaces = (image / "etc/network/interfaces").read_text()
    assert interfaces.startswith("auto lo\niface lo inet loopback\n")
    assert f"NIC {MAC}.\nauto eth0\niface eth0 inet dhcp\n" in interfaces

    assert not (image / "var/lib/cloud").exists()  # the image has no cloud-init

    assert said == [
        "host name: vm1.example.org",
        "password set for root, user",
        "1 SSH key(s) authorized for root, user",
        "SSH host keys removed: 3",
        "machine ID reset (a new one is made at first boot)",
        f"injected /etc/snf-injected ({len(PAYLOAD)} bytes, 0640)",
        "DHCP configured for 1 NIC(s) (ifupdown)",
        "cloud_userdata given but the image has no cloud-init: ignored",
    ]


def test_untouched_files_stay_as_they_were(guest: Guest, image: Path) -> None:
    before = snapshot(image)
    run(guest, osp())
    after = snapshot(image)
    changed = {p for p in before.keys() & after.keys() if before[p] != after[p]}
    assert changed == {
        "etc/hostname", "etc/hosts", "etc/shadow", "etc/machine-id", "etc/network/interfaces",
    }  # fmt: skip
    assert before.keys() - after.keys() == {
        "etc/ssh/ssh_host_ed25519_key", "etc/ssh/ssh_host_ed25519_key.pub",
        "etc/ssh/ssh_host_rsa_key",
    }  # fmt: skip
    assert after.keys() - before.keys() == {
        "root/.ssh", "root/.ssh/authorized_keys", "home/user/.ssh",
        "home/user/.ssh/authorized_keys", "etc/snf-injected",
    }  # fmt: skip


# --- each task's details --------------------------------------------------------------------------


def test_no_instance_name_keeps_the_host_name(guest: Guest, image: Path) -> None:
    env = {k: v for k, v in ENV.items() if k != "INSTANCE_NAME"}
    said = run(guest, osp(), env)
    assert (image / "etc/hostname").read_text() == "template\n"
    assert "127.0.1.1\ttemplate" in (image / "etc/hosts").read_text()
    assert said[0] == "no instance name: the host name is left as it is"


@pytest.mark.parametrize("method", ["METHOD_SHA512", "METHOD_SHA256"])
def test_a_password_hash_is_written_verbatim(guest: Guest, image: Path, method: str) -> None:
    hashed = crypt.crypt("given", crypt.mksalt(getattr(crypt, method)))
    run(guest, {**osp(USERS="user"), "img_passwd_hash": hashed})
    shadow = shadow_entries(image)
    assert shadow["user"][1:3] == [hashed, str(DAY)]
    assert shadow["root"][1:3] == ["*", "19000"]  # not in USERS


def test_no_password_leaves_the_shadow_file_alone(guest: Guest, image: Path) -> None:
    before = (image / "etc/shadow").read_bytes()
    params = osp()
    del params["img_passwd_hash"]
    said = run(guest, params)
    assert (image / "etc/shadow").read_bytes() == before
    assert not any(m.startswith("password set") for m in said)
    assert (image / "root/.ssh/authorized_keys").exists()


@pytest.mark.parametrize(
    ("drop", "error"),
    [
        ("auth_keys", "user ghost is not in the image's /etc/shadow"),
        ("img_passwd_hash", "user ghost is not in the image's /etc/passwd"),
    ],
)
def test_a_user_missing_from_the_image(guest: Guest, image: Path, drop: str, error: str) -> None:
    shadow = (image / "etc/shadow").read_bytes()
    params = osp(USERS="root ghost")
    del params[drop]
    with pytest.raises(InvalidInput, match=error):
        run(guest, params)
    assert (image / "etc/shadow").read_bytes() == shadow


@pytest.mark.parametrize(
    ("prepare", "error"),
    [
        (lambda root: (root / "etc/shadow").unlink(), "the image has no /etc/shadow"),
        (
            lambda root: ((root / "etc/shadow").unlink(), (root / "etc/shadow").symlink_to("x")),
            "/etc/shadow: it is a symbolic link",
        ),
    ],
    ids=["missing", "link"],
)
def test_a_bad_shadow_file_is_refused(guest: Guest, image: Path, prepare: Any, error: str) -> None:
    prepare(image)
    with pytest.raises(InvalidInput, match=error):
        run(guest, osp())


def test_authorized_keys_are_merged(guest: Guest, image: Path) -> None:
    other = ssh_key("bob", seed=9)
    (image / "root/.ssh").mkdir(mode=0o755)
    (image / "root/.ssh/authorized_keys").write_text(f'from="10.0.0.1" {KEY}\n{other}')
    run(guest, osp(USERS="root"))
    text = (image / "root/.ssh/authorized_keys").read_text()
    assert text == f'from="10.0.0.1" {KEY}\n{other}\n'  # kept, the given key not repeated
    assert owner_mode(image / "root/.ssh") == (0, 0, 0o755)  # an existing folder is kept


def test_a_regular_dbus_machine_id_is_removed(guest: Guest, image: Path) -> None:
    dbus = image / "var/lib/dbus/machine-id"
    dbus.unlink()
    dbus.write_text("0123456789abcdef0123456789abcdef\n")
    run(guest, osp())
    assert not dbus.exists() and not dbus.is_symlink()
    assert (image / "etc/machine-id").read_bytes() == b""


def test_no_machine_id_in_the_image(guest: Guest, image: Path) -> None:
    (image / "etc/machine-id").unlink()
    said = run(guest, osp())
    assert not (image / "etc/machine-id").exists()
    assert os.readlink(image / "var/lib/dbus/machine-id") == "/etc/machine-id"
    assert "no /etc/machine-id: nothing to reset" in said


def test_personality_with_numeric_and_default_owners(guest: Guest, image: Path) -> None:
    files = [
        {"path": "/opt/app/conf", "contents": base64.b64encode(b"a=1\n").decode(),
         "owner": "1234", "group": 5678, "mode": 0o600},
        {"path": "/etc/motd", "contents": base64.b64encode(b"hello\n").decode()},
    ]  # fmt: skip
    run(guest, {**osp(), "img_personality": json.dumps(files)})
    assert (image / "opt/app/conf").read_bytes() == b"a=1\n"
    assert owner_mode(image / "opt/app/conf") == (1234, 5678, 0o600)
    assert owner_mode(image / "opt/app") == (0, 0, 0o755)  # a missing parent, made
    assert owner_mode(image / "etc/motd") == (0, 0, 0o440)


def test_personality_owner_unknown_to_the_image(guest: Guest, image: Path) -> None:
    files = [{"path": "/etc/x", "contents": "", "owner": "nobody"}]  # the node has nobody
    with pytest.raises(InvalidInput, match="owner 'nobody' is not a user of the image"):
        run(guest, {**osp(), "img_personality": json.dumps(files)})
    assert not (image / "etc/x").exists()


def test_network_with_two_nics_and_without_any(guest: Guest, image: Path) -> None:
    env = {**ENV, "NIC_COUNT": "2", "NIC_1_MAC": "aa:00:00:ab:cd:ef"}
    run(guest, osp(), env)
    interfaces = (image / "etc/network/interfaces").read_text()
    assert "iface eth0 inet dhcp" in interfaces and "iface eth1 inet dhcp" in interfaces
    assert "aa:00:00:ab:cd:ef" in interfaces


def test_no_nics_leaves_the_network_alone(guest: Guest, image: Path) -> None:
    before = (image / "etc/network/interfaces").read_bytes()
    said = run(guest, osp(), {**ENV, "NIC_COUNT": "0"})
    assert (image / "etc/network/interfaces").read_bytes() == before
    assert not any("NIC" in m for m in said)


def test_an_image_without_a_known_network_system(guest: Guest, image: Path) -> None:
    (image / "etc/network/interfaces").unlink()
    said = run(guest, osp())
    assert not (image / "etc/network/interfaces").exists()
    assert "no known network configuration system in the image: NICs left as they are" in said


def test_netplan_image(guest: Guest, image: Path) -> None:
    (image / "etc/netplan").mkdir()
    run(guest, osp())
    path = image / "etc/netplan/50-snf-image.yaml"
    assert f'macaddress: "{MAC}"' in path.read_text()
    assert owner_mode(path) == (0, 0, 0o600)
    assert "eth0" not in (image / "etc/network/interfaces").read_text()


@pytest.mark.parametrize(
    ("cloud_cfg", "prop", "written"),
    [(False, None, False), (True, None, True), (False, "yes", True), (True, "no", False)],
    ids=["no-cloud-init", "cloud.cfg", "CLOUD_INIT=yes", "CLOUD_INIT=no"],
)
def test_cloud_init_seed(
    guest: Guest, image: Path, cloud_cfg: bool, prop: str | None, written: bool
) -> None:
    if cloud_cfg:
        (image / "etc/cloud").mkdir()
        (image / "etc/cloud/cloud.cfg").write_text("datasource_list: [NoCloud]\n")
    run(guest, osp(**({"CLOUD_INIT": prop} if prop else {})))
    seed = image / SEED
    if not written:
        assert not (image / "var/lib/cloud").exists()
        return
    assert sorted(os.listdir(seed)) == ["meta-data", "network-config", "user-data"]
    meta = (seed / "meta-data").read_text()
    assert meta == f'instance-id: "{UUID}"\nlocal-hostname: "vm1.example.org"\n'
    assert (seed / "user-data").read_bytes() == USERDATA
    assert owner_mode(seed / "user-data") == (0, 0, 0o600)
    assert owner_mode(seed / "meta-data") == (0, 0, 0o644)
    assert f'macaddress: "{MAC}"' in (seed / "network-config").read_text()


def test_cloud_init_without_user_data(guest: Guest, image: Path) -> None:
    params = osp(CLOUD_INIT="yes")
    del params["cloud_userdata"]
    run(guest, params)
    assert (image / SEED / "user-data").read_bytes() == b"#cloud-config\n{}\n"


# --- exclusions -----------------------------------------------------------------------------------


def effects(image: Path) -> dict[str, bool]:
    """Which task's effect shows in the image (cloud-init is in the image for this)."""
    shadow = shadow_entries(image)
    return {
        "ASSIGNHOSTNAME": (image / "etc/hostname").read_text() == "vm1.example.org\n",
        "CHANGEPASSWORD": shadow["root"][1].startswith("$6$")
        and (image / "home/user/.ssh/authorized_keys").exists(),
        "DELETESSHKEYS": not (image / "etc/ssh/ssh_host_rsa_key").exists(),
        "CHANGEMACHINEID": (image / "etc/machine-id").read_bytes() == b"",
        "ENFORCEPERSONALITY": (image / "etc/snf-injected").exists(),
        "CONFIGURENETWORK": "eth0" in (image / "etc/network/interfaces").read_text(),
        "INITIALIZEDATASOURCE": (image / SEED / "meta-data").exists(),
    }


def test_every_mounted_task_has_an_effect_checked_here() -> None:
    assert [name for name, _ in tasks.MOUNTED_TASKS] == list(TASKS[2:])


@pytest.mark.parametrize(
    ("task", "value"),
    [(name, "yes") for name, _ in tasks.MOUNTED_TASKS]
    + [("ASSIGNHOSTNAME", "True"), ("DELETESSHKEYS", " 1 "), ("CONFIGURENETWORK", "on")],
)
def test_excluding_a_task_skips_exactly_it(
    guest: Guest, image: Path, task: str, value: str
) -> None:
    said = run(guest, (osp(CLOUD_INIT="yes", **{f"EXCLUDE_TASK_{task.lower()}": value})))
    assert effects(image) == {name: name != task for name, _ in tasks.MOUNTED_TASKS}
    assert f"task {task} excluded by the image's properties" in said


@pytest.mark.parametrize(
    "props",
    [
        {"EXCLUDE_TASK_HOSTNAME": "yes"},  # not a task name: nothing excluded
        {"EXCLUDE_TASK_ASSIGNHOSTNAME": "no"},
        {"EXCLUDE_TASK_CHANGEPASSWORD": ""},
        {"EXCLUDE_TASK_FIXPARTITIONTABLE": "yes", "EXCLUDE_TASK_FILESYSTEMRESIZE": "yes"},
    ],
)
def test_nothing_else_excludes_a_mounted_task(
    guest: Guest, image: Path, props: dict[str, str]
) -> None:
    said = run(guest, (osp(CLOUD_INIT="yes", **props)))
    assert all(effects(image).values()), effects(image)
    assert not any("excluded" in m for m in said)


def test_excluding_all_tasks_changes_nothing(guest: Guest, image: Path) -> None:
    before = snapshot(image)
    said = run(guest, osp(CLOUD_INIT="yes", EXCLUDE_ALL_TASKS="yes"))
    assert snapshot(image) == before
    assert said == [f"task {name} excluded by the image's properties" for name in TASKS[2:]]
