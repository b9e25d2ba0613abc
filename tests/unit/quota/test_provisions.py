from __future__ import annotations

import uuid

import pytest

from snf.quota import provisions as p
from snf.quota.errors import InvalidData

U = uuid.UUID("6f1e0d3c-94a4-4b79-8a5b-0c8dc0e4c0a1")
P = uuid.UUID("0b7a1f6e-3c2d-4e5f-9a8b-7c6d5e4f3a2b")


def test_provisions_are_normalized_and_sorted_in_lock_order() -> None:
    items = p.parse_provisions([
        {"holder": f"user:{str(U).upper()}", "source": f"project:{P}", "resource": "cyclades.vm",
         "quantity": 1, "extra": "ignored"},
        {"holder": f"project:{P}", "source": None, "resource": "cyclades.vm", "quantity": 1},
        {"holder": f"project:{P}", "source": None, "resource": "cyclades.cpu", "quantity": -2},
    ])  # fmt: skip
    assert [i.key for i in items] == [
        (f"project:{P}", None, "cyclades.cpu"),
        (f"project:{P}", None, "cyclades.vm"),
        (f"user:{U}", f"project:{P}", "cyclades.vm"),
    ]
    assert items[0].to_dict()["quantity"] == -2
    assert p.same_provisions(items, [i.to_dict() for i in reversed(items)])
    assert not p.same_provisions(items[:2], [i.to_dict() for i in items])


@pytest.mark.parametrize("value", ["nope", "", 5, None, f"{U}x", str(U)[:-1] + "g"])
def test_uuids(value: object) -> None:
    with pytest.raises(InvalidData):
        p.parse_uuid(value)


def test_serials_and_texts() -> None:
    assert p.parse_serials((1, 2), "accept") == [1, 2]
    for bad in ([True], ["1"], "12", {1: 2}, 3):
        with pytest.raises(InvalidData):
            p.parse_serials(bad, "accept")  # type: ignore[arg-type]
    assert p.check_text(None, "client_key", optional=True) is None
    with pytest.raises(InvalidData):
        p.check_text(b"x", "name")


def test_too_many_provisions() -> None:
    many = [{"holder": f"project:{uuid.uuid4()}", "source": None, "resource": "cyclades.vm",
             "quantity": 1} for _ in range(p.MAX_PROVISIONS + 1)]  # fmt: skip
    with pytest.raises(InvalidData, match="too many"):
        p.parse_provisions(many)
