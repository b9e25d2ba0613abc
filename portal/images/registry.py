"""The image registry's rules, on a SQLAlchemy session (no Flask): registering an object
as an image, who sees which image, metadata updates, members, and the image a server may
boot (:func:`image_for_server`, what compute calls).

Visibility: the owner sees their images; everyone sees public ones; a member sees the
images shared with them.  An image no one may see is "not found" (404), one that is seen
but not owned may not be changed (403).  Only an object's owner may register it: Synnefo
asks the same (registering sets the object's read permissions, which only the owner may),
and a reader who could publish an image would hand the owner's file to everyone.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

from sqlalchemy import delete, exists, or_, select
from sqlalchemy.orm import Session

from ..errors import ApiError
from ..identity.models import User
from ..pithos import access, containers, objects
from ..pithos.errors import ItemNotFound
from ..pithos.models import Container, Object, Version
from .models import STATUSES, Image, ImageMember

#: What snf-image deploys (``img_format``), the first the default.
DISK_FORMATS = ("diskdump", "extdump", "ntfsdump", "qcow2")
#: Plankton's container formats, the first the default.
CONTAINER_FORMATS = ("bare", "aki", "ari", "ami", "ovf")
MAX_NAME = 256
MAX_PROPERTY_KEY = 128
MAX_PROPERTY_VALUE = 256
MAX_PROPERTIES = 64
MAX_MEMBERS = 1000
SORT_KEYS = {
    "id": Image.id,
    "name": Image.name,
    "status": Image.status,
    "size": Image.size,
    "disk_format": Image.disk_format,
    "container_format": Image.container_format,
    "created_at": Image.created,
    "updated_at": Image.updated,
}


@dataclass
class Registration:
    """What a client gives when it registers an object (``None``: not given)."""

    name: str
    location: str
    disk_format: str | None = None
    container_format: str | None = None
    is_public: bool = False
    size: int | None = None
    checksum: str | None = None
    properties: dict[str, str] = field(default_factory=dict)


@dataclass
class Filters:
    """Plankton's listing filters and order."""

    name: str | None = None
    disk_format: str | None = None
    container_format: str | None = None
    status: str | None = None
    size_min: int | None = None
    size_max: int | None = None
    sort_key: str = "created_at"
    sort_dir: str = "desc"


# --- values ------------------------------------------------------------------------------


def parse_id(image_id: str) -> uuid.UUID | None:
    """An image id as a UUID; None when it is not one."""
    try:
        return uuid.UUID(image_id)
    except (ValueError, TypeError, AttributeError):
        return None


def parse_location(location: str) -> tuple[uuid.UUID, str, str]:
    """``pithos://<account uuid>/<container>/<object>`` (each part may be URL-quoted, as
    kamaki sends it) as (account, container, object name); 400 for anything else."""
    parts = location.split("/", 4)
    bad = ApiError(400, f"invalid location {location!r}: use pithos://<uuid>/<container>/<path>")
    if len(parts) != 5 or parts[0] != "pithos:" or parts[1] != "":
        raise bad
    try:
        account, container, name = (unquote(p, errors="strict") for p in parts[2:])
    except UnicodeDecodeError:
        raise bad from None
    owner = parse_id(account)
    if owner is None or not container or "/" in container or not name:
        raise bad
    return owner, container, name


def location_of(owner: uuid.UUID, container: str, name: str) -> str:
    """The location as Synnefo gives it back: each part URL-quoted."""
    return f"pithos://{owner}/{quote(container, safe='')}/{quote(name)}"


def check_name(name: str) -> str:
    if not name or len(name) > MAX_NAME:
        raise ApiError(400, f"an image name must have 1 to {MAX_NAME} characters")
    return name


def check_choice(value: str, choices: tuple[str, ...], what: str) -> str:
    if value not in choices:
        raise ApiError(400, f"invalid {what} {value!r}: use one of {', '.join(choices)}")
    return value


def merge_properties(current: Mapping[str, Any], given: Mapping[str, str]) -> dict[str, Any]:
    """``given`` merged into ``current``; an empty value removes its key (Pithos' rule for
    metadata, which Plankton stores properties as)."""
    merged = dict(current)
    for key, value in given.items():
        if len(key) > MAX_PROPERTY_KEY or len(value) > MAX_PROPERTY_VALUE:
            limits = f"{MAX_PROPERTY_KEY} characters for keys, {MAX_PROPERTY_VALUE} for values"
            raise ApiError(400, f"property {key[:40]!r} is too long: {limits}")
        if value:
            merged[key] = value
        else:
            merged.pop(key, None)
    if len(merged) > MAX_PROPERTIES:
        raise ApiError(400, f"an image may have at most {MAX_PROPERTIES} properties")
    return merged


