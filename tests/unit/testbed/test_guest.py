import shutil
import subprocess

import pytest

from tests.testbed import guest


def test_initramfs_is_a_newc_archive_that_cpio_reads(tmp_path) -> None:
    if not guest.BUSYBOX.exists() or shutil.which("cpio") is None:
        pytest.skip("busybox-static and cpio are needed")
    path = guest.write_initramfs(tmp_path / "initramfs.cpio")
    listing = subprocess.run(
        ["cpio", "-itv"], input=path.read_bytes(), capture_output=True, check=True
    ).stdout.decode()
    names = [line.split()[-1] for line in listing.splitlines()]
    assert names == ["bin", "dev", "proc", "sys", "dev/console", "bin/busybox", "init"]
    assert "crw-------" in listing  # /dev/console is a character device
    out = tmp_path / "x"
    out.mkdir()
    subprocess.run(["cpio", "-id", "init"], input=path.read_bytes(), cwd=out, check=True,
                   capture_output=True)  # fmt: skip
    assert (out / "init").read_bytes() == guest.INIT
