import hashlib
import os

import pytest

from snf.archipelago import hashing
from snf.archipelago.hashing import BLOCK_SIZE, ZERO_HASH

HELLO = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"


def test_pithos_vectors() -> None:
    assert hashing.block_hash(b"hello") == HELLO
    assert hashing.block_hash(b"hello" + bytes(BLOCK_SIZE - 5)) == HELLO
    data = b"A" * BLOCK_SIZE + b"B" * BLOCK_SIZE + b"C"
    assert hashing.top_hash(hashing.hashes_of(data)) == (
        "2c246afe921cb73cd1d54175f19e94d5ff65c5f0c2f1f565daa836512c364400"
    )
    assert hashing.top_hash([HELLO]) == HELLO
    assert hashing.top_hash([]) == ZERO_HASH
    assert hashing.hashes_of(b"") == [ZERO_HASH]


def test_zero_blocks() -> None:
    assert hashing.block_hash(bytes(BLOCK_SIZE)) == ZERO_HASH
    assert hashing.block_hash(b"") == ZERO_HASH
    assert hashing.is_zero(bytes(BLOCK_SIZE)) and hashing.is_zero(b"")
    assert not hashing.is_zero(bytes(BLOCK_SIZE - 1) + b"\1")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\0",
        b"x",
        b"x\0\0",
        b"\0\0x",
        bytes(70000) + b"y" + bytes(65536 * 3 + 5),
        os.urandom(1000) + bytes(BLOCK_SIZE - 1000),
        b"z" * (65536 * 2) + bytes(65536),
        bytes(BLOCK_SIZE - 1) + b"q",
    ],
)
def test_content_length_matches_rstrip(data: bytes) -> None:
    assert hashing.content_length(data) == len(data.rstrip(b"\0"))
    assert hashing.content_length(memoryview(data)) == len(data.rstrip(b"\0"))
    assert hashing.block_hash(data) == hashlib.sha256(data.rstrip(b"\0")).hexdigest()


def test_three_leaves_pad_with_zero_bytes_not_the_empty_hash() -> None:
    leaves = [hashlib.sha256(bytes([i])).digest() for i in range(3)]
    expected = hashlib.sha256(
        hashlib.sha256(leaves[0] + leaves[1]).digest()
        + hashlib.sha256(leaves[2] + bytes(32)).digest()
    ).hexdigest()
    assert hashing.top_hash([leaf.hex() for leaf in leaves]) == expected


def test_oversized_block_is_refused() -> None:
    with pytest.raises(ValueError):
        hashing.block_hash(bytes(BLOCK_SIZE + 1))


def test_block_names() -> None:
    assert hashing.is_block_name(HELLO)
    assert not hashing.is_block_name(HELLO.upper())
    assert not hashing.is_block_name(HELLO[:-1])
    assert not hashing.is_block_name("../" + HELLO[3:])
