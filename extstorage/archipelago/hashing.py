"""Block hashing, exactly as Pithos does it, so object-store files and volumes share blocks.

A file is cut into 4 MiB blocks.  A block's name is the hex SHA-256 of the block *without
its trailing zero bytes*: a short last block and the same block padded with zeros share a
name, and an all-zero block is named ``sha256(b"")`` (:data:`ZERO_HASH`) and never stored.
The object's top hash (Pithos' ``X-Object-Hash``) is the Merkle root of the block hashes:
no block gives ``sha256(b"")``, one block its own hash, more are padded with 32-byte zero
leaves to a power of two and hashed pairwise.

Pure functions, no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

BLOCK_SIZE = 4 * 1024 * 1024
HASH_LEN = 32
ZERO_HASH = hashlib.sha256(b"").hexdigest()
_ZERO_BLOCK = bytes(BLOCK_SIZE)
_TAIL = 64 * 1024
_ZERO_TAIL = bytes(_TAIL)


def content_length(data: bytes | bytearray | memoryview) -> int:
    """Length of ``data`` without its trailing zero bytes.

    Fast on zero-heavy data (disk images): whole-block and 64 KiB comparisons run at memory
    speed, where ``bytes.rstrip(b"\\0")`` walks byte by byte.
    """
    n = len(data)
    if n == 0:
        return 0
    if n <= BLOCK_SIZE and data == _ZERO_BLOCK[:n]:
        return 0
    if data[n - 1] != 0:
        return n
    while n >= _TAIL and data[n - _TAIL : n] == _ZERO_TAIL:
        n -= _TAIL
    start = max(0, n - _TAIL)
    return start + len(bytes(data[start:n]).rstrip(b"\0"))


def is_zero(data: bytes | bytearray | memoryview) -> bool:
    return content_length(data) == 0


def strip_zeros(data: bytes | bytearray | memoryview) -> bytes:
    """``data`` without its trailing zero bytes (what the block store keeps)."""
    return bytes(data[: content_length(data)])


def block_hash(data: bytes | bytearray | memoryview) -> str:
    """The Pithos name of one block: hex sha256 of the block without trailing zeros."""
    if len(data) > BLOCK_SIZE:
        raise ValueError(f"a block holds at most {BLOCK_SIZE} bytes, not {len(data)}")
    return hashlib.sha256(data[: content_length(data)]).hexdigest()


def top_hash(hashes: Iterable[str]) -> str:
    """Pithos' Merkle top hash (``X-Object-Hash``) of a list of hex block hashes."""
    leaves = [bytes.fromhex(h) for h in hashes]
    if not leaves:
        return ZERO_HASH
    if len(leaves) == 1:
        return leaves[0].hex()
    width = 1
    while width < len(leaves):
        width *= 2
    leaves += [bytes(HASH_LEN)] * (width - len(leaves))
    while len(leaves) > 1:
        leaves = [
            hashlib.sha256(leaves[i] + leaves[i + 1]).digest() for i in range(0, len(leaves), 2)
        ]
    return leaves[0].hex()


def hashes_of(data: bytes | bytearray | memoryview) -> list[str]:
    """The block hashes of a whole object held in memory (an empty object: one empty block)."""
    if not data:
        return [ZERO_HASH]
    view = memoryview(data)
    return [block_hash(view[i : i + BLOCK_SIZE]) for i in range(0, len(data), BLOCK_SIZE)]


def is_block_name(name: str) -> bool:
    """True for a 64-character lower-case hex name (a content block)."""
    return len(name) == 2 * HASH_LEN and all(c in "0123456789abcdef" for c in name)
