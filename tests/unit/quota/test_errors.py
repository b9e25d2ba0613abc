from __future__ import annotations

import pickle
import uuid

import pytest

from snf.common.errors import Conflict, InvalidInput, NotFound, SnfError
from snf.quota import errors

PROVISION = {"holder": "user:u", "source": "project:p", "resource": "cyclades.vm", "quantity": 2}
EXAMPLES = [
    (errors.InvalidData("bad"), 400, "badRequest", InvalidInput),
    (errors.NoHolding(PROVISION), 404, "itemNotFound", NotFound),
    (errors.NoCapacity(PROVISION, 5, 4), 413, "overLimit", errors.QuotaError),
    (errors.NoQuantity(PROVISION, 5, 1), 413, "overLimit", errors.NoCapacity),
    (errors.CommissionNotFound(7), 404, "itemNotFound", NotFound),
    (errors.CommissionConflict("resolved"), 409, "conflictingRequest", Conflict),
    (errors.ProjectNotFound(uuid.uuid4()), 404, "itemNotFound", NotFound),
    (errors.ProjectConflict("closed"), 409, "conflictingRequest", Conflict),
]


@pytest.mark.parametrize(("error", "status", "name", "base"), EXAMPLES,
                         ids=lambda e: type(e).__name__)  # fmt: skip
def test_one_root_with_api_status(
    error: errors.QuotaError, status: int, name: str, base: type[SnfError]
) -> None:
    assert isinstance(error, errors.QuotaError) and isinstance(error, base)
    assert (error.http_status, error.openstack_name) == (status, name)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error) and str(copy) == str(error)
    assert copy.data == error.data


def test_no_capacity_names_the_resource_and_carries_astakos_data() -> None:
    error = errors.NoCapacity(PROVISION, 5, 4)
    assert "cyclades.vm" in str(error) and "limit 5" in str(error)
    assert error.data == {"provision": PROVISION, "name": "NoCapacityError", "limit": 5,
                          "usage": 4}  # fmt: skip
    assert errors.NoQuantity(PROVISION, 5, 1).data["available"] == 1
