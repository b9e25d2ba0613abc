import base64
import json
from typing import Any

import pytest

from snf.common.errors import InvalidInput
from snf.image.params import (
    FORMATS,
    MAX_PERSONALITY_BYTES,
    PARAMETERS,
    TASKS,
    ImageParams,
    PersonalityFile,
    Source,
    params_from_env,
    parse_params,
)

PASSWORD = "S3cr3t-p@ss:word"
HASH = "$6$rounds=5000$saltsalt$" + "x" * 86


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def osp(**extra: str) -> dict[str, str]:
    return {"img_id": "map:debian-12", "img_format": "diskdump", **extra}


def personality(*items: dict[str, Any]) -> str:
    return json.dumps(list(items))


def pfile(path: str = "/root/.ssh/x", data: bytes = b"hi", **extra: Any) -> dict[str, Any]:
    return {"path": path, "contents": b64(data), **extra}


def refused(params: dict[str, str], *words: str) -> str:
    with pytest.raises(InvalidInput) as info:
        parse_params(params)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message
    return message


# --- img_id --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("img_id", "source"),
    [
        ("map:debian-12", Source("map", "debian-12")),
        ("map:a.b+c_d-1", Source("map", "a.b+c_d-1")),
        (
            "pithos://3a8d-uuid/images/debian/12.diskdump",
            Source(
                "pithos",
                "pithos://3a8d-uuid/images/debian/12.diskdump",
                "3a8d-uuid",
                "images",
                "debian/12.diskdump",
            ),
        ),
        (
            "pithos://user%40example.com/my%20images/a%20b.img",
            Source(
                "pithos",
                "pithos://user%40example.com/my%20images/a%20b.img",
                "user@example.com",
                "my images",
                "a b.img",
            ),
        ),
        (
            "/var/lib/snf-image/debian.diskdump",
            Source("local", "/var/lib/snf-image/debian.diskdump"),
        ),
        ("//srv//images/./x.img", Source("local", "/srv/images/x.img")),
        (
            "http://images.example.org/debian.img",
            Source("url", "http://images.example.org/debian.img"),
        ),
        ("https://[2001:db8::1]:8443/a?b=c", Source("url", "https://[2001:db8::1]:8443/a?b=c")),
    ],
)
def test_img_id_forms(img_id: str, source: Source) -> None:
    assert parse_params(osp(img_id=img_id)).source == source


@pytest.mark.parametrize(
    "img_id",
    [
        "debian.img",  # a bare name
        "local://debian.img",
        "pithosmap://abc/1024",
        "ftp://example.org/x.img",
        "file:///etc/passwd",
        "PITHOS:/a/b/c",
        "pithos:/a/b/c",
        "pithos://acct/container",  # no path
        "pithos://acct/container/",  # empty path
        "pithos:///container/path",  # empty account
        "pithos://acct//path",  # empty container
        "pithos://ac%2Fct/c/p",  # '/' in the account once decoded
        "pithos://acct/c%2Fd/p",  # '/' in the container once decoded
        "pithos://acct/c/p%00",
        "pithos://acct/c/" + "p" * 1024,  # longer than 1024
        "map:",
        "map:../etc",
        "map:-leading",
        "map:a/b",
        "map:a b",
        "/var/lib/../../etc/shadow",
        "/",
        "/a\0b",
        "/a\nb",
        "/" + "a" * 4096,
        "http://",
        "http:///path-only",
        "https://host:99999/x",
        "https://host/a b",
        "http://host/a\r\nX-Injected: 1",
        "",
    ],
)
def test_bad_img_id(img_id: str) -> None:
    if img_id == "":
        refused(osp(img_id=img_id), "img_id", "missing")
    else:
        refused(osp(img_id=img_id), "img_id")


def test_url_errors_do_not_repeat_the_url() -> None:
    message = refused(osp(img_id="https://user:hunter2@host:99999/x"), "img_id", "URL")
    assert "hunter2" not in message
    message = refused(osp(img_id="https://user:hunter2@/x"), "img_id", "URL")
    assert "hunter2" not in message


def test_unknown_img_id_message() -> None:
    message = refused(osp(img_id="debian.img"))
    assert message == (
        "img_id 'debian.img': expected map:<name>, pithos://<account>/<container>/<path>, "
        "an absolute path or an http(s) URL"
    )


