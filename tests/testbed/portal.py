"""The portal, running under gunicorn in the testbed's services host (192.0.2.1:8080).

``start()`` writes its configuration under /var/lib/snf-testbed/portal (SQLite by default,
or the database URL given; the ``dir`` block store, or RADOS through the ceph.conf given),
upgrades the schema, starts gunicorn detached inside the lan namespace and waits until it
answers; ``stop()`` ends it.  Clients reach it only from inside the testbed
(``cluster.lan().run(...)`` or ``.call(...)``); so does the ``snf-portal`` CLI, which may
need the testbed's PostgreSQL or Ceph.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from . import plan
from .cluster import lan
from .namespaces import CLEAN_ENV

PORT = 8080
BASE_URL = f"http://{plan.SVC_ADDRESS}:{PORT}"
VENV_BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Portal:
    base_url: str
    config_dir: Path
    pid: int

    @property
    def outbox(self) -> Path:
        """Where the portal's mail goes (one file per message)."""
        return self.config_dir.parent / "outbox"

    def snf_portal(self, *argv: str, input: str | None = None) -> str:
        """Run the snf-portal CLI against this portal's configuration (inside the lan
        namespace, where its database and store are); return stdout."""
        env = {**CLEAN_ENV, "SNF_CONFIG_DIR": str(self.config_dir)}
        proc = subprocess.run([*lan().enter_argv(), "env", "-i",
                               *(f"{k}={v}" for k, v in env.items()),
                               str(VENV_BIN / "snf-portal"), *argv], input=input,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"snf-portal {' '.join(argv)}: {proc.stderr.strip()}")
        return proc.stdout

    def spawn(self, *argv: str, log: Path) -> subprocess.Popen[bytes]:
        """Start a long-running ``snf-portal`` command (the reconciler) next to the portal;
        the caller ends it."""
        env = {**CLEAN_ENV, "SNF_CONFIG_DIR": str(self.config_dir)}
        out = open(log, "ab")  # noqa: SIM115 - handed to the child
        with out:
            return subprocess.Popen([*lan().enter_argv(), "env", "-i",
                                     *(f"{k}={v}" for k, v in env.items()),
                                     str(VENV_BIN / "snf-portal"), *argv],
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                    start_new_session=True)  # fmt: skip


def _probe(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def start(
    database_url: str | None = None,
    base_url: str = BASE_URL,
    workers: int = 2,
    ceph_conf: Path | None = None,
    extra_config: str = "",
) -> Portal:
    """Start the portal: on ``database_url`` (default: SQLite under the state directory) and
    on the ``dir`` block store the testbed's Ganeti nodes use too, or with ``ceph_conf`` on
    RADOS (the testbed Ceph's pools ``blocks`` and ``maps``); ``extra_config`` is appended
    to its snf.toml."""
    stop()
    root = plan.STATE_DIR / "portal"
    etc = root / "etc"
    etc.mkdir(parents=True, exist_ok=True)
    url = database_url or f"sqlite:///{root / 'portal.db'}"
    if ceph_conf is None:
        store = f'[store]\npath = "{plan.SHARED_STORE}"\n'
    else:
        store = f'[store]\nbackend = "rados"\nceph_conf = "{ceph_conf}"\n'
    (etc / "snf.toml").write_text(
        f'[portal]\nbind = "{plan.SVC_ADDRESS}:{PORT}"\nbase_url = "{base_url}"\n'
        f'database_url = "{url}"\nsecret_key_file = "{root / "secret"}"\nworkers = {workers}\n'
        f'[mail]\noutbox_dir = "{root / "outbox"}"\n' + store + extra_config
    )
    env = {**CLEAN_ENV, "SNF_CONFIG_DIR": str(etc)}
    # Inside the lan namespace: the database may be the testbed's PostgreSQL.
    subprocess.run([*lan().enter_argv(), "env", "-i", *(f"{k}={v}" for k, v in env.items()),
                    str(VENV_BIN / "snf-portal"), "db", "upgrade"], check=True,
                   capture_output=True, timeout=120)  # fmt: skip
    log = open(root / "portal.log", "ab")  # noqa: SIM115 - handed to gunicorn
    proc = subprocess.Popen(
        [*lan().enter_argv(), "env", "-i", *(f"{k}={v}" for k, v in env.items()),
         str(VENV_BIN / "snf-portal"), "serve"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
    )  # fmt: skip
    (root / "portal.pid").write_text(str(proc.pid))
    try:
        lan().call(_probe, f"{BASE_URL}/identity/v3", 30.0)
    except Exception as exc:
        tail = "\n".join((root / "portal.log").read_text(errors="replace").splitlines()[-40:])
        raise RuntimeError(f"the portal did not answer: {exc}\nportal.log:\n{tail}") from None
    return Portal(base_url, etc, proc.pid)


def stop() -> None:
    pidfile = plan.STATE_DIR / "portal" / "portal.pid"
    try:
        pid = int(pidfile.read_text())
    except (FileNotFoundError, ValueError):
        return
    try:
        os.killpg(pid, signal.SIGTERM)
        for _ in range(100):
            os.killpg(pid, 0)
            time.sleep(0.05)
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    pidfile.unlink(missing_ok=True)
