"""snf-eventd: report the end of every Ganeti job on a server to the portal.

Runs on every master candidate and acts only on the master (``ssconf_master_node`` is this
node's name; checked every few seconds, so it follows a master failover).  It watches
Ganeti's job queue (``<ganeti_data_dir>/queue/job-*``, inotify; every ``rescan`` seconds, and
after an inotify overflow, the whole directory is read again) and, for each finished job,
spools one event per ``OP_INSTANCE_*`` opcode on an ``snf-*`` instance (:mod:`.jobs`),
failed and canceled ones included (they run no post-hook), then delivers the spool
(:mod:`.spool`), retrying with a growing delay while the portal does not answer.

A job is reported once: the ids of the finished jobs already reported are kept in
``eventd_state_file``, written after their events are spooled (a crash in between reports
them again, which the portal ignores); ids of jobs Ganeti has archived are forgotten.  On
the first start every finished job still in the queue is reported.

Usage: ``snf-eventd [--config-dir DIR] [--once] [--poll]``.  ``--once`` reads the queue,
delivers what it can and exits (status 1 if events are left); ``--poll`` does without
inotify.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import select
import signal
import socket
import time
from pathlib import Path
from types import FrameType

from snf.common.cli import run_main
from snf.common.config import HooksConfig, load_config
from snf.common.inotify import IN_Q_OVERFLOW, Watch
from snf.common.log import setup_from_config

from . import jobs
from .spool import Backoff, Spool

log = logging.getLogger("snf.hooks.eventd")
MASTER_CHECK = 5.0


def node_names() -> set[str]:
    """The names this node may have in Ganeti (it uses the FQDN)."""
    return {socket.getfqdn(), socket.gethostname()}


def read_ssconf(data_dir: Path, key: str) -> str:
    try:
        return (data_dir / f"ssconf_{key}").read_text().strip()
    except OSError:
        return ""


class Seen:
    """The finished jobs already reported, kept in a small JSON file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.ids: set[int] = set()
        try:
            value = json.loads(path.read_text())
            self.ids = {int(i) for i in value.get("reported", [])}
        except FileNotFoundError:
            pass
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            log.warning("state file %s unreadable (%s): starting afresh", path, exc)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.tmp")
        with open(temporary, "w") as out:
            json.dump({"reported": sorted(self.ids)}, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, self.path)

    def forget_missing(self, present: set[int]) -> None:
        self.ids &= present