@pytest.mark.parametrize("missing", ["img_id", "img_format"])
def test_missing_required(missing: str) -> None:
    params = osp()
    del params[missing]
    refused(params, missing, "missing")


# --- img_format, passwords -----------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_formats(fmt: str) -> None:
    assert parse_params(osp(img_format=fmt)).format == fmt


@pytest.mark.parametrize("fmt", ["raw", "DISKDUMP", "diskdump ", "vmdk"])
def test_bad_format(fmt: str) -> None:
    refused(osp(img_format=fmt), "img_format", "diskdump, extdump, ntfsdump, qcow2")


def test_passwords() -> None:
    params = parse_params(osp(img_passwd=PASSWORD))
    assert (params.passwd, params.passwd_hash) == (PASSWORD, None)
    assert PASSWORD not in repr(params)
    params = parse_params(osp(img_passwd_hash=HASH))
    assert (params.passwd, params.passwd_hash) == (None, HASH)
    assert HASH not in repr(params)
    assert parse_params(osp(img_passwd="x" * 256)).passwd == "x" * 256


@pytest.mark.parametrize(
    "params",
    [
        osp(img_passwd=PASSWORD, img_passwd_hash=HASH),
        osp(img_passwd=""),
        osp(img_passwd=PASSWORD * 20),
        osp(img_passwd=PASSWORD + "\n"),
        osp(img_passwd=PASSWORD + "\0"),
        osp(img_passwd=PASSWORD + "\r"),
        osp(img_passwd_hash=""),
        osp(img_passwd_hash=HASH + ":0:99999"),
        osp(img_passwd_hash=HASH + "\nroot::0"),
        osp(img_passwd_hash=HASH + " x"),
        osp(img_passwd_hash="$6$" + "a" * 600),
        # other rules fail with the password present: it must not leak either
        osp(img_passwd=PASSWORD, img_format="raw"),
        osp(img_passwd=PASSWORD, img_id="debian.img"),
        osp(img_passwd=PASSWORD, img_properties="{" + PASSWORD),
        osp(img_passwd=PASSWORD, img_personality=personality(pfile(data=b"x" * 20000))),
    ],
)
def test_no_message_contains_the_password(params: dict[str, str]) -> None:
    message = refused(params)
    assert PASSWORD not in message
    assert HASH not in message
    assert "saltsalt" not in message


def test_both_passwords_message() -> None:
    refused(osp(img_passwd=PASSWORD, img_passwd_hash=HASH), "img_passwd", "img_passwd_hash")


# --- img_properties ------------------------------------------------------------------------


def test_properties_are_upper_cased_strings_and_read_only() -> None:
    props = {"osfamily": "Linux", "Root_Partition": 2, "cloud_init": True, "size": 1.5}
    params = parse_params(osp(img_properties=json.dumps(props)))
    assert dict(params.properties) == {
        "OSFAMILY": "Linux",
        "ROOT_PARTITION": "2",
        "CLOUD_INIT": "true",
        "SIZE": "1.5",
    }
    assert params.os_family == "linux"
    assert params.root_partition == 2
    assert params.cloud_init is True
    with pytest.raises(TypeError):
        params.properties["X"] = "y"  # type: ignore[index]


def test_property_defaults() -> None:
    params = parse_params(osp())
    assert dict(params.properties) == {}
    assert params.users == ("root",)
    assert params.os_family == "linux"
    assert params.root_partition is None
    assert params.cloud_init is None
    assert not any(params.excluded(task) for task in TASKS)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("{", ("img_properties is not valid JSON",)),
        ("", ("img_properties is not valid JSON",)),
        ('{"a": NaN}', ("img_properties", "NaN")),
        ("[]", ("img_properties", "object")),
        ('"x"', ("img_properties", "object")),
        ('{"a": {"b": "c"}}', ("img_properties", "'A'")),
        ('{"a": ["b"]}', ("img_properties", "'A'")),
        ('{"a": null}', ("img_properties", "'A'")),
        ('{"a": "b\\u0000"}', ("img_properties", "'A'")),
        ('{"osfamily": "a", "OSFAMILY": "b"}', ("img_properties", "OSFAMILY", "twice")),
        ('{"a": "1", "a": "2"}', ("img_properties", "duplicate")),
        ('{"": "x"}', ("img_properties",)),
        ('{"a\\nb": "x"}', ("img_properties",)),
        ('{"a": "' + "x" * 70000 + '"}', ("img_properties", "64 KiB")),
        ("[" * 100000 + "]" * 100000, ("img_properties", "64 KiB")),
        ("[" * 30000 + "]" * 30000, ("img_properties",)),
        ('{"users": "root Admin"}', ("USERS", "'Admin'")),
        ('{"users": "root ../x"}', ("USERS",)),
        ('{"users": "' + "a" * 33 + '"}', ("USERS",)),
        ('{"root_partition": "0"}', ("ROOT_PARTITION",)),
        ('{"root_partition": "129"}', ("ROOT_PARTITION",)),
        ('{"root_partition": "x1"}', ("ROOT_PARTITION",)),
        ('{"root_partition": -1}', ("ROOT_PARTITION",)),
        ('{"cloud_init": "maybe"}', ("CLOUD_INIT",)),
    ],
)
def test_bad_properties(text: str, words: tuple[str, ...]) -> None:
    refused(osp(img_properties=text), *words)


