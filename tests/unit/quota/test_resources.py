from __future__ import annotations

import pytest

from snf.quota import resources
from snf.quota.errors import InvalidData
from snf.quota.resources import GiB

SYNNEFO_NAMES = [
    "cyclades.vm", "cyclades.total_cpu", "cyclades.cpu", "cyclades.total_ram", "cyclades.ram",
    "cyclades.disk", "cyclades.network.private", "cyclades.floating_ip", "pithos.diskspace",
    "astakos.pending_app",
]  # fmt: skip


def test_the_registry_has_synnefos_resources() -> None:
    assert sorted(resources.RESOURCES) == sorted(SYNNEFO_NAMES)


def test_the_api_lists_visible_resources_in_astakos_shape() -> None:
    catalog = resources.api_catalog()
    assert set(catalog) == set(SYNNEFO_NAMES) - {
        "cyclades.total_cpu",
        "cyclades.total_ram",
        "astakos.pending_app",
    }
    assert catalog["cyclades.ram"] == {
        "service": "cyclades_compute",
        "description": "Virtual machine memory size of running servers",
        "unit": "bytes",
        "ui_visible": True,
        "api_visible": True,
    }
    assert catalog["cyclades.vm"]["unit"] is None
    assert catalog["pithos.diskspace"]["service"] == "pithos_object-store"
    hidden = resources.RESOURCES["astakos.pending_app"]
    assert not hidden.api_visible and not hidden.ui_visible


def test_the_default_base_quota_fits_a_small_cloud() -> None:
    base = resources.base_quota()
    assert base["cyclades.vm"] == 2
    assert base["cyclades.cpu"] == base["cyclades.total_cpu"] == 4
    assert base["cyclades.ram"] == base["cyclades.total_ram"] == 4 * GiB
    assert base["cyclades.disk"] == 40 * GiB
    assert base["cyclades.network.private"] == base["cyclades.floating_ip"] == 1
    assert base["pithos.diskspace"] == 5 * GiB
    assert resources.base_quota({"cyclades.vm": 9})["cyclades.vm"] == 9


@pytest.mark.parametrize(
    "overrides", [{"cyclades.nope": 1}, {"cyclades.vm": -1}, {"cyclades.vm": 1.5},
                  {"cyclades.vm": True}, {"cyclades.vm": resources.MAX_QUANTITY + 1}],
)  # fmt: skip
def test_bad_base_quotas_are_invalid(overrides: dict[str, object]) -> None:
    with pytest.raises(InvalidData):
        resources.base_quota(overrides)  # type: ignore[arg-type]