# --- registering ---------------------------------------------------------------------------


def _object(session: Session, user: uuid.UUID, location: str) -> tuple[Container, Object]:
    owner, container_name, name = parse_location(location)
    if owner != user:
        found = session.scalars(
            select(Container).where(Container.account == owner, Container.name == container_name)
        ).first()
        if found is not None and access.may(session, user, found, name, "read"):
            raise ApiError(403, "only the object's owner may register it as an image")
        raise ApiError(403, f"you may not read {container_name}/{name}")
    try:
        container = containers.get(session, owner, container_name)
        return container, objects.find(session, container, name)
    except ItemNotFound as exc:
        raise ApiError(404, str(exc)) from None


def register(session: Session, user: uuid.UUID, reg: Registration) -> Image:
    """Register the object at ``reg.location`` (the caller's own) as an image, pinning its
    current version; registering it again updates the image (same id: the object's UUID).
    Flushes, does not commit."""
    check_name(reg.name)
    disk_format = check_choice(reg.disk_format or DISK_FORMATS[0], DISK_FORMATS, "disk format")
    container_format = check_choice(
        reg.container_format or CONTAINER_FORMATS[0], CONTAINER_FORMATS, "container format"
    )
    container, obj = _object(session, user, reg.location)
    version = objects.current(session, obj)
    if version.kind != "data":
        raise ApiError(400, "a large-object manifest cannot be registered as an image")
    if reg.size is not None and reg.size != version.size:
        raise ApiError(400, f"invalid size {reg.size}: the object has {version.size} bytes")
    if reg.checksum is not None and reg.checksum.lower() != version.hash:
        raise ApiError(400, f"invalid checksum {reg.checksum!r}: the object's is {version.hash}")
    now = time.time()
    image = session.get(Image, obj.uuid)
    if image is None:
        image = Image(id=obj.uuid, owner=user, created=now, properties={}, status="AVAILABLE")
        session.add(image)
    image.name = reg.name
    image.location = location_of(container.account, container.name, obj.name)
    _pin(image, version)
    image.disk_format, image.container_format = disk_format, container_format
    image.is_public = reg.is_public
    image.properties = merge_properties(image.properties or {}, reg.properties)
    image.updated = now
    session.flush()
    return image


def _pin(image: Image, version: Version) -> None:
    image.version_id, image.map_name = version.id, version.map_name
    image.size, image.checksum = version.size, version.hash


# --- reading -------------------------------------------------------------------------------


def _visible_to(user: uuid.UUID) -> Any:
    shared = exists().where(ImageMember.image_id == Image.id, ImageMember.member == user)
    return or_(Image.owner == user, Image.is_public.is_(True), shared)


def list_images(session: Session, user: uuid.UUID, filters: Filters) -> list[Image]:
    """The images ``user`` sees (own, public, shared with them), filtered and sorted."""
    query = select(Image).where(_visible_to(user))
    for column, value in [
        (Image.name, filters.name),
        (Image.disk_format, filters.disk_format),
        (Image.container_format, filters.container_format),
        (Image.status, filters.status.upper() if filters.status else None),
    ]:
        if value is not None:
            query = query.where(column == value)
    if filters.size_min is not None:
        query = query.where(Image.size >= filters.size_min)
    if filters.size_max is not None:
        query = query.where(Image.size <= filters.size_max)
    column = SORT_KEYS[check_choice(filters.sort_key, tuple(SORT_KEYS), "sort_key")]
    check_choice(filters.sort_dir, ("asc", "desc"), "sort_dir")
    if filters.sort_dir == "desc":
        query = query.order_by(column.desc(), Image.id.desc())
    else:
        query = query.order_by(column.asc(), Image.id.asc())
    return list(session.scalars(query))


def visible(session: Session, image_id: str, user: uuid.UUID) -> Image:
    """The image, if ``user`` may see it; 404 otherwise (a malformed id included)."""
    key = parse_id(image_id)
    image = None if key is None else session.get(Image, key)
    if image is None or not may_see(session, image, user):
        raise ApiError(404, f"image {image_id} does not exist")
    return image


def owned(session: Session, image_id: str, user: uuid.UUID) -> Image:
    """The image, for a change by its owner: 404 if unseen, 403 if not owned."""
    image = visible(session, image_id, user)
    if image.owner != user:
        raise ApiError(403, "only the image's owner may change it")
    return image


