"""Run the benchmarks: ``python -m tests.bench [--smoke]``.

--smoke runs each benchmark once with the fewest rounds (CI does this); figures from a full
run go into README.md.
"""

from __future__ import annotations

import argparse
import logging

from . import (
    bench_archipelago,
    bench_commissions,
    bench_compute,
    bench_image,
    bench_nfdhcpd,
    bench_pithos,
    bench_portal,
    bench_testbed,
    bench_volumes,
)

BENCHMARKS = {
    "testbed": bench_testbed.run,
    "archipelago": bench_archipelago.run,
    "portal": bench_portal.run,
    "commissions": bench_commissions.run,
    "pithos": bench_pithos.run,
    "image": bench_image.run,
    "compute": bench_compute.run,
    "nfdhcpd": bench_nfdhcpd.run,
    "volumes": bench_volumes.run,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="one quick round of each")
    parser.add_argument("names", nargs="*", help=f"some of: {', '.join(BENCHMARKS)}")
    args = parser.parse_args()
    unknown = set(args.names) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    logging.basicConfig(level=logging.WARNING)
    for name in args.names or BENCHMARKS:
        print(f"## {name}{' (smoke)' if args.smoke else ''}", flush=True)
        for line in BENCHMARKS[name](smoke=args.smoke):
            print(line, flush=True)


if __name__ == "__main__":
    main()
