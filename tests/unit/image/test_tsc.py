"""The host TSC rate given to the helper's kernel, so that it never calibrates at boot."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest

from snf.image.helper_image import HelperFiles
from snf.image.helper_vm import qemu_argv
from snf.image.tsc import host_tsc_khz, rate_khz


def test_rate_from_two_samples() -> None:
    assert rate_khz((1_000_000, 5_000), (51_000_000, 130_005_000)) == 2_600_000
    assert rate_khz((0, 0), (1_000_000_000, 3_400_000_000)) == 3_400_000


@pytest.mark.parametrize(
    "first, second",
    [
        ((0, 0), (0, 100)),  # no time went by
        ((10, 0), (5, 100)),  # time went backwards
        ((0, 100), (10**9, 50)),  # the counter went backwards
        ((0, 0), (10**9, 10**6)),  # 1 MHz: not a TSC
        ((0, 0), (10**6, 10**9 * 20)),  # 20 THz
    ],
)
def test_implausible_rates_give_none(first: tuple[int, int], second: tuple[int, int]) -> None:
    assert rate_khz(first, second) is None


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the TSC is an x86-64 counter")
def test_the_host_rate_is_measured_and_stable() -> None:
    rates = [host_tsc_khz(window=0.05) for _ in range(3)]
    assert all(rate is not None for rate in rates), rates
    low, high = min(rates), max(rates)  # type: ignore[type-var]
    assert (high - low) / low < 0.01, rates  # type: ignore[operator]


def _append(tsc_khz: int | None) -> str:
    files = HelperFiles(kernel=Path("/k"), initrd=Path("/i"))
    argv = qemu_argv(
        files, "/d", "xfs", Path("/s"), Path("/c"), accel="tcg", memory_mib=256, tsc_khz=tsc_khz
    )
    return argv[argv.index("-append") + 1]


def test_the_kernel_is_told_the_rate_when_it_is_known() -> None:
    assert _append(2_600_000).split()[-1] == "tsc_early_khz=2600000"
    assert "tsc_early_khz" not in _append(None)
    assert "snf.fs=xfs" in _append(None).split()
