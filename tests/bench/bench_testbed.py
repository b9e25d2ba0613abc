"""Benchmark: the testbed up from nothing and down, one instance lifecycle with the fake
hypervisor, and one KVM/TCG boot to the first console line.

Comparison runs in the same process: the lifecycle with the `diskless` template (Ganeti's
own floor) beside `ext` through the test provider; the kernel's first console byte beside
the guest init's first line.  Goals (issue 2): up <= 20 s, fake lifecycle <= 5 s, TCG boot
<= 10 s.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from tests.testbed import cluster as tb
from tests.testbed import plan, test_providers
from tests.testbed.cluster import Cluster

from .machine import describe


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.monotonic()
    fn()
    return time.monotonic() - t0


def lifecycle(c: Cluster, name: str, template: str) -> dict[str, float]:
    add = ["gnt-instance", "add", "-t", template, "-o", test_providers.OS_NAME, "-B",
           "memory=64", "--no-name-check", "--no-ip-check", "-n", c.info.master]  # fmt: skip
    if template == "ext":
        add += ["--disk", f"0:size=64,provider={test_providers.EXT_PROVIDER}"]
    else:
        add += ["--no-install"]
    steps = {
        "add": lambda: c.gnt(*add, name),
        "shutdown": lambda: c.gnt("gnt-instance", "shutdown", name),
        "startup": lambda: c.gnt("gnt-instance", "startup", name),
        "remove": lambda: c.gnt("gnt-instance", "remove", "-f", name),
    }
    times = {step: _timed(fn) for step, fn in steps.items()}
    times["total"] = sum(times.values())
    return times


def run(smoke: bool = False) -> list[str]:
    rounds = 1 if smoke else 5
    lines = [f"Machine: {describe()}", ""]
    tb.down()
    up_times, down_times = [], []
    for _ in range(1 if smoke else 3):
        up_times.append(_timed(lambda: tb.up(plan.ClusterPlan(1), progress=lambda _m: None)))
        down_times.append(_timed(lambda: tb.down(1)))
    lines.append(
        f"testbed up (lan + 1-node cluster, from nothing): median "
        f"{statistics.median(up_times):.1f} s (n={len(up_times)}, goal <= 20 s); "
        f"down: median {statistics.median(down_times):.1f} s"
    )
    c = tb.up(plan.ClusterPlan(1), progress=lambda _m: None)
    try:
        for node in c.plan.nodes:
            test_providers.install(node)
        lines += ["", "| fake hypervisor lifecycle | add | shutdown | startup | remove | total |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
        for template in ("diskless", "ext"):
            runs = [lifecycle(c, f"bench-{template}-{i}", template) for i in range(rounds)]
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            label = "diskless (Ganeti alone)" if template == "diskless" else "ext + test provider"
            cells = " | ".join(
                f"{med[k]:.2f} s" for k in ("add", "shutdown", "startup", "remove", "total")
            )
            lines.append(f"| {label}, median of {rounds} | {cells} |")
        lines.append("(goal: total <= 5 s)")

        from tests.integration.test_kvm_boot import boot_and_read_console

        boots = []
        for i in range(1 if smoke else 3):
            name = f"bench-kvm-{i}"
            boots.append(boot_and_read_console(c, name))
            c.gnt("gnt-instance", "remove", "-f", "--shutdown-timeout=0", name)
        first = statistics.median(b["first_console_byte"] for b in boots)
        hello = statistics.median(b["guest_hello"] for b in boots)
        add = statistics.median(b["add"] for b in boots)
        lines += [
            "",
            f"KVM/TCG (n={len(boots)}, medians): add {add:.1f} s; from `startup` to the kernel's "
            f"first console byte {first:.1f} s, to the guest init's first line {hello:.1f} s "
            "(goal <= 10 s)",
        ]
    finally:
        tb.down()
    return lines
