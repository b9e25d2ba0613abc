"""Install snf's Ganeti-facing folders into testbed nodes, as `make install` does on a host.

The shims get this virtual environment's interpreter (the nodes share the host's
filesystem below their own bind-mounted directories, so they run the code under test).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from . import plan

REPO = Path(__file__).resolve().parents[2]


def _installer():
    spec = importlib.util.spec_from_file_location(
        "install_ganeti_files", REPO / "packaging" / "install_ganeti_files.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def install_snf(node: plan.NodePlan, python: str = sys.executable) -> None:
    """/srv/ganeti is the node's Ganeti libdir here; /etc/ganeti its own directory."""
    installer = _installer()
    libdir, etc = node.state_dir / "srv-ganeti", node.state_dir / "etc-ganeti"
    for folder, where in installer.targets(Path("/L"), Path("/E")).items():
        if where.is_relative_to("/L"):
            target = libdir / where.relative_to("/L")
        else:
            target = etc / where.relative_to("/E/ganeti")
        installer.install_tree(REPO / folder, target, python)
