"""The event post-hook (``instance-{add,start,stop,reboot,remove,modify}-post.d/snf-events``).

Ganeti runs post-hooks only when the opcode succeeded, on the master and the instance's
nodes.  On the master, for a server instance (``snf-<id>``), the hook finds the job it runs
in (Ganeti does not tell hooks: the queue holds one job running this opcode on this
instance), spools a success event and tries to deliver the spool for at most
``[hooks] hook_deliver_seconds``.  It never fails the job: whatever goes wrong is one
warning on stderr and exit status 0; an undelivered event stays in the spool for
``snf-eventd`` (which reports the same opcode under the same id anyway).  A node without a
service token file is not set up for events: the hook does nothing there.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from snf.common.config import load_config
from snf.common.log import setup_from_config

from . import events, jobs
from .eventd import node_names
from .spool import Spool

log = logging.getLogger("snf.hooks.post_hook")


def event_from_env(env: Mapping[str, str], queue: Path) -> events.Event | None:
    """The event for this hook run, or None (and why, logged) when there is none to send."""
    if env.get("GANETI_HOOKS_PHASE") != "post":
        return None
    instance = env.get("GANETI_INSTANCE_NAME") or env.get("GANETI_OP_TARGET", "")
    if not events.INSTANCE.fullmatch(instance):
        return None
    if env.get("GANETI_MASTER") not in node_names():
        return None
    opcode, cluster = env.get("GANETI_OP_CODE", ""), env.get("GANETI_CLUSTER", "")
    found = jobs.find_job(queue, opcode, instance)
    if found is None:
        log.warning("%s on %s: its job is not in %s (snf-eventd reports it)", opcode,
                    instance, queue)  # fmt: skip
        return None
    job, index = found
    return events.build(cluster=cluster, job_id=job["id"], index=index, opcode=opcode,
                        instance=instance, status="success", end_ts=time.time(),
                        source="hook")  # fmt: skip


def run(env: Mapping[str, str], config_dir: Path | None = None) -> None:
    config = load_config(config_dir)
    hooks = config.hooks
    queue = Path(env.get("GANETI_DATA_DIR") or hooks.ganeti_data_dir) / "queue"
    if not hooks.service_token_file.exists():
        if env.get("GANETI_MASTER") in node_names():
            log.warning("no service token at %s: events are off on this node",
                        hooks.service_token_file)  # fmt: skip
        return
    event = event_from_env(env, queue)
    if event is None:
        return
    spool = Spool(hooks.spool_dir, hooks.portal_url, hooks.service_token_file, hooks.timeout)
    spool.put(event)
    started = time.monotonic()
    result = spool.deliver(deadline=started + hooks.hook_deliver_seconds,
                           lock_wait=hooks.hook_deliver_seconds)  # fmt: skip
    if result.error:
        log.warning("job %s %s %s: event spooled, not delivered (%s)", event["job_id"],
                    event["opcode"], event["instance"], result.error)  # fmt: skip
    elif result.busy:
        log.info("job %s: event spooled; another process is delivering", event["job_id"])


def main() -> None:
    """The hook's entry point: always exits 0."""
    try:
        setup_from_config("snf-events-hook", load_config().log)
        run(os.environ)
    except Exception as exc:  # a post-hook must never fail the job
        print(f"snf-events: warning: {type(exc).__name__}: {exc}", file=sys.stderr)
    sys.exit(0)
