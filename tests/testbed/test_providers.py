"""Install the test-only ExtStorage provider, OS definition and hooks into testbed nodes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from . import plan

SOURCE = Path(__file__).parent / "providers"
RECORDER = SOURCE / "snftest_record.py"
EXT_PROVIDER = "snftest-loop"
OS_NAME = "snftest+default"
#: hook path -> the test hooks installed there
HOOKS = {
    "instance-add-pre.d": ["deny-pre"],
    "instance-add-post.d": ["record"],
    "instance-remove-post.d": ["record"],
}


def install(node: plan.NodePlan) -> None:
    """Copy the providers into the node's /srv/ganeti and hooks into its /etc/ganeti/hooks."""
    srv = node.state_dir / "srv-ganeti"
    for kind, name in (("extstorage", EXT_PROVIDER), ("os", "snftest")):
        target = srv / kind / name
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(SOURCE / kind / name, target, symlinks=False)
    hooks = node.state_dir / "etc-ganeti" / "hooks"
    for hpath, scripts in HOOKS.items():
        (hooks / hpath).mkdir(parents=True, exist_ok=True)
        shutil.copy2(RECORDER, hooks / hpath / RECORDER.name)
        for script in scripts:
            shutil.copy2(SOURCE / "hooks" / script, hooks / hpath / f"50-snftest-{script}")


def calls(node: plan.NodePlan) -> list[dict[str, Any]]:
    """Every recorded call on the node, oldest first."""
    path = node.state_dir / "srv-ganeti" / "snftest" / "calls.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def clear_calls(node: plan.NodePlan) -> None:
    (node.state_dir / "srv-ganeti" / "snftest" / "calls.jsonl").unlink(missing_ok=True)
