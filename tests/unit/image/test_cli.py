"""snf-image's operator command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from snf.common.errors import InvalidInput
from snf.image.cli import main


def test_verify_accepts_good_parameters(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--config-dir", str(tmp_path), "verify", "img_id=map:img-1", "img_format=diskdump"]
    assert main(argv) == 0
    assert capsys.readouterr().out == "ok\n"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (["img_id=map:img-1", "img_format=vmdk"], "img_format 'vmdk'"),
        (["img_id=relative/path", "img_format=diskdump"], "img_id"),
        (["img_id"], "KEY=VALUE"),
    ],
)
def test_verify_refuses_bad_parameters(tmp_path: Path, params: list[str], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        main(["--config-dir", str(tmp_path), "verify", *params])


def test_errors_are_one_line_on_stderr(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "snf.image.cli", "--config-dir", str(tmp_path), "verify",
         "img_id=map:x", "img_format=vmdk"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("snf-image: error: ")