def may_see(session: Session, image: Image, user: uuid.UUID) -> bool:
    if image.owner == user or image.is_public:
        return True
    return session.get(ImageMember, (image.id, user)) is not None


def has_members(session: Session, image_ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
    """Those of ``image_ids`` that have at least one member."""
    ids = list(image_ids)
    if not ids:
        return set()
    rows = session.scalars(select(ImageMember.image_id).where(ImageMember.image_id.in_(ids)))
    return set(rows)


def image_for_server(session: Session, image_id: str, user: uuid.UUID) -> Image:
    """The image ``user`` wants to boot: theirs, public or shared with them, and AVAILABLE.
    400 for a malformed id or an image that is not available, 404 for one that is unknown
    or not visible to ``user``."""
    if parse_id(image_id) is None:
        raise ApiError(400, f"invalid image id {image_id!r}: image ids are UUIDs")
    image = visible(session, image_id, user)
    if image.status != "AVAILABLE":
        raise ApiError(400, f"image {image_id} is not available (status {image.status})")
    return image


# --- changing ------------------------------------------------------------------------------


def update(session: Session, image: Image, changes: Mapping[str, Any]) -> Image:
    """Plankton's metadata update: name, disk_format, container_format, is_public replaced;
    properties merged (an empty value removes one).  ``owner`` and ``status`` may only be
    given unchanged: the owner cannot be handed over, the status is the service's."""
    if "name" in changes:
        image.name = check_name(changes["name"])
    if "disk_format" in changes:
        image.disk_format = check_choice(changes["disk_format"], DISK_FORMATS, "disk format")
    if "container_format" in changes:
        value = changes["container_format"]
        image.container_format = check_choice(value, CONTAINER_FORMATS, "container format")
    if "is_public" in changes:
        image.is_public = bool(changes["is_public"])
    if "owner" in changes and changes["owner"] != str(image.owner):
        raise ApiError(403, "an image's owner cannot be changed")
    if "status" in changes:
        status = str(changes["status"]).upper()
        check_choice(status, STATUSES, "status")
        if status != image.status:
            raise ApiError(403, "an image's status is set by the service")
    if changes.get("properties"):
        image.properties = merge_properties(image.properties or {}, changes["properties"])
    image.updated = time.time()
    session.flush()
    return image


def unregister(session: Session, image: Image) -> None:
    """Forget the image; its object stays."""
    session.execute(delete(ImageMember).where(ImageMember.image_id == image.id))
    session.delete(image)
    session.flush()


# --- members -------------------------------------------------------------------------------


def members(session: Session, image: Image) -> list[uuid.UUID]:
    query = select(ImageMember.member).where(ImageMember.image_id == image.id)
    return sorted(session.scalars(query), key=str)


def check_member(session: Session, member: str) -> uuid.UUID:
    """A member as given (a user's UUID): 400 if it is not one, or no such user exists."""
    key = parse_id(member)
    if key is None or session.get(User, key) is None:
        raise ApiError(400, f"unknown user {member!r}: members are given by user UUID")
    return key


def add_member(session: Session, image: Image, member: str) -> None:
    key = check_member(session, member)
    if session.get(ImageMember, (image.id, key)) is None and key != image.owner:
        if len(members(session, image)) >= MAX_MEMBERS:
            raise ApiError(413, f"an image may have at most {MAX_MEMBERS} members")
        session.add(ImageMember(image_id=image.id, member=key))
    session.flush()


def remove_member(session: Session, image: Image, member: str) -> None:
    """Idempotent, as in Synnefo: removing a user who is not a member changes nothing."""
    key = parse_id(member)
    if key is None:
        raise ApiError(400, f"invalid member {member!r}: members are given by user UUID")
    found = session.get(ImageMember, (image.id, key))
    if found is not None:
        session.delete(found)
        session.flush()


def replace_members(session: Session, image: Image, given: list[str]) -> None:
    keys = {check_member(session, m) for m in given} - {image.owner}
    if len(keys) > MAX_MEMBERS:
        raise ApiError(413, f"an image may have at most {MAX_MEMBERS} members")
    session.execute(delete(ImageMember).where(ImageMember.image_id == image.id))
    session.add_all(ImageMember(image_id=image.id, member=k) for k in sorted(keys, key=str))
    session.flush()


def shared_by(session: Session, owner: uuid.UUID, user: uuid.UUID) -> list[Image]:
    """Synnefo's ``shared-images/<owner>``: the images ``owner`` shares with ``user`` (not
    public), in id order."""
    query = (
        select(Image)
        .where(Image.owner == owner, Image.is_public.is_(False), _visible_to(user))
        .order_by(Image.id)
    )
    return list(session.scalars(query))