@pytest.mark.parametrize(
    ("users", "expected"),
    [
        ("", ("root",)),
        ("  ", ("root",)),
        ("root", ("root",)),
        ("root  user\tadmin$", ("root", "user", "admin$")),
        ("_svc www-data a.b", ("_svc", "www-data", "a.b")),
        ("a" * 32, ("a" * 32,)),
    ],
)
def test_users(users: str, expected: tuple[str, ...]) -> None:
    assert parse_params(osp(img_properties=json.dumps({"USERS": users}))).users == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("yes", True), ("True", True), ("1", True), ("ON", True), ("no", False), ("false", False),
     ("0", False), ("off", False), ("", None)],
)  # fmt: skip
def test_cloud_init(value: str, expected: bool | None) -> None:
    params = parse_params(osp(img_properties=json.dumps({"CLOUD_INIT": value})))
    assert params.cloud_init is expected


@pytest.mark.parametrize(
    ("props", "excluded"),
    [
        ({"EXCLUDE_ALL_TASKS": "yes"}, set(TASKS)),
        ({"exclude_all_tasks": "On"}, set(TASKS)),
        ({"EXCLUDE_ALL_TASKS": "no"}, set()),
        ({"EXCLUDE_TASK_DELETESSHKEYS": "TRUE"}, {"DELETESSHKEYS"}),
        ({"exclude_task_changepassword": "1", "EXCLUDE_TASK_ASSIGNHOSTNAME": "0"},
         {"CHANGEPASSWORD"}),
        ({"EXCLUDE_TASK_FIXPARTITIONTABLE": True}, {"FIXPARTITIONTABLE"}),
        ({"EXCLUDE_TASK_CONFIGURENETWORK": ""}, set()),
    ],
)  # fmt: skip
def test_excluded(props: dict[str, Any], excluded: set[str]) -> None:
    params = parse_params(osp(img_properties=json.dumps(props)))
    assert {task for task in TASKS if params.excluded(task)} == excluded
    assert params.excluded("deletesshkeys") == ("DELETESSHKEYS" in excluded)


def test_excluded_refuses_an_unknown_task() -> None:
    with pytest.raises(ValueError):
        parse_params(osp()).excluded("FORMATDISK")


def test_image_params_built_directly_are_checked_and_normalized() -> None:
    params = ImageParams(Source("map", "x"), "diskdump", properties={"osfamily": "Windows"})
    assert dict(params.properties) == {"OSFAMILY": "Windows"}
    assert params.os_family == "windows"
    with pytest.raises(InvalidInput, match="ROOT_PARTITION"):
        ImageParams(Source("map", "x"), "diskdump", properties={"root_partition": "x"})


# --- img_personality -----------------------------------------------------------------------


