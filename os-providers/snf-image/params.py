"""snf-image's OS parameters: parsed and checked once, before anything is deployed.

Ganeti hands the parameters to the OS scripts as ``OSP_<NAME>`` variables (see
:func:`params_from_env`); :func:`parse_params` takes them by their lower-case names. Every
refusal is an :class:`~snf.common.errors.InvalidInput` whose one-line message names the
parameter; it never repeats a password, a password hash, file contents or user data.

Limits: ``img_id`` 4096 characters (a pithos URL 1024), ``img_passwd`` 256 characters,
``img_properties`` 64 KiB of JSON, ``img_personality`` 5 files of at most 10 KiB each once
decoded, ``auth_keys`` 16 KiB, ``cloud_userdata`` 64 KiB once decoded.
"""

from __future__ import annotations

import base64
import binascii
import json
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from snf.archipelago.store import check_map_name
from snf.common.errors import InvalidInput

FORMATS = ("diskdump", "extdump", "ntfsdump", "qcow2")
MAX_PERSONALITY_FILES = 5
MAX_PERSONALITY_BYTES = 10 * 1024  # per file, decoded
MAX_PROPERTIES_BYTES = 64 * 1024
MAX_AUTH_KEYS_BYTES = 16 * 1024
MAX_USERDATA_BYTES = 64 * 1024  # decoded
MAX_PASSWD_CHARS = 256
MAX_IMG_ID_CHARS = 4096
MAX_PITHOS_CHARS = 1024
MAX_PATH_CHARS = 4096
#: customization tasks, in run order
TASKS = (
    "FIXPARTITIONTABLE", "FILESYSTEMRESIZE", "ASSIGNHOSTNAME", "CHANGEPASSWORD", "DELETESSHKEYS",
    "CHANGEMACHINEID", "ENFORCEPERSONALITY", "CONFIGURENETWORK", "INITIALIZEDATASOURCE",
)  # fmt: skip
#: (name, description) for parameters.list
PARAMETERS: tuple[tuple[str, str], ...] = (
    ("img_id", "the image: map:<name>, pithos://<account>/<container>/<path>, a path or a URL"),
    ("img_format", "the image format: diskdump, extdump, ntfsdump or qcow2"),
    ("img_passwd", "the password to set for the image's users"),
    ("img_passwd_hash", "a crypt(3) hash to set as the users' password instead"),
    ("img_properties", "the image's properties, a JSON object of strings"),
    ("img_personality", "files to inject, a JSON list of {path, contents, owner, group, mode}"),
    ("auth_keys", "SSH public keys to authorize for the image's users"),
    ("cloud_userdata", "cloud-init user data, base64-encoded"),
)

_TRUE = frozenset({"yes", "true", "1", "on"})
_FALSE = frozenset({"no", "false", "0", "off"})
_USER = re.compile(r"[a-z_][a-z0-9_.-]*\$?")
_DECIMAL = re.compile(r"[0-9]{1,10}")
_HASH = re.compile(r"[!-9;-~]+")  # printable ASCII without space or ':' (an /etc/shadow field)
_PERSONALITY_KEYS = frozenset({"path", "contents", "owner", "group", "mode"})
_ID_FORMS = "map:<name>, pithos://<account>/<container>/<path>, an absolute path or an http(s) URL"


@dataclass(frozen=True)
class Source:
    """Where the image comes from; ``account``, ``container`` and ``path`` are pithos only."""

    kind: Literal["map", "pithos", "local", "url"]
    value: str  # map: the map name; pithos: the full URL; local: the path; url: the URL
    account: str | None = None
    container: str | None = None
    path: str | None = None


@dataclass(frozen=True)
class PersonalityFile:
    """A file to inject: absolute normalized path, decoded contents, owner, group, mode."""

    path: str
    contents: bytes
    owner: str = "root"
    group: str = "root"
    mode: int = 0o440