class EventDaemon:
    def __init__(self, config: HooksConfig, *, poll: bool = False, rescan: float = 30.0) -> None:
        self.config = config
        self.queue = config.ganeti_data_dir / "queue"
        self.spool = Spool(config.spool_dir, config.portal_url, config.service_token_file,
                           config.timeout)  # fmt: skip
        self.seen = Seen(config.eventd_state_file)
        self.backoff = Backoff(1.0, 30.0)
        self.rescan_every = rescan
        self.poll = poll
        self.watch: Watch | None = None
        self.stopping = False
        self.master = False
        self.cluster = ""
        self._next_master_check = 0.0
        self._announced = False
        self._last_scan = 0.0

    # --- the master role ---------------------------------------------------------------------

    def check_master(self, now: float) -> bool:
        if now < self._next_master_check:
            return self.master
        self._next_master_check = now + MASTER_CHECK
        data = self.config.ganeti_data_dir
        master = read_ssconf(data, "master_node")
        was, self.master = self.master, bool(master) and master in node_names()
        self.cluster = read_ssconf(data, "cluster_name")
        if self.master and not was:
            log.info("this node is the master of %s: watching %s", self.cluster, self.queue)
            self._last_scan = 0.0  # catch up on what finished meanwhile
            self._open_watch()
        elif was and not self.master:
            log.info("this node is no longer the master (%s is): idle", master or "nobody")
            self._close_watch()
        elif not self.master and not self._announced:
            log.info("not the master (%s is): idle", master or "no cluster")
        self._announced = True
        return self.master

    def _open_watch(self) -> None:
        if self.poll or self.watch is not None:
            return
        try:
            watch = Watch()
            watch.add(str(self.queue))
        except OSError as exc:
            log.warning("no inotify (%s): reading the queue every second", exc)
            self.poll = True
            return
        self.watch = watch

    def _close_watch(self) -> None:
        if self.watch is not None:
            self.watch.close()
            self.watch = None

    # --- reading jobs ------------------------------------------------------------------------

    def job(self, number: int) -> int:
        """Report job ``number`` if it has finished and was not reported; the events spooled."""
        if number in self.seen.ids:
            return 0
        try:
            job = jobs.parse((self.queue / f"job-{number}").read_bytes())
        except FileNotFoundError:
            return 0  # archived meanwhile
        except (OSError, jobs.BadJob) as exc:
            log.warning("job %d: unreadable job file (%s): skipped", number, exc)
            self.seen.ids.add(number)
            return 0
        if not jobs.finished(job):
            return 0
        found = jobs.job_events(job, self.cluster)
        for event in found:
            self.spool.put(event)
            why = f": {event['message']}" if event["message"] else ""
            log.info("job %d: %s %s %s%s", number, event["opcode"], event["instance"],
                     event["status"], why)  # fmt: skip
        self.seen.ids.add(number)
        return len(found)

    def scan(self) -> int:
        """Read the whole queue directory, oldest job first."""
        try:
            names = os.listdir(self.queue)
        except OSError as exc:
            log.warning("cannot read the job queue %s: %s", self.queue, exc)
            return 0
        numbers = sorted(n for name in names if (n := jobs.job_number(name)) is not None)
        self.seen.forget_missing(set(numbers))
        spooled = sum(self.job(n) for n in numbers)
        self.seen.save()
        self._last_scan = time.monotonic()
        return spooled

    def changed(self) -> int:
        """The jobs inotify reports changed (everything after an overflow)."""
        assert self.watch is not None
        numbers: set[int] = set()
        for mask, _, name in self.watch.events():
            if mask & IN_Q_OVERFLOW:
                return self.scan()
            if (n := jobs.job_number(name)) is not None:
                numbers.add(n)
        spooled = sum(self.job(n) for n in sorted(numbers))
        if numbers:
            self.seen.save()
        return spooled

    # --- delivering --------------------------------------------------------------------------

    def deliver(self, now: float) -> int:
        """Deliver the spool if it is time; return the number of events left."""
        if not self.backoff.due(now):
            return -1
        result = self.spool.deliver(deadline=now + 30.0)
        if result.sent:
            log.info("delivered %d events (%d left)", result.sent, result.left)
        if result.error:
            delay = self.backoff.failed(now)
            log.warning("%s: %d events wait, next try in %.0f s", result.error, result.left,
                        delay)  # fmt: skip
        elif not result.busy:
            self.backoff.succeeded()
        return result.left

    # --- running -----------------------------------------------------------------------------

    def once(self) -> int:
        """One pass: read the queue if master, deliver; the number of events left."""
        self.check_master(time.monotonic())
        if self.master:
            self.scan()
        self.spool.clean()
        result = self.spool.deliver(deadline=time.monotonic() + 60.0)
        if result.sent:
            log.info("delivered %d events", result.sent)
        if result.error:
            log.warning("%s: %d events left in %s", result.error, result.left,
                        self.spool.directory)  # fmt: skip
        return result.left

    def run(self) -> None:
        self.spool.clean()
        while not self.stopping:
            now = time.monotonic()
            if self.check_master(now):
                if self.watch is None or now - self._last_scan >= self.rescan_every:
                    self.scan()
                else:
                    self.changed()
            if self.spool.pending():
                self.deliver(time.monotonic())
            self._wait()
        self._close_watch()

    def _wait(self) -> None:
        timeout = 1.0
        if self.backoff.next_try:
            timeout = max(0.05, min(timeout, self.backoff.next_try - time.monotonic()))
        if self.watch is None:
            time.sleep(timeout)
            return
        with contextlib.suppress(InterruptedError):
            select.select([self.watch.fd], [], [], timeout)

    def stop(self, signum: int = 0, frame: FrameType | None = None) -> None:
        self.stopping = True


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="snf-eventd", description=__doc__.split("\n")[0])
    parser.add_argument("--config-dir", type=Path, help="default: $SNF_CONFIG_DIR or /etc/snf")
    parser.add_argument("--once", action="store_true", help="one pass, then exit")
    parser.add_argument("--poll", action="store_true", help="read the queue every second")
    args = parser.parse_args(argv)
    config = load_config(args.config_dir)
    setup_from_config("snf-eventd", config.log)
    daemon = EventDaemon(config.hooks, poll=args.poll)
    if args.once:
        return 1 if daemon.once() else 0
    signal.signal(signal.SIGTERM, daemon.stop)
    signal.signal(signal.SIGINT, daemon.stop)
    log.info("started: spool %s, portal %s", config.hooks.spool_dir, config.hooks.portal_url)
    daemon.run()
    log.info("stopped")
    return 0


def cli() -> None:
    run_main(main, prog="snf-eventd")
