"""The durable event spool: one file per event in ``[hooks] spool_dir``, delivered in order.

Writing: a temporary file (name starting with a dot), written, fsynced, renamed into place,
and the directory fsynced: once :meth:`Spool.put` returns, the event survives a crash or a
power cut, and a half-written event is never seen (leftover temporaries are removed).  File
names start with the time in nanoseconds, so the spool is read back in the order events were
written, by every process that writes into it (the post-hooks and ``snf-eventd``).

Delivering: :meth:`Spool.deliver` takes the spool's lock (one deliverer at a time, so the
order holds), POSTs the oldest events in batches to ``<portal_url>/internal/events`` with
the service token, and removes them once the portal answered 2xx.  On any other answer, or no
answer, it stops at the first undelivered event and keeps it (and everything after it): the
caller tries again later (:class:`Backoff`).  An event the portal refuses as malformed (400)
would block the spool for ever: it is moved to ``rejected/`` and logged.  The portal treats
events idempotently, so an event sent twice (a crash between the answer and the removal) is
harmless.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from . import events
from .events import BadEvent, Event

log = logging.getLogger(__name__)
BATCH = 100
PATH = "/internal/events"
_counter = itertools.count()


class DeliveryError(Exception):
    """The portal did not take the events (unreachable, refused, or answered an error)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Delivery:
    sent: int = 0
    rejected: int = 0
    left: int = 0
    error: str = ""
    busy: bool = False  # another process holds the lock and is delivering


class Backoff:
    """Exponential delay between failed deliveries: first, twice that, ... up to ceiling."""

    def __init__(self, first: float = 1.0, ceiling: float = 60.0) -> None:
        self.first, self.ceiling = first, ceiling
        self.delay = 0.0
        self.next_try = 0.0

    def failed(self, now: float) -> float:
        self.delay = min(self.ceiling, self.delay * 2 if self.delay else self.first)
        self.next_try = now + self.delay
        return self.delay

    def succeeded(self) -> None:
        self.delay, self.next_try = 0.0, 0.0

    def due(self, now: float) -> bool:
        return now >= self.next_try


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    def __init__(
        self, directory: Path, portal_url: str, token_file: Path, timeout: float = 5.0
    ) -> None:
        self.directory = directory
        self.url = portal_url.rstrip("/") + PATH
        self.token_file = token_file
        self.timeout = timeout
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    # --- writing ---------------------------------------------------------------------------

    def put(self, event: Event) -> Path:
        """Store ``event`` durably; return its file."""
        name = f"{time.time_ns():020d}-{os.getpid()}-{next(_counter):06d}.json"
        temporary = self.directory / f".{name}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, events.dumps(event))
            os.fsync(fd)
        finally:
            os.close(fd)
        final = self.directory / name
        os.rename(temporary, final)
        _fsync_dir(self.directory)
        return final

    # --- reading ---------------------------------------------------------------------------

    def pending(self) -> list[Path]:
        """The spooled events, oldest first."""
        return sorted(
            p for p in self.directory.iterdir() if p.suffix == ".json" and p.name[0] != "."
        )

    def clean(self, older_than: float = 3600.0) -> int:
        """Remove temporaries a crashed writer left (older than ``older_than`` seconds, so
        that a write in progress is never removed)."""
        removed = 0
        now = time.time()
        for path in self.directory.glob(".*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                if now - path.stat().st_mtime > older_than:
                    path.unlink()
                    removed += 1
        return removed

    # --- delivering ------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self, wait: float) -> Iterator[bool]:
        fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            deadline = time.monotonic() + wait
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        yield False
                        return
                    time.sleep(0.05)
            yield True
        finally:
            os.close(fd)

    def deliver(self, deadline: float | None = None, lock_wait: float = 0.0) -> Delivery:
        """Send what is spooled, oldest first, until done, an error, or ``deadline``
        (``time.monotonic()``)."""
        result = Delivery()
        with self._locked(lock_wait) as locked:
            if not locked:
                result.busy = True
                result.left = len(self.pending())
                return result
            queue = self.pending()
            while queue and (deadline is None or time.monotonic() < deadline):
                batch, queue = queue[:BATCH], queue[BATCH:]
                try:
                    self._send_batch(batch, result)
                except DeliveryError as exc:
                    result.error = str(exc)
                    queue = batch + queue
                    break
            result.left = len([p for p in queue if p.exists()])
        return result

    def _load(self, paths: list[Path], result: Delivery) -> list[tuple[Path, Event]]:
        loaded = []
        for path in paths:
            try:
                loaded.append((path, events.loads(path.read_bytes())))
            except FileNotFoundError:
                continue  # delivered by an earlier holder of the lock
            except BadEvent as exc:
                self._reject(path, str(exc), result)
        return loaded

    def _send_batch(self, paths: list[Path], result: Delivery) -> None:
        loaded = self._load(paths, result)
        if not loaded:
            return
        try:
            self.post([event for _, event in loaded])
        except DeliveryError as exc:
            if exc.status != 400:
                raise
            # Some event of the batch is refused: find it, one by one.
            for path, event in loaded:
                try:
                    self.post([event])
                except DeliveryError as one:
                    if one.status != 400:
                        raise
                    self._reject(path, str(one), result)
                    continue
                self._remove(path, result)
            return
        for path, _ in loaded:
            self._remove(path, result)

    def _remove(self, path: Path, result: Delivery) -> None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        result.sent += 1

    def _reject(self, path: Path, why: str, result: Delivery) -> None:
        rejected = self.directory / "rejected"
        rejected.mkdir(mode=0o700, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.rename(path, rejected / path.name)
        result.rejected += 1
        log.error("event %s refused, moved to %s: %s", path.name, rejected, why)

    def token(self) -> str:
        try:
            token = self.token_file.read_text().strip()
        except OSError as exc:
            raise DeliveryError(f"cannot read the service token: {exc}") from None
        if not token:
            raise DeliveryError(f"the service token file {self.token_file} is empty")
        return token

    def post(self, batch: list[Event]) -> None:
        """POST ``batch`` to the portal; :class:`DeliveryError` unless it answers 2xx."""
        body = json.dumps({"events": batch}).encode()
        request = urllib.request.Request(
            self.url, data=body, method="POST",
            headers={"Content-Type": "application/json", "X-Auth-Token": self.token()},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                answer.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read(300).decode(errors="replace").strip()
            raise DeliveryError(f"{self.url}: HTTP {exc.code}: {detail}", exc.code) from None
        except (OSError, ValueError) as exc:  # URLError, timeouts, resets
            reason = getattr(exc, "reason", exc)
            raise DeliveryError(f"{self.url}: {reason}") from None