def test_personality() -> None:
    text = personality(
        pfile("/root/.ssh/authorized_keys", b"ssh-ed25519 AAAA", owner="root", mode=384),
        pfile("/etc//motd", b"", owner="1000", group="adm", mode="420"),
        pfile("/home/user/x", b"\0\xff" * 10, owner=1000, group=100, mode=0),
        pfile("/srv/big", b"y" * MAX_PERSONALITY_BYTES, mode=0o7777),
        pfile("/srv/defaults"),
    )
    files = parse_params(osp(img_personality=text)).personality
    assert files == (
        PersonalityFile("/root/.ssh/authorized_keys", b"ssh-ed25519 AAAA", "root", "root", 0o600),
        PersonalityFile("/etc/motd", b"", "1000", "adm", 0o644),
        PersonalityFile("/home/user/x", b"\0\xff" * 10, "1000", "100", 0),
        PersonalityFile("/srv/big", b"y" * MAX_PERSONALITY_BYTES, "root", "root", 0o7777),
        PersonalityFile("/srv/defaults", b"hi", "root", "root", 0o440),
    )
    assert parse_params(osp(img_personality="[]")).personality == ()


@pytest.mark.parametrize(
    ("items", "words"),
    [
        ([pfile(f"/f{n}") for n in range(6)], ("img_personality", "6 files", "5")),
        ([pfile("/srv/big", b"y" * (11 * 1024))], ("'/srv/big'", "10240 bytes")),
        ([pfile("/srv/big", b"y" * (MAX_PERSONALITY_BYTES + 1))], ("'/srv/big'", "10240")),
        ([pfile("etc/motd")], ("img_personality", "absolute")),
        ([pfile("/etc/../shadow")], ("img_personality", "'..'")),
        ([pfile("/..")], ("img_personality",)),
        ([pfile("/")], ("img_personality", "'/'")),
        ([pfile("/a\0b")], ("img_personality",)),
        ([pfile("/a\nb")], ("img_personality",)),
        ([pfile("/" + "a" * 4096)], ("img_personality",)),
        ([pfile("/a"), pfile("/a")], ("'/a'", "twice")),
        ([pfile("/a"), pfile("//a/.")], ("'/a'", "twice")),
        ([{"path": "/a", "contents": "aGk=\n"}], ("'/a'", "base64")),
        ([{"path": "/a", "contents": "not base64!"}], ("'/a'", "base64")),
        ([{"path": "/a", "contents": "aGk"}], ("'/a'", "base64")),
        ([{"path": "/a", "contents": "aGk=\u00e9"}], ("'/a'", "base64")),
        ([{"path": "/a"}], ("item 0", "contents")),
        ([{"contents": "aGk="}], ("item 0", "path")),
        ([{"path": "/a", "contents": 5}], ("item 0", "strings")),
        ([{"path": ["/a"], "contents": "aGk="}], ("item 0", "strings")),
        ([pfile("/a", colour="red")], ("item 0", "colour")),
        (["/a"], ("item 0",)),
        ([pfile("/a", mode=0o10000)], ("mode", "'/a'")),
        ([pfile("/a", mode=-1)], ("mode", "'/a'")),
        ([pfile("/a", mode="0o644")], ("mode",)),
        ([pfile("/a", mode="-1")], ("mode",)),
        ([pfile("/a", mode=4.5)], ("mode",)),
        ([pfile("/a", mode=True)], ("mode",)),
        ([pfile("/a", mode=None)], ("mode",)),
        ([pfile("/a", owner="ro ot")], ("owner", "'/a'")),
        ([pfile("/a", owner="")], ("owner",)),
        ([pfile("/a", owner="Root")], ("owner",)),
        ([pfile("/a", owner=-1)], ("owner",)),
        ([pfile("/a", owner=True)], ("owner",)),
        ([pfile("/a", owner=2**32)], ("owner",)),
        ([pfile("/a", group="../x")], ("group",)),
        ([pfile("/a", group=None)], ("group",)),
    ],
)
def test_bad_personality(items: list[Any], words: tuple[str, ...]) -> None:
    refused(osp(img_personality=json.dumps(items)), *words)


@pytest.mark.parametrize("text", ["{", '{"path": "/a"}', '"x"', "null", "[1, 2", "x" * 300000])
def test_personality_not_a_json_list(text: str) -> None:
    refused(osp(img_personality=text), "img_personality")


def test_bad_json_names_the_parameter() -> None:
    message = refused(osp(img_personality="[{]"))
    assert message.startswith("img_personality is not valid JSON: ")


# --- auth_keys, cloud_userdata -------------------------------------------------------------


