"""Tests for snf.common.log: real streams, files and a real Unix syslog socket."""

from __future__ import annotations

import io
import logging
import os
import re
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from snf.common import log
from snf.common.config import LogConfig
from snf.common.errors import ConfigError
from snf.common.log import reset_logging, setup_from_config, setup_logging

LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d{4} "
    r"(?P<program>\S+)\[(?P<pid>\d+)\] (?P<level>[A-Z]+) (?P<logger>\S+): (?P<message>.*)$"
)


@pytest.fixture(autouse=True)
def _clean_logging() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    yield
    reset_logging()
    root.setLevel(level)


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_line_format_and_logger_name() -> None:
    stream = io.StringIO()
    logger = setup_logging("snf-test", stream=stream)
    assert logger.name == "snf.snf-test"
    logger.info("hello %s", "world")
    logging.getLogger("snf.archipelago.store").warning("careful")
    first, second = lines(stream)
    match = LINE.match(first)
    assert match, first
    assert match["program"] == "snf-test"
    assert int(match["pid"]) == os.getpid()
    assert (match["level"], match["logger"], match["message"]) == (
        "INFO",
        "snf.snf-test",
        "hello world",
    )
    match = LINE.match(second)
    assert match, second
    assert (match["level"], match["logger"], match["message"]) == (
        "WARNING",
        "snf.archipelago.store",
        "careful",
    )


def test_level_filters() -> None:
    stream = io.StringIO()
    logger = setup_logging("snf-test", "warning", stream=stream)
    logger.info("not shown")
    logger.debug("not shown")
    logger.error("shown")
    assert [line.split(": ", 1)[1] for line in lines(stream)] == ["shown"]
    assert logging.getLogger().level == logging.WARNING


def test_debug_level_and_case() -> None:
    stream = io.StringIO()
    setup_logging("snf-test", "DEBUG", stream=stream).debug("detail")
    assert lines(stream)[0].endswith("DEBUG snf.snf-test: detail")


def test_bad_level() -> None:
    with pytest.raises(ConfigError, match="log level must be one of 'debug'"):
        setup_logging("snf-test", "verbose")


def test_percent_in_program_name() -> None:
    stream = io.StringIO()
    setup_logging("odd%sname", stream=stream).info("x")
    assert " odd%sname[" in lines(stream)[0]


def test_setup_twice_does_not_duplicate_lines() -> None:
    stream = io.StringIO()
    setup_logging("snf-test", stream=stream)
    logger = setup_logging("snf-test", stream=stream)
    logger.info("once")
    assert len(lines(stream)) == 1


def test_setup_again_replaces_only_its_own_handlers() -> None:
    foreign = io.StringIO()
    foreign_handler = logging.StreamHandler(foreign)
    root = logging.getLogger()
    root.addHandler(foreign_handler)
    try:
        old, new = io.StringIO(), io.StringIO()
        setup_logging("snf-test", stream=old)
        setup_logging("snf-test", stream=new).info("after")
        assert lines(old) == []
        assert len(lines(new)) == 1
        assert foreign_handler in root.handlers
        assert lines(foreign) == ["after"]
        reset_logging()
        assert root.handlers.count(foreign_handler) == 1
    finally:
        root.removeHandler(foreign_handler)


def test_default_is_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("snf-test").info("to stderr")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert LINE.match(captured.err.splitlines()[-1])
    assert captured.err.endswith("INFO snf.snf-test: to stderr\n")


def test_file_instead_of_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "snf.log"
    path.write_text("earlier line\n")
    setup_logging("snf-test", file=path).info("to the file")
    assert capsys.readouterr().err == ""
    text = path.read_text().splitlines()
    assert text[0] == "earlier line"
    assert LINE.match(text[1])
    assert text[1].endswith("INFO snf.snf-test: to the file")


def test_file_reopened_after_rotation(tmp_path: Path) -> None:
    path = tmp_path / "snf.log"
    logger = setup_logging("snf-test", file=path)
    logger.info("one")
    path.rename(tmp_path / "snf.log.1")
    logger.info("two")
    assert path.read_text().endswith("two\n")
    assert (tmp_path / "snf.log.1").read_text().endswith("one\n")


def test_file_and_stream(tmp_path: Path) -> None:
    path, stream = tmp_path / "snf.log", io.StringIO()
    setup_logging("snf-test", file=path, stream=stream).info("both")
    assert path.read_text() == stream.getvalue()


def test_unopenable_file_is_a_config_error(tmp_path: Path) -> None:
    stream = io.StringIO()
    setup_logging("snf-test", stream=stream)
    path = tmp_path / "missing-dir" / "snf.log"
    with pytest.raises(ConfigError) as info:
        setup_logging("snf-test", file=path)
    assert str(info.value) == f"{path}: cannot open log file: No such file or directory"
    # The previous set-up is still in place.
    logging.getLogger("snf.x").info("still here")
    assert lines(stream)[-1].endswith("still here")


@pytest.fixture
def syslog_socket(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[socket.socket, Path]]:
    # Unix socket paths are limited to ~108 bytes: keep it short.
    with tempfile.TemporaryDirectory(prefix="snflog") as directory:
        path = Path(directory) / "log"
        server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        server.bind(os.fspath(path))
        server.settimeout(5)
        monkeypatch.setattr(log, "SYSLOG_SOCKET", path)
        try:
            yield server, path
        finally:
            server.close()


def test_syslog(syslog_socket: tuple[socket.socket, Path]) -> None:
    server, _ = syslog_socket
    stream = io.StringIO()
    setup_logging("snf-test", syslog=True, stream=stream).warning("to syslog")
    data = server.recv(4096).decode()
    assert re.fullmatch(r"<\d+>snf-test\[(\d+)\]: WARNING to syslog\x00?", data), data
    assert f"[{os.getpid()}]" in data
    assert lines(stream)[0].endswith("WARNING snf.snf-test: to syslog")


def test_syslog_setup_twice_sends_once(syslog_socket: tuple[socket.socket, Path]) -> None:
    server, _ = syslog_socket
    setup_logging("snf-test", syslog=True, stream=io.StringIO())
    setup_logging("snf-test", syslog=True, stream=io.StringIO()).info("once")
    assert "once" in server.recv(4096).decode()
    server.settimeout(0.2)
    with pytest.raises(TimeoutError):
        server.recv(4096)


def test_missing_syslog_socket_warns_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(log, "SYSLOG_SOCKET", tmp_path / "no-log")
    stream = io.StringIO()
    setup_logging("snf-test", syslog=True, stream=stream).info("still logged")
    missing = tmp_path / "no-log"
    err = capsys.readouterr().err
    assert err == f"snf-test: warning: not logging to syslog: {missing} does not exist\n"
    assert lines(stream)[0].endswith("still logged")


def test_setup_from_config(tmp_path: Path) -> None:
    path = tmp_path / "snf.log"
    logger = setup_from_config("snf-test", LogConfig(level="debug", file=path))
    logger.debug("from config")
    assert path.read_text().endswith("DEBUG snf.snf-test: from config\n")
