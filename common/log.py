"""Logging for every snf program, set from the ``[log]`` section.

A program calls :func:`setup_logging` (or :func:`setup_from_config`) once, early; library
code only does ``logging.getLogger(__name__)``. Lines look like::

    2024-05-01T12:00:00.123+0200 snf-eventd[4242] INFO snf.hooks.eventd: job 17 finished

and go to standard error, or to ``file`` (reopened when logrotate moves it). With
``syslog = true`` they also go to the local syslog daemon (``/dev/log``) as
``snf-eventd[4242]: INFO job 17 finished``; if there is no ``/dev/log`` (a container, a
test namespace) syslog is skipped with one warning on standard error.

Calling the set-up again (a daemon re-reading its configuration) replaces the handlers it
installed before, and only those: lines are never written twice.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from snf.common.errors import ConfigError

if TYPE_CHECKING:
    from snf.common.config import LogConfig

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
SYSLOG_SOCKET = Path("/dev/log")

_installed: list[logging.Handler] = []


class _Formatter(logging.Formatter):
    """Local time as ``2024-05-01T12:00:00.123+0200``."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        stamp = self.converter(record.created)
        seconds = time.strftime("%Y-%m-%dT%H:%M:%S", stamp)
        return f"{seconds}.{int(record.msecs):03d}{time.strftime('%z', stamp)}"


def setup_logging(
    program: str,
    level: str = "info",
    *,
    file: Path | None = None,
    syslog: bool = False,
    stream: TextIO | None = None,
) -> logging.Logger:
    """Configure the root logger for ``program`` and return the logger ``snf.<program>``.

    :param program: the name shown in every line (``snf-eventd``, ``archipelago-create``).
    :param level: ``debug``, ``info``, ``warning`` or ``error``.
    :param file: append to this file instead of writing to standard error.
    :param syslog: also send every line to syslog through ``/dev/log``.
    :param stream: write to this stream (as well as to ``file``, if given).
    :raises ConfigError: an unknown level, or a log file that cannot be opened.
    """
    if level.lower() not in LEVELS:
        choices = ", ".join(repr(name) for name in LEVELS)
        raise ConfigError(f"log level must be one of {choices}, not {level!r}")
    escaped = program.replace("%", "%%")
    line_format = f"%(asctime)s {escaped}[%(process)d] %(levelname)s %(name)s: %(message)s"
    handlers: list[logging.Handler] = []
    if file is not None:
        try:
            handlers.append(logging.handlers.WatchedFileHandler(file, encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"{file}: cannot open log file: {exc.strerror or exc}") from exc
    if stream is not None or file is None:
        handlers.append(logging.StreamHandler(stream if stream is not None else sys.stderr))
    for handler in handlers:
        handler.setFormatter(_Formatter(line_format))
    if syslog:
        handler = _syslog_handler(program)
        if handler is not None:
            handler.setFormatter(
                logging.Formatter(f"{escaped}[%(process)d]: %(levelname)s %(message)s")
            )
            handlers.append(handler)

    reset_logging()
    root = logging.getLogger()
    root.setLevel(LEVELS[level.lower()])
    for handler in handlers:
        root.addHandler(handler)
        _installed.append(handler)
    return logging.getLogger(f"snf.{program}")


def setup_from_config(program: str, log_section: LogConfig) -> logging.Logger:
    """:func:`setup_logging` with the values of the ``[log]`` section."""
    return setup_logging(
        program, log_section.level, file=log_section.file, syslog=log_section.syslog
    )


def reset_logging() -> None:
    """Remove and close the handlers :func:`setup_logging` installed (and only those)."""
    root = logging.getLogger()
    while _installed:
        handler = _installed.pop()
        root.removeHandler(handler)
        handler.close()


def _syslog_handler(program: str) -> logging.Handler | None:
    """A handler for the local syslog socket, or None (and one warning) if there is none."""
    try:
        if not SYSLOG_SOCKET.exists():
            raise FileNotFoundError(f"{SYSLOG_SOCKET} does not exist")
        return logging.handlers.SysLogHandler(address=os.fspath(SYSLOG_SOCKET))
    except OSError as exc:
        reason = f"{SYSLOG_SOCKET}: {exc.strerror}" if exc.strerror else str(exc)
        print(f"{program}: warning: not logging to syslog: {reason}", file=sys.stderr)
        return None
