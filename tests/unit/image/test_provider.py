"""snf.image.provider: the OS scripts Ganeti runs.  ``verify`` accepts good parameters and
refuses bad ones in one line; ``main()`` (run as Ganeti runs it, a process named after the
script) prints one ``snf-image: <action> failed: ...`` line and exits 1; create (images
deployed unchanged), export, import and rename end to end; and the provider folder as
Ganeti reads it."""

from __future__ import annotations

import base64
import json
import os
import stat
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from snf.common.config import Config, ImageConfig, StoreConfig
from snf.common.errors import InvalidInput, SnfError
from snf.image import ganeti_env, provider
from snf.image.params import PARAMETERS

REPO = Path(__file__).resolve().parents[3]
FOLDER = REPO / "os-providers/snf-image/provider"
SCRIPTS = ("create", "export", "import", "rename", "verify")
MiB = 1 << 20
SECRET = "hunter2-not-to-be-repeated"
BLOB = struct.pack(">I", 11) + b"ssh-ed25519" + struct.pack(">I", 32) + bytes(range(32))
KEY = "ssh-ed25519 " + base64.b64encode(BLOB).decode() + " alice@laptop"
HASH = "$6$rounds=5000$saltsalt$" + "x" * 86
CORE = {"OS_API_VERSION": "20", "OS_NAME": "snf-image", "OS_VARIANT": "default"}
GOOD = {
    **CORE,
    "OSP_IMG_ID": "map:debian-12",
    "OSP_IMG_FORMAT": "diskdump",
    "OSP_IMG_PASSWD": SECRET,
    "OSP_IMG_PROPERTIES": json.dumps({"OSFAMILY": "linux", "USERS": "root debian"}),
    "OSP_IMG_PERSONALITY": json.dumps([{"path": "/etc/motd", "contents": "aGkK"}]),
    "OSP_AUTH_KEYS": KEY + "\n",
    "OSP_CLOUD_USERDATA": base64.b64encode(b"#cloud-config\n").decode(),
}


def config(tmp_path: Path) -> Config:
    """A configuration that reads and writes nothing outside the test's folder."""
    return Config(
        store=StoreConfig(backend="dir", path=tmp_path / "store"),
        image=ImageConfig(mode="direct", work_dir=tmp_path, service_token_file=tmp_path / "t"),
    )


# --- verify ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"OSP_IMG_FORMAT": "extdump"},
        {"OSP_IMG_FORMAT": "ntfsdump", "OSP_IMG_PROPERTIES": '{"OSFAMILY": "windows"}'},
        {"OSP_IMG_FORMAT": "qcow2", "OSP_IMG_ID": "https://images.example.org/d12.qcow2"},
        {"OSP_IMG_ID": "pithos://8c1f/images/debian 12.img"},
        {"OSP_IMG_ID": "/srv/images/debian.raw"},
        {"OSP_IMG_PASSWD": None, "OSP_IMG_PASSWD_HASH": HASH},
        {"OSP_IMG_PASSWD": None, "OSP_AUTH_KEYS": None, "OSP_IMG_PERSONALITY": None},
        {"OSP_IMG_PROPERTIES": '{"EXCLUDE_ALL_TASKS": true, "ROOT_PARTITION": 2}'},
    ],
)
def test_verify_accepts_good_parameters(tmp_path: Path, changes: dict[str, str | None]) -> None:
    env = {k: v for k, v in {**GOOD, **changes}.items() if v is not None}
    provider.run("verify", env, config(tmp_path))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"OSP_IMG_ID": None}, "img_id is missing"),
        ({"OSP_IMG_FORMAT": None}, "img_format is missing"),
        ({"OSP_IMG_FORMAT": "vmdk"}, "img_format 'vmdk': expected one of"),
        ({"OSP_IMG_ID": "ftp://example.org/x.img"}, "img_id 'ftp://example.org/x.img'"),
        ({"OSP_IMG_ID": "map:../etc"}, "img_id 'map:../etc'"),
        ({"OSP_IMG_PASSWD_HASH": HASH}, "give at most one of them"),
        ({"OSP_IMG_PASSWD": None, "OSP_IMG_PASSWD_HASH": "$1$salt$" + "x" * 22}, "strong scheme"),
        ({"OSP_AUTH_KEYS": "ssh-rsa AAAA"}, "auth_keys line 1"),
        ({"OSP_AUTH_KEYS": f'command="/bin/sh" {KEY}'}, "key options"),
        ({"OSP_IMG_PROPERTIES": "{bad"}, "img_properties is not valid JSON"),
        ({"OSP_IMG_PROPERTIES": '{"ROOT_PARTITION": "0"}'}, "ROOT_PARTITION must be"),
        ({"OSP_IMG_PROPERTIES": '{"CLOUD_INIT": "maybe"}'}, "CLOUD_INIT must be yes or no"),
        ({"OSP_IMG_PROPERTIES": '{"USERS": "root Bad!"}'}, "USERS: 'Bad!' is not a valid"),
        ({"OSP_IMG_PERSONALITY": '[{"path": "etc/x", "contents": ""}]'}, "absolute path"),
        ({"OSP_CLOUD_USERDATA": "not base64!"}, "cloud_userdata is not valid base64"),
    ],
)
def test_verify_refuses_bad_parameters_in_one_line(
    tmp_path: Path, changes: dict[str, str | None], message: str
) -> None:
    env = {k: v for k, v in {**GOOD, **changes}.items() if v is not None}
    with pytest.raises(InvalidInput) as caught:
        provider.run("verify", env, config(tmp_path))
    text = str(caught.value)
    assert message in text
    assert "\n" not in text and SECRET not in text and HASH not in text


