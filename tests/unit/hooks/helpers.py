"""Fakes for the hooks' tests: a real HTTP server that plays the portal's /internal/events,
and Ganeti 3.0 job files as the job queue holds them."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class PortalStub:
    """Records the events POSTed to it; ``answers`` (a list of statuses) is consumed one per
    request, then every request gets ``default``."""

    def __init__(self, token: str = "svc-token") -> None:
        self.token = token
        self.received: list[dict[str, Any]] = []
        self.requests = 0
        self.answers: list[int] = []
        self.default = 200
        self.refuse: set[str] = set()  # event ids answered with 400
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                stub.requests += 1
                status = stub.answers.pop(0) if stub.answers else stub.default
                batch = json.loads(body)["events"]
                if self.path != "/internal/events" or self.headers["X-Auth-Token"] != stub.token:
                    status = 403
                elif any(e["id"] in stub.refuse for e in batch):
                    status = 400
                if status < 300:
                    stub.received.extend(batch)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def ids(self) -> list[str]:
        return [e["id"] for e in self.received]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _op(opcode: str, instance: str | None, status: str, result: Any = None,
        end: list[int] | None = None, job_id: int = 1) -> dict[str, Any]:  # fmt: skip
    data: dict[str, Any] = {"dry_run": False, "debug_level": 0, "priority": 0,
                            "depends": None, "comment": None,
                            "reason": [["gnt:library:rlib2:instances", "", 1795570894449093376],
                                       [f"gnt:opcode:{opcode[3:].lower()}",
                                        f"job={job_id};index=0", 1795570894452019000]],
                            "OP_ID": opcode}  # fmt: skip
    if instance is not None:
        data["instance_name"] = instance
    done = status in ("success", "error", "canceled")
    return {"input": data, "status": status, "result": result, "log": [],
            "start_timestamp": [1795570894, 607917], "exec_timestamp": [1795570894, 613566],
            "end_timestamp": end or ([1795570895, 621850] if done else None),
            "priority": 0}  # fmt: skip


def job_file(job_id: int, ops: list[tuple[Any, ...]]) -> dict[str, Any]:
    """A job as Ganeti 3.0 writes ``queue/job-<id>``; ``ops`` are (opcode, instance, status[,
    result])."""
    built = [_op(*op, job_id=job_id) for op in ops]
    done = all(op["status"] in ("success", "error", "canceled") for op in built)
    return {"id": job_id, "ops": built, "start_timestamp": [1795570894, 607917],
            "end_timestamp": [1795570895, 621863] if done else None,
            "received_timestamp": [1795570894, 452019],
            "livelock": f"/var/run/ganeti/livelocks/job_{job_id:06d}_1795570894",
            "process_id": 3638}  # fmt: skip


def write_job(queue: Path, job: dict[str, Any]) -> Path:
    """Write a job file the way Ganeti does (a temporary file renamed into place)."""
    queue.mkdir(parents=True, exist_ok=True)
    temporary = queue / f".job-{job['id']}.tmp"
    temporary.write_text(json.dumps(job))
    temporary.rename(queue / f"job-{job['id']}")
    return queue / f"job-{job['id']}"


FAILED_CREATE = ["OpExecError", [
    "Could not add os for instance snf-3 on node n1.c1.snf.test: OS create script failed "
    "(exited with exit code 1), last lines in the log file:\nsnf-image: create failed: "
    "OSFAMILY windows: snf-image customizes Linux images only"]]  # fmt: skip
