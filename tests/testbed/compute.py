"""A cloud on the testbed for compute tests: the testbed portal with a cluster registered as a
backend, flavors, a user of one's own, an image uploaded and registered, and requests made
from inside the services host.  Every step is idempotent across test modules, which share
the session's portal (backends and flavors are created once; each module has its own user,
so quotas do not mix)."""

from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import images, install
from .cluster import Cluster, lan

MiB = 1 << 20
PASSWORD = "compute test password"


@dataclass
class Cloud:
    """One user's view of the testbed cloud."""

    portal: Any
    url: str
    uuid: str
    email: str
    token: str
    #: What the test set up for this user: a flavor id and an image id.
    flavor: int = 0
    image: str = ""

    def api(self, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, dict, Any]:
        """One request to the portal, from inside the services host."""
        return lan().call(http, method, self.url + path, self.token, body, **kw)

    def quota_usage(self, resource: str) -> int:
        _, _, body = self.api("GET", "/account/v1.0/quotas")
        return body[self.uuid][resource]["usage"]

    def wait_status(self, server_id: int, want: str, timeout: float = 180) -> dict[str, Any]:
        """Poll the server until its status is ``want``; fail early on an unexpected ERROR."""
        deadline = time.monotonic() + timeout
        while True:
            status, _, body = self.api("GET", f"/compute/v2.0/servers/{server_id}")
            assert status == 200, body
            server = body["server"]
            if server["status"] == want:
                return server
            settled = not server["SNF:task_state"]
            assert server["status"] != "ERROR" or want == "ERROR" or not settled, server.get(
                "fault"
            )
            if time.monotonic() > deadline:
                raise AssertionError(f"server {server_id} is {server['status']}, not {want}")
            time.sleep(0.5)

    def create_server(self, name: str, image: str, flavor: int, **extra: Any) -> dict[str, Any]:
        body = {"server": {"name": name, "imageRef": image, "flavorRef": flavor, **extra}}
        status, _, answer = self.api("POST", "/compute/v2.0/servers", body)
        assert status == 202, answer
        return answer["server"]

    def delete_server(self, server_id: int) -> None:
        status, _, answer = self.api("DELETE", f"/compute/v2.0/servers/{server_id}")
        assert status == 204, answer
        self.wait_status(server_id, "DELETED")

    def upload(self, container: str, name: str, data: bytes) -> None:
        assert self.api("PUT", f"/object-store/v1/{self.uuid}/{container}", data=b"")[0] in (
            201,
            202,
        )
        binary = {"Content-Type": "application/octet-stream"}
        path = f"/object-store/v1/{self.uuid}/{container}/{name}"
        status, _, body = self.api("PUT", path, data=data, headers=binary)
        assert status == 201, body

    def register_image(self, name: str, container: str, obj: str, **props: str) -> str:
        headers = {"X-Image-Meta-Name": name, "X-Image-Meta-Disk-Format": "diskdump",
                   "X-Image-Meta-Container-Format": "bare",
                   "X-Image-Meta-Location": f"pithos://{self.uuid}/{container}/{obj}"}  # fmt: skip
        headers |= {f"X-Image-Meta-Property-{k}": v for k, v in props.items()}
        status, got, body = self.api("POST", "/image/v1.0/images/", headers=headers, data=b"")
        assert status == 200, body
        return {k.lower(): v for k, v in got.items()}["x-image-meta-id"]


def http(method: str, url: str, token: str, body: Any = None,
         headers: dict[str, str] | None = None, data: bytes | None = None,
         ) -> tuple[int, dict[str, str], Any]:  # fmt: skip
    """One request (run it inside the testbed); the JSON answer decoded when there is one."""
    headers = {"X-Auth-Token": token, **(headers or {})}
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            status, got, raw = answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as err:
        status, got, raw = err.code, dict(err.headers), err.read()
    try:
        decoded = json.loads(raw) if raw else None
    except ValueError:
        decoded = raw.decode(errors="replace")
    return status, got, decoded