@pytest.mark.parametrize("action", ["frobnicate", "os-script", "Create", ""])
def test_unknown_action(tmp_path: Path, action: str) -> None:
    with pytest.raises(InvalidInput, match=f"unknown OS action {action!r}"):
        provider.run(action, GOOD, config(tmp_path))


# --- main(), as Ganeti runs the scripts -----------------------------------------------------------


def script_env(tmp_path: Path, env: dict[str, str]) -> dict[str, str]:
    """Ganeti's reset environment: the script's variables only (and an empty config)."""
    conf = tmp_path / "conf"
    conf.mkdir(exist_ok=True)
    return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "SNF_CONFIG_DIR": str(conf), **env}


def main_as(
    action: str, env: dict[str, str], prelude: str = "", **kwargs: Any
) -> subprocess.CompletedProcess[bytes]:
    """``main()`` in a new process whose name (argv[0]) is ``action``, as Ganeti runs a script;
    ``prelude`` runs first (to plant a bug)."""
    code = "\n".join(
        [f"import sys; sys.argv = [{action!r}]", prelude, "from snf.image.provider import main",
         "main()"]
    )  # fmt: skip
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, cwd="/", **kwargs
    )


def test_main_fails_in_one_line_without_the_image(tmp_path: Path) -> None:
    env = {k: v for k, v in GOOD.items() if k != "OSP_IMG_ID"}
    done = main_as("verify", script_env(tmp_path, env))
    assert (done.returncode, done.stdout) == (1, b"")
    assert done.stderr == b"snf-image: verify failed: img_id is missing\n"


def test_main_succeeds_silently(tmp_path: Path) -> None:
    done = main_as("verify", script_env(tmp_path, GOOD))
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")


def test_main_never_repeats_the_password(tmp_path: Path) -> None:
    done = main_as("verify", script_env(tmp_path, {**GOOD, "OSP_IMG_PASSWD_HASH": HASH}))
    assert done.returncode == 1
    assert done.stderr.count(b"\n") == 1
    assert SECRET.encode() not in done.stderr and HASH.encode() not in done.stderr


def test_main_with_an_unknown_script_name(tmp_path: Path) -> None:
    done = main_as("frobnicate", script_env(tmp_path, GOOD))
    assert done.returncode == 1
    assert done.stderr == b"snf-image: frobnicate failed: unknown OS action 'frobnicate'\n"


