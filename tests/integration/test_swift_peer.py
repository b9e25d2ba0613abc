"""The benchmarks' peer: OpenStack Swift on one machine in the testbed's services host
(tests/testbed/swift_peer.py), driven with the ``swift`` CLI from inside the namespace.

It uses the services host directly (``namespaces.create_lan()``), not the ``testbed``
fixture: it needs no Ganeti cluster, and must not tear down one that others use.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.conftest import require
from tests.testbed import namespaces, swift_peer


def test_upload_download_delete_then_nothing_is_left(tmp_path: Path) -> None:
    require(os.geteuid() == 0, "the Swift peer needs root (network namespaces)")
    require(swift_peer.installed(), "OpenStack Swift is not installed: no swift-*-server, "
            "swift-ring-builder, memcached or swift CLI (run `make deps`)")  # fmt: skip
    namespaces.create_lan()
    payload = os.urandom(3 << 20)
    src, dst = tmp_path / "src.bin", tmp_path / "dst.bin"
    src.write_bytes(payload)
    peer = swift_peer.start()
    try:
        assert len(swift_peer.processes()) >= len(peer.pids) == 5
        peer.swift("upload", "--object-name", "peer/test.bin", "peer-test", str(src))
        assert peer.swift("list", "peer-test").stdout.split() == ["peer/test.bin"]
        peer.swift("download", "peer-test", "peer/test.bin", "-o", str(dst))
        assert dst.read_bytes() == payload
        peer.swift("delete", "peer-test", "peer/test.bin")
        assert peer.swift("list", "peer-test").stdout.split() == []
        storage_url, token = peer.authenticate()
        assert storage_url.endswith("/v1/AUTH_test") and token
    finally:
        swift_peer.stop()
    assert swift_peer.processes() == []
    assert [pid for pid in peer.pids.values() if Path(f"/proc/{pid}").exists()] == []  # reaped too
    swift_peer.stop()  # idempotent
