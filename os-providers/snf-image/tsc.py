"""The host's time-stamp counter rate, told to the helper's kernel (``tsc_early_khz=``).

A Linux guest measures its TSC against the PIT at boot.  Under TCG on a busy node the
measurement is disturbed, the kernel gives up ("Unable to calibrate against PIT ... could
not calculate TSC khz") and the microvm machine, which has no HPET or ACPI PM timer to fall
back on, hangs before init.  The guest's TSC runs at the host's rate (TCG reads the host's
counter; KVM passes it through), so we measure that rate here, against CLOCK_MONOTONIC, and
the guest needs no calibration at all.

Reading the counter takes one machine instruction, run from a private executable page
through ``ctypes``.  Off x86-64, or where executable pages are refused, there is no figure
and the guest calibrates as before.
"""

from __future__ import annotations

import ctypes
import mmap
import platform
import time
from collections.abc import Callable

# rdtsc; shl rdx, 32; or rax, rdx; ret  -> the 64-bit counter in rax
RDTSC_CODE = bytes.fromhex("0f31 48c1e220 4809d0 c3")
PLAUSIBLE_KHZ = range(100_000, 10_000_000)  # 100 MHz .. 10 GHz


def _sample(rdtsc: Callable[[], int]) -> tuple[int, int]:
    """(nanoseconds, counter) read as close together as a few tries allow."""
    best: tuple[int, int, int] | None = None
    for _ in range(7):
        before = time.monotonic_ns()
        count = rdtsc()
        after = time.monotonic_ns()
        if best is None or after - before < best[0]:
            best = (after - before, (before + after) // 2, count)
    assert best is not None
    return best[1], best[2]


def rate_khz(first: tuple[int, int], second: tuple[int, int]) -> int | None:
    """The counter's rate between two (nanoseconds, counter) samples, if it is plausible."""
    nanoseconds, counts = second[0] - first[0], second[1] - first[1]
    if nanoseconds <= 0 or counts <= 0:
        return None
    khz = counts * 1_000_000 // nanoseconds
    return khz if khz in PLAUSIBLE_KHZ else None


def host_tsc_khz(window: float = 0.05) -> int | None:
    """The host's TSC rate in kHz, measured over ``window`` seconds; None where unknown."""
    if platform.machine() not in ("x86_64", "amd64"):
        return None
    try:
        page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    except OSError:
        return None
    page.write(RDTSC_CODE)
    code = ctypes.c_char.from_buffer(page)
    try:
        rdtsc = ctypes.CFUNCTYPE(ctypes.c_uint64)(ctypes.addressof(code))
        first = _sample(rdtsc)
        time.sleep(window)
        return rate_khz(first, _sample(rdtsc))
    finally:
        del code
        page.close()