@dataclass(frozen=True)
class ImageParams:
    """The checked parameters; ``properties`` is read-only with upper-case keys.

    repr() leaves out the password and its hash.
    """

    source: Source
    format: str
    passwd: str | None = field(default=None, repr=False)
    passwd_hash: str | None = field(default=None, repr=False)
    properties: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    personality: tuple[PersonalityFile, ...] = ()
    auth_keys: str | None = None
    cloud_userdata: bytes | None = None

    def __post_init__(self) -> None:
        props = MappingProxyType({k.upper(): v for k, v in self.properties.items()})
        object.__setattr__(self, "properties", props)
        # the derived properties are checked here, so a bad value fails at verify time
        self.users, self.root_partition, self.cloud_init  # noqa: B018

    def excluded(self, task: str) -> bool:
        """Whether EXCLUDE_ALL_TASKS or EXCLUDE_TASK_<TASK> is set to a true value."""
        task = task.upper()
        if task not in TASKS:
            raise ValueError(f"unknown customization task {task!r}")
        return any(
            self.properties.get(name, "").strip().lower() in _TRUE
            for name in ("EXCLUDE_ALL_TASKS", f"EXCLUDE_TASK_{task}")
        )

    @property
    def users(self) -> tuple[str, ...]:
        """The USERS property split on whitespace; ("root",) when absent or empty."""
        users = tuple(self.properties.get("USERS", "").split())
        for user in users:
            if len(user) > 32 or not _USER.fullmatch(user):
                raise InvalidInput(f"img_properties USERS: {user!r} is not a valid user name")
        return users or ("root",)

    @property
    def os_family(self) -> str:
        """The OSFAMILY property lower-cased; "linux" when absent or empty."""
        return self.properties.get("OSFAMILY", "").strip().lower() or "linux"

    @property
    def root_partition(self) -> int | None:
        """The ROOT_PARTITION property (1..128), or None when absent."""
        value = self.properties.get("ROOT_PARTITION")
        if value is None:
            return None
        if not _DECIMAL.fullmatch(value) or not 1 <= int(value) <= 128:
            raise InvalidInput(
                f"img_properties ROOT_PARTITION must be a partition number 1..128, not {value!r}"
            )
        return int(value)

    @property
    def cloud_init(self) -> bool | None:
        """The CLOUD_INIT property as a boolean, or None when absent or empty."""
        value = self.properties.get("CLOUD_INIT", "").strip().lower()
        if not value:
            return None
        if value not in _TRUE | _FALSE:
            raise InvalidInput(f"img_properties CLOUD_INIT must be yes or no, not {value!r}")
        return value in _TRUE


def _short(value: str) -> str:
    """repr() of a value, cut to 80 characters for messages."""
    return repr(value) if len(value) <= 80 else repr(value[:77]) + "..."


def _parse_source(value: str) -> Source:
    if len(value) > MAX_IMG_ID_CHARS:
        raise InvalidInput(f"img_id is longer than {MAX_IMG_ID_CHARS} characters")
    if "\0" in value:
        raise InvalidInput(f"img_id {_short(value)} contains a NUL character")
    if value.startswith("map:"):
        try:
            name = check_map_name(value[4:])
        except InvalidInput as e:
            raise InvalidInput(f"img_id {_short(value)}: {e.message}") from None
        return Source("map", name)
    if value.startswith("pithos://"):
        if len(value) > MAX_PITHOS_CHARS:
            raise InvalidInput(f"img_id: a pithos URL is at most {MAX_PITHOS_CHARS} characters")
        parts = value[len("pithos://") :].split("/", 2)
        if len(parts) == 3:
            account, container, path = (unquote(p) for p in parts)
            if account and container and path and "/" not in account + container:
                if "\0" in account + container + path:
                    raise InvalidInput(f"img_id {_short(value)} contains a NUL character")
                return Source("pithos", value, account, container, path)
        raise InvalidInput(
            f"img_id {_short(value)}: expected pithos://<account>/<container>/<path>"
        )
    if value.startswith("/"):
        return Source("local", _check_path("img_id", value))
    if re.match(r"https?://", value, re.IGNORECASE):
        try:
            url = urlsplit(value)
            url.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError as e:  # the URL may hold a password: not repeated here
            raise InvalidInput(f"img_id is not a valid http(s) URL: {e}") from None
        if not url.hostname or re.search(r"[\x00-\x20\x7f]", value):
            raise InvalidInput("img_id is not a valid http(s) URL: no host, or a space in it")
        return Source("url", value)
    raise InvalidInput(f"img_id {_short(value)}: expected {_ID_FORMS}")