def test_auth_keys_and_userdata() -> None:
    keys = "ssh-ed25519 AAAAC3Nz user@host\nssh-rsa AAAAB3 other\n"
    userdata = b"#cloud-config\nusers: []\n"
    params = parse_params(osp(auth_keys=keys, cloud_userdata=b64(userdata)))
    assert (params.auth_keys, params.cloud_userdata) == (keys, userdata)
    assert parse_params(osp(cloud_userdata=b64(b"x" * 64 * 1024))).cloud_userdata == b"x" * 65536
    params = parse_params(osp())
    assert (params.auth_keys, params.cloud_userdata) == (None, None)


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({"auth_keys": "x" * (16 * 1024 + 1)}, ("auth_keys", "16 KiB")),
        ({"auth_keys": "ssh-rsa A\0"}, ("auth_keys", "NUL")),
        ({"cloud_userdata": "#cloud-config"}, ("cloud_userdata", "base64")),
        ({"cloud_userdata": "aGk=\n"}, ("cloud_userdata", "base64")),
        ({"cloud_userdata": b64(b"x" * (64 * 1024 + 1))}, ("cloud_userdata", "65536")),
        ({"cloud_userdata": "A" * 200000}, ("cloud_userdata", "65536")),
    ],
)
def test_bad_auth_keys_and_userdata(extra: dict[str, str], words: tuple[str, ...]) -> None:
    refused(osp(**extra), *words)


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        # lone surrogates: what os.environ makes of bytes that are not UTF-8, or JSON escapes
        ({"img_passwd": "Zq9\udcff"}, ("img_passwd", "UTF-8")),
        ({"auth_keys": "ssh-rsa \udcff"}, ("auth_keys", "UTF-8")),
        ({"img_properties": '{"A": "\udcff"}'}, ("img_properties", "UTF-8")),
        ({"img_properties": '{"A": "\\ud800"}'}, ("img_properties", "'A'", "UTF-8")),
        ({"img_personality": personality(pfile("/\ud800"))}, ("img_personality", "UTF-8")),
    ],
)
def test_text_must_be_utf8(extra: dict[str, str], words: tuple[str, ...]) -> None:
    message = refused(osp(**extra), *words)
    assert "Zq9" not in message


@pytest.mark.parametrize("name", [name for name, _ in PARAMETERS])
def test_non_string_values_are_refused(name: str) -> None:
    refused({**osp(), name: 5}, name)  # type: ignore[dict-item]


# --- the Ganeti environment ----------------------------------------------------------------


def test_params_from_env() -> None:
    env = {
        "OS_API_VERSION": "20",
        "OS_NAME": "snf-image",
        "OS_VARIANT": "default",
        "OSP_IMG_ID": "pithos://acct/images/debian.diskdump",
        "OSP_IMG_FORMAT": "diskdump",
        "OSP_IMG_PASSWD": PASSWORD,
        "OSP_IMG_PROPERTIES": '{"OSFAMILY": "linux", "USERS": "root user"}',
        "OSP_IMG_PERSONALITY": personality(pfile("/etc/motd", b"hello", mode=420)),
        "OSP_AUTH_KEYS": "ssh-ed25519 AAAA x",
        "OSP_CLOUD_USERDATA": b64(b"#!/bin/sh\n"),
        "OSP_CONFIG_URL": "https://cyclades.example.org/config/abc",  # ignored
        "OSP_INST_PROPERTIES": "{}",  # ignored
        "IMG_FORMAT": "qcow2",  # not an OS parameter
    }
    params = params_from_env(env)
    assert params.source.kind == "pithos"
    assert params.source.container == "images"
    assert params.format == "diskdump"
    assert params.passwd == PASSWORD
    assert params.users == ("root", "user")
    assert params.personality[0].mode == 0o644
    assert params.auth_keys == "ssh-ed25519 AAAA x"
    assert params.cloud_userdata == b"#!/bin/sh\n"


def test_params_from_env_needs_the_image() -> None:
    with pytest.raises(InvalidInput, match="img_id is missing"):
        params_from_env({"OS_NAME": "snf-image", "IMG_ID": "map:x", "OSP_IMG_FORMAT": "diskdump"})


def test_parameters_list() -> None:
    names = [name for name, _ in PARAMETERS]
    assert names == [
        "img_id",
        "img_format",
        "img_passwd",
        "img_passwd_hash",
        "img_properties",
        "img_personality",
        "auth_keys",
        "cloud_userdata",
    ]
    assert all(desc and "\n" not in desc for _, desc in PARAMETERS)
