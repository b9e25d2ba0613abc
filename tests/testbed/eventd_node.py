"""The update path on a testbed cluster: every node set up to send events to the testbed
portal (a service token and a ``[hooks]`` drop-in in the node's /etc/snf, the post-hooks
installed), and ``snf-eventd`` on the master, without systemd, in the node's namespaces;
its output goes to ``<node state>/snf-eventd.log``.  ``configure`` returns what it replaced,
for ``unconfigure`` to put back (other tests may have set up the same files)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from . import install
from .cluster import Cluster

DROPIN = "60-events.toml"
TOKEN = "service-token"
SPOOL = "/var/lib/snf/events"
STATE = "/var/lib/snf/eventd.state"


def configure(c: Cluster, portal_url: str, token: str) -> dict[Path, bytes | None]:
    saved: dict[Path, bytes | None] = {}
    for node in c.plan.nodes:
        install.install_snf(node)
        etc = node.state_dir / "etc-snf"
        (etc / "conf.d").mkdir(exist_ok=True)
        files = {
            etc / TOKEN: token + "\n",
            etc / "conf.d" / DROPIN: (
                f'[hooks]\nportal_url = "{portal_url}"\nservice_token_file = "/etc/snf/{TOKEN}"\n'
                f'spool_dir = "{SPOOL}"\neventd_state_file = "{STATE}"\n'
            ),
        }
        for path, text in files.items():
            saved[path] = path.read_bytes() if path.exists() else None
            path.write_text(text)
            path.chmod(0o600)
    return saved


def unconfigure(saved: dict[Path, bytes | None]) -> None:
    for path, data in saved.items():
        if data is None:
            path.unlink(missing_ok=True)
        else:
            path.write_bytes(data)


def spool_dir(c: Cluster) -> Path:
    return c.node_path(SPOOL)


def start(c: Cluster) -> subprocess.Popen[bytes]:
    log = open(c.plan.master.state_dir / "snf-eventd.log", "ab")  # noqa: SIM115 - the child's
    with log:
        return subprocess.Popen(
            [*c.master.enter_argv(), "env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
             str(Path(sys.executable).parent / "snf-eventd"), "--config-dir", "/etc/snf"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip


def stop(daemon: subprocess.Popen[bytes]) -> None:
    daemon.terminate()
    try:
        daemon.wait(10)
    except subprocess.TimeoutExpired:
        daemon.kill()
        daemon.wait()
