"""Provisions as clients send them, checked and normalized: pure functions, no database.

A provision is ``{"holder", "source", "resource", "quantity"}`` exactly as astakosclient
sends it: two per (user, project, resource), holder ``"user:<uuid>"`` with source
``"project:<uuid>"``, and holder ``"project:<uuid>"`` with source ``None``. Anything else is
:class:`InvalidData` (400), before the database is touched.

Holdings are always locked in :func:`lock_order` (by holder, source, resource), by every
operation of the engine, so two transactions never wait for each other's rows in a cycle.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from . import resources
from .errors import InvalidData, ProvisionDict

USER = "user:"
PROJECT = "project:"
MAX_PROVISIONS = 1024
MAX_NAME = 255

#: (holder, source, resource): the identity of a holding.
HoldingKey = tuple[str, str | None, str]


def user_ref(user_uuid: uuid.UUID) -> str:
    return f"{USER}{user_uuid}"


def project_ref(project_id: uuid.UUID) -> str:
    return f"{PROJECT}{project_id}"


def lock_order(key: HoldingKey) -> tuple[str, str, str]:
    """The one order in which the engine locks (updates) holdings."""
    holder, source, resource = key
    return holder, source or "", resource


def parse_uuid(value: object, what: str = "uuid") -> uuid.UUID:
    """A UUID given as a uuid.UUID or in its text form (any case, with hyphens)."""
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, str) and len(value) == 36:
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
    raise InvalidData(f"{what} must be a UUID, not {value!r}")


def _parse_ref(value: object, prefix: str, what: str) -> str:
    if not isinstance(value, str) or not value.startswith(prefix):
        raise InvalidData(f"{what} must be '{prefix}<uuid>', not {value!r}")
    return prefix + str(parse_uuid(value[len(prefix) :], what))


@dataclass(frozen=True)
class Item:
    """One checked provision; holder and source in canonical form (lower-case UUIDs)."""

    holder: str
    source: str | None
    resource: str
    quantity: int

    @property
    def key(self) -> HoldingKey:
        return self.holder, self.source, self.resource

    def to_dict(self) -> ProvisionDict:
        return {
            "holder": self.holder,
            "source": self.source,
            "resource": self.resource,
            "quantity": self.quantity,
        }


def parse_provision(provision: object) -> Item:
    if not isinstance(provision, Mapping):
        raise InvalidData(f"malformed provision {provision!r}: not an object")
    try:
        holder, source = provision["holder"], provision["source"]
        resource, quantity = provision["resource"], provision["quantity"]
    except KeyError as exc:
        raise InvalidData(f"malformed provision {dict(provision)!r}: no {exc.args[0]}") from None
    if isinstance(holder, str) and holder.startswith(USER):
        holder = _parse_ref(holder, USER, "holder")
        source = _parse_ref(source, PROJECT, "the source of a user holder")
    elif isinstance(holder, str) and holder.startswith(PROJECT):
        holder = _parse_ref(holder, PROJECT, "holder")
        if source is not None:
            raise InvalidData(f"the source of a project holder must be null, not {source!r}")
    else:
        raise InvalidData(f"holder must be 'user:<uuid>' or 'project:<uuid>', not {holder!r}")
    resource = resources.get(resource).name
    if type(quantity) is not int or quantity == 0:
        raise InvalidData(f"quantity must be a non-zero integer, not {quantity!r}")
    if abs(quantity) > resources.MAX_QUANTITY:
        raise InvalidData(f"quantity {quantity} is out of range")
    return Item(holder, source, resource, quantity)


def parse_provisions(provisions: object) -> list[Item]:
    """Check a commission's provisions; return them in lock order.

    A list (or tuple) of 1 to MAX_PROVISIONS provisions, at most one per holding.
    """
    if not isinstance(provisions, list | tuple) or not provisions:
        raise InvalidData("provisions must be a non-empty list")
    if len(provisions) > MAX_PROVISIONS:
        raise InvalidData(f"too many provisions ({len(provisions)} > {MAX_PROVISIONS})")
    items = sorted((parse_provision(p) for p in provisions), key=lambda i: lock_order(i.key))
    for a, b in itertools.pairwise(items):
        if a.key == b.key:
            raise InvalidData(f"duplicate provision for {a.holder} {a.source} {a.resource}")
    return items


def check_text(value: object, what: str, *, optional: bool = False) -> str | None:
    """A short text (a commission's name, a client key, a service name)."""
    if value is None and optional:
        return None
    if not isinstance(value, str) or len(value) > MAX_NAME:
        raise InvalidData(f"{what} must be a string of at most {MAX_NAME} characters")
    if optional and not value:
        raise InvalidData(f"{what} must not be empty")
    return value


def parse_serials(values: Iterable[object], what: str) -> list[int]:
    """Commission serials: integers (not booleans)."""
    if isinstance(values, str | bytes | Mapping) or not isinstance(values, Iterable):
        raise InvalidData(f"{what} must be a list of serials")
    serials: list[int] = []
    for value in values:
        if type(value) is not int:
            raise InvalidData(f"serials must be integers, not {value!r}")
        serials.append(value)
    return serials


def same_provisions(items: Sequence[Item], stored: Iterable[ProvisionDict]) -> bool:
    """Whether a retried commission asks for what the stored one holds."""

    def canonical(ps: Iterable[ProvisionDict]) -> list[tuple[tuple[str, str, str], int]]:
        return sorted(
            (lock_order((p["holder"], p["source"], p["resource"])), p["quantity"]) for p in ps
        )

    return canonical(i.to_dict() for i in items) == canonical(stored)
