"""Shared by the test providers: append one JSON line describing this call."""

import fcntl
import json
import os
import time

LOG_DIR = "/srv/ganeti/snftest"


def record(kind, action, prefixes=None):
    env = {k: v for k, v in os.environ.items() if prefixes is None or k.startswith(prefixes)}
    os.makedirs(LOG_DIR, exist_ok=True)
    line = json.dumps({"kind": kind, "action": action, "time": time.time(), "env": env})
    with open(os.path.join(LOG_DIR, "calls.jsonl"), "a") as log:
        fcntl.flock(log, fcntl.LOCK_EX)
        log.write(line + "\n")
