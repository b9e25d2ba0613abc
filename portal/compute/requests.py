"""Checking what clients send to the compute API (pure: values in, values or errors out).

Limits are Synnefo's: at most 5 personality files of at most 10240 bytes each (413 beyond),
at most 10 metadata items; names and values are printable strings.  A password a client
chooses needs 8 characters or more; one we choose has 12, with upper and lower case and
digits.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import string
import uuid
from dataclasses import dataclass, field
from typing import Any

from ..errors import ApiError

MAX_PERSONALITY = 5
MAX_PERSONALITY_BYTES = 10240
MAX_METADATA = 10
MAX_META_LENGTH = 255
MAX_NAME = 256


@dataclass(frozen=True)
class CreateRequest:
    name: str
    image_id: str
    flavor_id: int
    metadata: dict[str, str] = field(default_factory=dict)
    personality: list[dict[str, Any]] = field(default_factory=list)
    password: str | None = None
    networks: list[str] | None = None
    project: uuid.UUID | None = None


def bad(message: str) -> ApiError:
    return ApiError(400, message)


def text(value: Any, what: str, *, most: int = MAX_NAME, empty: bool = False) -> str:
    if not isinstance(value, str):
        raise bad(f"{what} must be a string")
    if (not value and not empty) or len(value) > most or not value.isprintable():
        raise bad(f"{what} must be 1 to {most} printable characters")
    return value


def flavor_ref(value: Any) -> int:
    """A flavor id, or a link ending in one (``.../flavors/3``)."""
    raw = str(value).rstrip("/").rsplit("/", 1)[-1] if isinstance(value, str | int) else ""
    if not raw.isdigit() or isinstance(value, bool):
        raise bad(f"bad flavorRef {value!r}")
    return int(raw)


def image_ref(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise bad("imageRef must be a non-empty string")
    return value.rstrip("/").rsplit("/", 1)[-1]


def metadata(value: Any, *, present: dict[str, str] | None = None) -> dict[str, str]:
    if not isinstance(value, dict):
        raise bad("metadata must be an object of strings")
    out = dict(present or {})
    for key, item in value.items():
        out[text(key, "a metadata key", most=MAX_META_LENGTH)] = text(
            item, f"metadata {key!r}", most=MAX_META_LENGTH, empty=True
        )
    if len(out) > MAX_METADATA:
        raise ApiError(413, f"at most {MAX_METADATA} metadata items", fault="overLimit")
    return out


def personality(value: Any) -> list[dict[str, Any]]:
    """Synnefo's personality list, checked; the contents stay base64 for snf-image."""
    if not isinstance(value, list):
        raise bad("personality must be a list")
    if len(value) > MAX_PERSONALITY:
        raise ApiError(413, f"at most {MAX_PERSONALITY} personality files", fault="overLimit")
    out = []
    for item in value:
        if not isinstance(item, dict):
            raise bad("each personality item must be an object")
        path = text(item.get("path"), "a personality path", most=4096)
        if not path.startswith("/"):
            raise bad(f"personality path {path!r} must be absolute")
        contents = item.get("contents", "")
        try:
            data = base64.b64decode(text(contents, "personality contents", most=1 << 20,
                                         empty=True), validate=True)  # fmt: skip
        except (binascii.Error, ValueError):
            raise bad(f"the contents of {path} are not base64") from None
        if len(data) > MAX_PERSONALITY_BYTES:
            raise ApiError(413, f"{path} is larger than {MAX_PERSONALITY_BYTES} bytes",
                           fault="overLimit")  # fmt: skip
        entry: dict[str, Any] = {"path": path, "contents": contents}
        for key in ("owner", "group"):
            if key in item:
                entry[key] = text(item[key], f"personality {key}", most=64)
        if "mode" in item:
            mode = item["mode"]
            if not isinstance(mode, int) or isinstance(mode, bool) or not 0 <= mode <= 0o7777:
                raise bad(f"personality mode of {path} must be an integer 0..4095")
            entry["mode"] = mode
        out.append(entry)
    return out


def password(value: Any) -> str:
    secret = text(value, "adminPass", most=128)
    if len(secret) < 8:
        raise bad("adminPass needs at least 8 characters")
    return secret


def new_password() -> str:
    alphabet = string.ascii_letters + string.digits
    while True:
        secret = "".join(secrets.choice(alphabet) for _ in range(12))
        if (any(c.islower() for c in secret) and any(c.isupper() for c in secret)
                and any(c.isdigit() for c in secret)):  # fmt: skip
            return secret


def networks(value: Any) -> list[str]:
    """``[{"uuid": name}, ...]``: Ganeti network names (ports come with the Network API)."""
    if not isinstance(value, list):
        raise bad("networks must be a list")
    out = []
    for item in value:
        if not isinstance(item, dict) or "uuid" not in item:
            raise bad('each network must be {"uuid": <network id>}')
        if set(item) - {"uuid", "fixed_ip"}:
            raise bad(f"unsupported network keys: {', '.join(sorted(set(item) - {'uuid'}))}")
        if "fixed_ip" in item:
            raise ApiError(501, "fixed_ip is not supported yet", fault="notImplemented")
        out.append(text(item["uuid"], "a network id", most=128))
    return out


def create_request(body: dict[str, Any]) -> CreateRequest:
    server = body.get("server")
    if not isinstance(server, dict):
        raise bad('the body must be {"server": {...}}')
    for required in ("name", "imageRef", "flavorRef"):
        if required not in server:
            raise bad(f"server.{required} is required")
    project = server.get("project")
    if project is not None:
        try:
            project = uuid.UUID(str(project))
        except ValueError:
            raise bad(f"bad project {project!r}") from None
    return CreateRequest(
        name=text(server["name"], "server.name"),
        image_id=image_ref(server["imageRef"]),
        flavor_id=flavor_ref(server["flavorRef"]),
        metadata=metadata(server.get("metadata", {})),
        personality=personality(server.get("personality", [])),
        password=password(server["adminPass"]) if "adminPass" in server else None,
        networks=networks(server["networks"]) if "networks" in server else None,
        project=project,
    )
