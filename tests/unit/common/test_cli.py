"""Tests for snf.common.cli.run_main, in subprocesses to see real exit codes and stderr."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from snf.common.cli import run_main
from snf.common.errors import ConfigError

PROGRAM = """
import argparse
import sys

from snf.common.cli import run_main
from snf.common.errors import CommandFailed, ConfigError, NotFound


def main(argv):
    what = argv[0]
    if what == "ok":
        print("output")
        return None
    if what == "zero":
        return 0
    if what == "three":
        return 3
    if what == "config":
        raise ConfigError("/etc/snf/snf.toml: [store] path: must be an absolute path")
    if what == "multiline":
        raise NotFound("no such\\nthing")
    if what == "command":
        raise CommandFailed(["ip", "link"], 2, "first\\nlast line")
    if what == "bug":
        print("partial output")
        return {}["missing"]
    if what == "bug-empty":
        raise RuntimeError()
    if what == "interrupt":
        raise KeyboardInterrupt
    if what == "exit":
        sys.exit(5)
    parser = argparse.ArgumentParser(prog="snf-test")
    parser.add_argument("--count", type=int)
    parser.parse_args(argv)
    return 0


run_main(main, prog="snf-test")
"""


def run(tmp_path: Path, *args: str, debug: bool = False) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "program.py"
    script.write_text(PROGRAM)
    env = {k: v for k, v in os.environ.items() if k != "SNF_DEBUG"}
    if debug:
        env["SNF_DEBUG"] = "1"
    return subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, env=env, timeout=60
    )


@pytest.mark.parametrize(("what", "code"), [("ok", 0), ("zero", 0), ("three", 3)])
def test_return_value_is_the_exit_code(tmp_path: Path, what: str, code: int) -> None:
    result = run(tmp_path, what)
    assert result.returncode == code
    assert result.stderr == ""


def test_output_is_flushed(tmp_path: Path) -> None:
    assert run(tmp_path, "ok").stdout == "output\n"


def test_snf_error_is_one_line_with_its_exit_code(tmp_path: Path) -> None:
    result = run(tmp_path, "config")
    assert result.returncode == ConfigError.exit_code == 2
    assert result.stderr == (
        "snf-test: error: /etc/snf/snf.toml: [store] path: must be an absolute path\n"
    )


def test_multiline_message_is_kept_on_one_line(tmp_path: Path) -> None:
    result = run(tmp_path, "multiline")
    assert result.returncode == 1
    assert result.stderr == "snf-test: error: no such thing\n"


def test_command_failed(tmp_path: Path) -> None:
    result = run(tmp_path, "command")
    assert result.returncode == 1
    assert result.stderr == "snf-test: error: ip exited with status 2: last line\n"


def test_internal_error(tmp_path: Path) -> None:
    result = run(tmp_path, "bug")
    assert result.returncode == 70
    assert result.stdout == "partial output\n"
    assert result.stderr == (
        "snf-test: internal error: KeyError: 'missing' (set SNF_DEBUG=1 for the traceback)\n"
    )


def test_internal_error_without_message(tmp_path: Path) -> None:
    result = run(tmp_path, "bug-empty")
    assert result.returncode == 70
    assert result.stderr == (
        "snf-test: internal error: RuntimeError (set SNF_DEBUG=1 for the traceback)\n"
    )


def test_internal_error_traceback_with_snf_debug(tmp_path: Path) -> None:
    result = run(tmp_path, "bug", debug=True)
    assert result.returncode == 70
    assert result.stderr.startswith("Traceback (most recent call last):\n")
    assert result.stderr.endswith("snf-test: internal error: KeyError: 'missing'\n")


def test_snf_error_traceback_only_with_snf_debug(tmp_path: Path) -> None:
    assert "Traceback" not in run(tmp_path, "config").stderr
    result = run(tmp_path, "config", debug=True)
    assert result.returncode == 2
    assert "Traceback" in result.stderr
    assert result.stderr.endswith("must be an absolute path\n")


def test_interrupted(tmp_path: Path) -> None:
    result = run(tmp_path, "interrupt")
    assert result.returncode == 130
    assert result.stderr == "snf-test: interrupted\n"


def test_sys_exit_passes_through(tmp_path: Path) -> None:
    result = run(tmp_path, "exit")
    assert (result.returncode, result.stderr) == (5, "")


def test_argparse_usage_error_keeps_argparse_behaviour(tmp_path: Path) -> None:
    result = run(tmp_path, "--count", "many")
    assert result.returncode == 2
    assert result.stderr.startswith("usage: snf-test")
    assert "invalid int value: 'many'" in result.stderr


def test_argparse_help_exits_zero(tmp_path: Path) -> None:
    result = run(tmp_path, "--help")
    assert result.returncode == 0
    assert result.stdout.startswith("usage: snf-test")


def test_explicit_empty_argv_is_not_sys_argv(capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[list[str]] = []

    def main(argv: list[str]) -> int:
        seen.append(argv)
        return 4

    with pytest.raises(SystemExit) as info:
        run_main(main, [], prog="snf-test")
    assert info.value.code == 4
    assert seen == [[]]


def test_in_process_error(capsys: pytest.CaptureFixture[str]) -> None:
    def main(argv: list[str]) -> None:
        raise ConfigError(f"bad: {argv[0]}")

    with pytest.raises(SystemExit) as info:
        run_main(main, ["value"], prog="snf-test")
    assert info.value.code == 2
    assert capsys.readouterr().err == "snf-test: error: bad: value\n"