def _utf8(param: str, text: str) -> int:
    """The length of ``text`` in UTF-8; lone surrogates (from the environment or JSON) fail."""
    try:
        return len(text.encode())
    except UnicodeEncodeError:
        raise InvalidInput(f"{param} is not valid UTF-8 text") from None


def _check_path(param: str, path: str) -> str:
    """An absolute, normalized path without '..', NUL or newline, other than '/'."""
    if not path.startswith("/") or _utf8(param, path) > MAX_PATH_CHARS:
        raise InvalidInput(f"{param}: {_short(path)} is not an absolute path of <= 4096 chars")
    if re.search(r"[\x00\n]", path) or ".." in path.split("/"):
        raise InvalidInput(f"{param}: {_short(path)} contains '..', a NUL or a newline")
    normal = "/" + posixpath.normpath(path).lstrip("/")
    if normal == "/":
        raise InvalidInput(f"{param}: the path must name a file, not '/'")
    return normal


def _load_json(param: str, text: str, limit: int) -> Any:
    if _utf8(param, text) > limit:
        raise InvalidInput(f"{param} is larger than {limit // 1024} KiB")

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in items]
        if len(set(keys)) != len(keys):
            raise InvalidInput(f"{param} has a duplicate key in one object")
        return dict(items)

    def constant(name: str) -> Any:
        raise InvalidInput(f"{param} is not valid JSON: {name} is not allowed")

    try:
        return json.loads(text, object_pairs_hook=pairs, parse_constant=constant)
    except json.JSONDecodeError as e:
        raise InvalidInput(f"{param} is not valid JSON: {e.msg} at position {e.pos}") from None
    except RecursionError:
        raise InvalidInput(f"{param} is not valid JSON: nested too deeply") from None


def _b64(param: str, text: str, limit: int) -> bytes:
    """Strict base64 (no whitespace), at most ``limit`` bytes once decoded."""
    if len(text) > (limit + 2) // 3 * 4:
        raise InvalidInput(f"{param} is larger than {limit} bytes decoded")
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise InvalidInput(f"{param} is not valid base64") from None
    if len(data) > limit:
        raise InvalidInput(f"{param} is larger than {limit} bytes decoded")
    return data


def _parse_properties(text: str) -> dict[str, str]:
    obj = _load_json("img_properties", text, MAX_PROPERTIES_BYTES)
    if not isinstance(obj, dict):
        raise InvalidInput(f"img_properties must be a JSON object, not {type(obj).__name__}")
    props: dict[str, str] = {}
    for key, value in obj.items():
        upper = key.upper()
        if not upper or len(upper) > 256 or re.search(r"[\x00-\x1f\x7f]", upper):
            raise InvalidInput(f"img_properties key {_short(key)} is empty, long or has controls")
        if upper in props:
            raise InvalidInput(f"img_properties has {upper!r} twice (keys are case-insensitive)")
        if isinstance(value, bool | int | float):
            value = json.dumps(value)  # true, false, 3, 1.5: as Synnefo's images have them
        if not isinstance(value, str) or "\0" in value:
            raise InvalidInput(
                f"img_properties {upper!r} must be a string, number or boolean without NUL"
            )
        _utf8(f"img_properties {upper!r}", upper + value)
        props[upper] = value
    return props


def _owner(field_name: str, path: str, value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str) and (
        (_DECIMAL.fullmatch(value) and int(value) < 2**32 - 1)
        or (len(value) <= 32 and _USER.fullmatch(value))
    ):
        return value
    raise InvalidInput(
        f"img_personality {field_name} of {path!r} must be a user or group name or id"
    )