def test_main_with_a_bad_configuration(tmp_path: Path) -> None:
    env = script_env(tmp_path, GOOD)
    Path(env["SNF_CONFIG_DIR"], "snf.toml").write_text('[image]\nmode = "sideways"\n')
    done = main_as("verify", env)
    assert done.returncode == 1
    (line,) = done.stderr.decode().splitlines()
    assert line.startswith("snf-image: verify failed: ") and "mode" in line


def test_main_turns_a_bug_into_one_line(tmp_path: Path) -> None:
    prelude = "import snf.image.provider as p; p.ACTIONS['verify'] = lambda env, config: 1 / 0"
    done = main_as("verify", script_env(tmp_path, GOOD), prelude)
    assert done.returncode == 1
    assert done.stderr == (
        b"snf-image: verify failed: internal error: ZeroDivisionError: division by zero\n"
    )


@pytest.mark.parametrize(("env", "rc"), [(GOOD, 0), (CORE, 1)], ids=["good", "no-parameters"])
def test_the_installed_script_dispatches_on_its_name(
    tmp_path: Path, env: dict[str, str], rc: int
) -> None:
    done = subprocess.run(
        [sys.executable, str(FOLDER / "verify")],
        env=script_env(tmp_path, env),
        capture_output=True,
        cwd="/",
    )
    assert done.returncode == rc
    assert done.stderr == (b"" if rc == 0 else b"snf-image: verify failed: img_id is missing\n")


# --- create, export, import, rename ---------------------------------------------------------------


def instance_env(disk: Path, **more: str) -> dict[str, str]:
    return {
        **CORE,
        "INSTANCE_NAME": "vm1.example.org",
        "DISK_COUNT": "1",
        "DISK_0_PATH": str(disk),
        "NIC_COUNT": "0",
        **more,
    }


def test_create_deploys_an_image_unchanged_when_every_task_is_excluded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image, disk = tmp_path / "image.raw", tmp_path / "disk"
    data = os.urandom(3 * MiB)
    image.write_bytes(data)
    disk.write_bytes(bytes(8 * MiB))
    env = {
        **instance_env(disk),
        "OSP_IMG_ID": str(image),
        "OSP_IMG_FORMAT": "diskdump",
        "OSP_IMG_PROPERTIES": '{"EXCLUDE_ALL_TASKS": "yes", "OSFAMILY": "windows"}',
    }
    provider.run("create", env, config(tmp_path))
    assert disk.read_bytes() == data + bytes(5 * MiB)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == f"snf-image: deploying local {image} onto {disk} for vm1.example.org"
    assert (
        "snf-image: every customization task is excluded: the image is deployed as it is" in lines
    )
    assert lines[-1].startswith("snf-image: vm1.example.org ready in ")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"DISK_COUNT": "0"}, "create needs the instance's first disk"),
        ({"OSP_AUTH_KEYS": "ssh-ed25519 !!!"}, "auth_keys line 1"),
        ({"OSP_IMG_FORMAT": "extdump", "OSP_IMG_ID": "/nonexistent.img"}, "cannot open the image"),
        ({"NIC_COUNT": "1"}, "NIC_0_MAC is missing"),
    ],
)
def test_create_refusals_leave_the_disk_alone(
    tmp_path: Path, changes: dict[str, str], message: str
) -> None:
    disk = tmp_path / "disk"
    disk.write_bytes(b"\xaa" * MiB)
    env = {**instance_env(disk), "OSP_IMG_ID": "/nonexistent.img", "OSP_IMG_FORMAT": "diskdump"}
    with pytest.raises(SnfError, match=message):
        provider.run("create", {**env, **changes}, config(tmp_path))
    assert disk.read_bytes() == b"\xaa" * MiB


