"""Random, non-zero, distinct test data, made fast enough for 10 GiB benchmarks.

A 64 MiB pool from os.urandom; block ``i`` is a 4 MiB window into it at a position that
depends on ``i``, with ``i`` stamped into its first bytes, so every block is different
(distinct hashes, no deduplication) and none is zero.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

BLOCK = 4 << 20
_POOL = os.urandom(64 << 20)


def block(i: int, seed: int = 0) -> bytes:
    start = (i * 7919 + seed * 104729) % (len(_POOL) - BLOCK)
    stamp = f"block {seed}:{i}:".encode()
    return stamp + _POOL[start + len(stamp) : start + BLOCK]


def blocks(count: int, seed: int = 0) -> Iterator[bytes]:
    for i in range(count):
        yield block(i, seed)


def write_file(path: os.PathLike[str] | str, size: int, seed: int = 0) -> None:
    """A file of ``size`` bytes of such data, fsync'd."""
    with open(path, "wb") as f:
        done = 0
        for i in range(-(-size // BLOCK)):
            chunk = block(i, seed)[: size - done]
            f.write(chunk)
            done += len(chunk)
        f.flush()
        os.fsync(f.fileno())