def _parse_personality(text: str) -> tuple[PersonalityFile, ...]:
    limit = MAX_PERSONALITY_FILES * (MAX_PERSONALITY_BYTES * 4 // 3 + MAX_PATH_CHARS + 1024)
    items = _load_json("img_personality", text, limit)
    if not isinstance(items, list):
        raise InvalidInput(f"img_personality must be a JSON list, not {type(items).__name__}")
    if len(items) > MAX_PERSONALITY_FILES:
        raise InvalidInput(
            f"img_personality has {len(items)} files; the limit is {MAX_PERSONALITY_FILES}"
        )
    files: list[PersonalityFile] = []
    for n, item in enumerate(items):
        if not isinstance(item, dict) or not {"path", "contents"} <= item.keys():
            raise InvalidInput(f"img_personality item {n} must be an object with path, contents")
        if item.keys() - _PERSONALITY_KEYS:
            unknown = ", ".join(sorted(item.keys() - _PERSONALITY_KEYS))[:80]
            raise InvalidInput(f"img_personality item {n} has unknown keys: {unknown}")
        if not isinstance(item["path"], str) or not isinstance(item["contents"], str):
            raise InvalidInput(f"img_personality item {n}: path and contents must be strings")
        path = _check_path(f"img_personality item {n} path", item["path"])
        if any(f.path == path for f in files):
            raise InvalidInput(f"img_personality names {path!r} twice")
        contents = _b64(f"img_personality file {path!r}", item["contents"], MAX_PERSONALITY_BYTES)
        mode = item.get("mode", 0o440)
        if isinstance(mode, str) and _DECIMAL.fullmatch(mode):
            mode = int(mode)
        if isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode <= 0o7777:
            raise InvalidInput(
                f"img_personality mode of {path!r} must be an integer 0..4095 (0o7777)"
            )
        owner = _owner("owner", path, item.get("owner", "root"))
        group = _owner("group", path, item.get("group", "root"))
        files.append(PersonalityFile(path, contents, owner, group, mode))
    return tuple(files)


def _check_passwd(osp: Mapping[str, str]) -> tuple[str | None, str | None]:
    passwd, passwd_hash = osp.get("img_passwd"), osp.get("img_passwd_hash")
    if passwd is not None and passwd_hash is not None:
        raise InvalidInput("img_passwd and img_passwd_hash: give at most one of them")
    if passwd is not None:
        if not passwd or len(passwd) > MAX_PASSWD_CHARS:
            raise InvalidInput(f"img_passwd must be 1..{MAX_PASSWD_CHARS} characters long")
        if re.search(r"[\x00\r\n]", passwd):
            raise InvalidInput("img_passwd must not contain a NUL or a line break")
    if passwd_hash is not None and (len(passwd_hash) > 512 or not _HASH.fullmatch(passwd_hash)):
        raise InvalidInput(
            "img_passwd_hash must be a crypt(3) hash: printable, no space or ':', <= 512 chars"
        )
    return passwd, passwd_hash


def parse_params(osp: Mapping[str, str]) -> ImageParams:
    """Check the parameters, given by lower-case name; names not known here are ignored."""
    for name in (name for name, _ in PARAMETERS if name in osp):
        if not isinstance(osp[name], str):
            raise InvalidInput(f"{name} must be a string, not {type(osp[name]).__name__}")
        _utf8(name, osp[name])
    for name in ("img_id", "img_format"):
        if not osp.get(name):
            raise InvalidInput(f"{name} is missing")
    source = _parse_source(osp["img_id"])
    fmt = osp["img_format"]
    if fmt not in FORMATS:
        raise InvalidInput(f"img_format {_short(fmt)}: expected one of {', '.join(FORMATS)}")
    passwd, passwd_hash = _check_passwd(osp)
    keys, props = osp.get("auth_keys"), osp.get("img_properties")
    files, data = osp.get("img_personality"), osp.get("cloud_userdata")
    if keys is not None and (len(keys.encode()) > MAX_AUTH_KEYS_BYTES or "\0" in keys):
        raise InvalidInput("auth_keys must be at most 16 KiB of text without NUL")
    return ImageParams(
        source,
        fmt,
        passwd,
        passwd_hash,
        properties={} if props is None else _parse_properties(props),
        personality=() if files is None else _parse_personality(files),
        auth_keys=keys,
        cloud_userdata=None if data is None else _b64("cloud_userdata", data, MAX_USERDATA_BYTES),
    )


def params_from_env(env: Mapping[str, str]) -> ImageParams:
    """Check the parameters of a Ganeti OS script's environment (OSP_IMG_ID, ...)."""
    return parse_params({k[4:].lower(): v for k, v in env.items() if k.startswith("OSP_")})