def test_export_streams_the_disk_and_tells_its_size(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    data = os.urandom(2 * MiB + 512)
    disk.write_bytes(data)
    size_r, size_w = os.pipe()
    env = instance_env(disk, EXPORT_DEVICE=str(disk), EXPORT_INDEX="0", EXP_SIZE_FD=str(size_w))
    try:
        done = main_as("export", script_env(tmp_path, env), pass_fds=(size_w,))
    finally:
        os.close(size_w)
    with os.fdopen(size_r, "rb") as f:
        assert f.read() == f"{len(data)}\n".encode()
    assert (done.returncode, done.stderr) == (0, b"")
    assert done.stdout == data


def test_import_writes_the_stream_onto_the_disk(tmp_path: Path) -> None:
    disk, stream = tmp_path / "disk", tmp_path / "stream"
    disk.write_bytes(bytes(4 * MiB))
    data = os.urandom(3 * MiB)
    stream.write_bytes(data)
    env = instance_env(disk, IMPORT_DEVICE=str(disk), IMPORT_INDEX="0")
    with open(stream, "rb") as stdin:
        done = main_as("import", script_env(tmp_path, env), stdin=stdin)
    assert done.returncode == 0, done.stderr
    assert done.stderr == f"snf-image: imported 3 MiB onto {disk}\n".encode()
    assert disk.read_bytes() == data + bytes(MiB)


def test_import_larger_than_the_disk_fails_in_one_line(tmp_path: Path) -> None:
    disk, stream = tmp_path / "disk", tmp_path / "stream"
    disk.write_bytes(bytes(MiB))
    stream.write_bytes(os.urandom(MiB + 1))
    env = instance_env(disk, IMPORT_DEVICE=str(disk), IMPORT_INDEX="0")
    with open(stream, "rb") as stdin:
        done = main_as("import", script_env(tmp_path, env), stdin=stdin)
    assert done.returncode == 1
    assert (
        done.stderr
        == (
            f"snf-image: import failed: the imported disk is larger than the disk ({MiB} bytes)\n"
        ).encode()
    )


@pytest.mark.parametrize(("action", "variable"), [("export", "EXPORT"), ("import", "IMPORT")])
def test_export_and_import_need_their_device(tmp_path: Path, action: str, variable: str) -> None:
    with pytest.raises(InvalidInput, match=f"{action} needs {variable}_DEVICE"):
        provider.run(action, instance_env(tmp_path / "disk"), config(tmp_path))


def test_rename_only_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    disk = tmp_path / "disk"
    disk.write_bytes(b"\x01" * 4096)
    env = instance_env(disk, OLD_INSTANCE_NAME="old.example.org")
    provider.run("rename", env, config(tmp_path))
    assert disk.read_bytes() == b"\x01" * 4096
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("snf-image: old.example.org is now vm1.example.org: ")


# --- the provider folder --------------------------------------------------------------------------


def test_the_folder_holds_what_ganeti_reads() -> None:
    names = {p.name for p in FOLDER.iterdir()}
    expected = {*SCRIPTS, "os-script", "ganeti_api_version", "variants.list", "parameters.list"}
    assert names - {"README.md"} == expected


def test_api_version_and_variants() -> None:
    assert (FOLDER / "ganeti_api_version").read_text().splitlines() == ["20"]
    assert 20 in ganeti_env.API_VERSIONS
    assert (FOLDER / "variants.list").read_text().splitlines() == ["default"]


def test_parameters_list_matches_the_code() -> None:
    lines = (FOLDER / "parameters.list").read_text().splitlines()
    assert lines == [f"{name} {description}" for name, description in PARAMETERS]


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_script_is_a_link_to_the_shim(script: str) -> None:
    path = FOLDER / script
    assert path.is_symlink()
    assert os.readlink(path) == "os-script"  # relative: it survives the copy at install
    assert provider.ACTIONS[script].__name__ in (script, "import_")  # what main() runs


def test_the_shim() -> None:
    shim = FOLDER / "os-script"
    assert stat.S_ISREG(shim.lstat().st_mode)
    assert shim.stat().st_mode & 0o111 == 0o111
    text = shim.read_text()
    assert text.startswith("#!/usr/bin/python3\n")
    assert "from snf.image.provider import main\n" in text and text.rstrip().endswith("main()")
