"""What machine a benchmark ran on, for the README's tables."""

from __future__ import annotations

import os
import platform
import subprocess


def _first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return out.strip().splitlines()[0] if out.strip() else "?"


def describe() -> str:
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    ganeti = _first_line(["dpkg-query", "-W", "-f=${Version}", "ganeti-3.0"])
    qemu = _first_line(["qemu-system-x86_64", "--version"])
    return (
        f"{cpu}, {os.cpu_count()} cores, {mem_gib:.0f} GiB, kernel {platform.release()}, "
        f"Ganeti {ganeti}, {qemu}"
    )