def backend_name(cluster: Cluster) -> str:
    return f"c{cluster.plan.index}"


def ensure_backend(portal: Any, cluster: Cluster, hypervisor: str = "fake") -> str:
    """Register ``cluster`` (once), with snf installed on its nodes and snf-image in direct
    mode (the helper VM is tested on its own)."""
    name = backend_name(cluster)
    listed = [line.split("\t")[0] for line in portal.snf_portal("backend", "list").splitlines()]
    if name in listed:
        return name
    for node in cluster.plan.nodes:
        install.install_snf(node)
        dropins = node.state_dir / "etc-snf" / "conf.d"
        dropins.mkdir(exist_ok=True)
        (dropins / "image.toml").write_text('[image]\nmode = "direct"\n')
    info = cluster.info
    portal.snf_portal("backend", "add", name, "--host", info.address, "--user", info.rapi_user,
                      "--password-stdin", "--pin", info.rapi_pin, "--hypervisor", hypervisor,
                      input=info.rapi_password + "\n")  # fmt: skip
    return name


def ensure_flavor(portal: Any, name: str, vcpus: int, ram: int, disk: int,
                  template: str = "ext_archipelago") -> int:  # fmt: skip
    for line in portal.snf_portal("flavor", "list").splitlines():
        fields = line.split("\t")
        if fields[1] == name:
            return int(fields[0])
    return int(portal.snf_portal("flavor", "add", name, "--vcpus", str(vcpus), "--ram",
                                 str(ram), "--disk", str(disk), "--template",
                                 template).strip())  # fmt: skip


def new_user(portal: Any, email: str) -> Cloud:
    uuid = portal.snf_portal("user", "add", email, "--name", email.split("@")[0], "--active",
                             "--password-stdin", input=PASSWORD + "\n").strip()  # fmt: skip
    token = portal.snf_portal("token", "issue", email).strip()
    return Cloud(portal=portal, url=portal.base_url, uuid=uuid, email=email, token=token)


def user_with_image(portal: Any, prefix: str, folder: Path, image_name: str = "linux",
                    flavor: tuple[str, int, int, int] = ("small", 1, 128, 1)) -> Cloud:  # fmt: skip
    """A new user (``<prefix>-<random>@example.test``) with a flavor (name, vcpus, MiB,
    GiB) and the small Linux image uploaded to ``images/linux.raw`` and registered."""
    cloud = new_user(portal, f"{prefix}-{uuid.uuid4().hex[:8]}@example.test")
    cloud.flavor = ensure_flavor(portal, *flavor)
    cloud.upload("images", "linux.raw", linux_image(folder).read_bytes())
    cloud.image = cloud.register_image(image_name, "images", "linux.raw")
    return cloud


def remove_tree(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


def linux_image(folder: Path, size: int = 64 * MiB) -> Path:
    """A small bootable-looking Linux disk image (ext4 root with the test payload)."""
    folder.mkdir(parents=True, exist_ok=True)
    raw = folder / "linux.raw"
    if not raw.exists():
        images.build_disk(raw, size, images.build_root(folder / "root", payload=8 * MiB))
    return raw


@contextmanager
def only_backend(portal: Any, name: str) -> Iterator[None]:
    """Drain every other backend while the block runs (so that new servers land on the
    cluster the test inspects), then put back what was open."""
    opened = []
    for line in portal.snf_portal("backend", "list").splitlines():
        other, _, state = line.split("\t")[:3]
        if other != name and state == "open":
            portal.snf_portal("backend", "drain", other)
            opened.append(other)
    try:
        yield
    finally:
        for other in opened:
            portal.snf_portal("backend", "undrain", other)


@contextmanager
def reconciler(portal: Any, log: Path, every: float = 1.0) -> Iterator[None]:
    """`snf-portal reconcile --every` next to the portal while the block runs."""
    log.parent.mkdir(parents=True, exist_ok=True)
    proc = portal.spawn("reconcile", "--every", str(every), log=log)
    try:
        yield
    finally:
        proc.terminate()
        proc.wait(10)
