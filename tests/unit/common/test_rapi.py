"""snf.common.rapi against a real local HTTPS server that answers like ganeti-rapi.

The server is ``http.server`` on 127.0.0.1 with a self-signed certificate made by the
``openssl`` command line; it records every request it reads and answers canned,
Ganeti-shaped replies. Nothing of the client is mocked.
"""

from __future__ import annotations

import base64
import json
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from snf.common.errors import (
    InvalidInput,
    JobCanceled,
    JobFailed,
    JobTimeout,
    RapiAuthError,
    RapiCertificateMismatch,
    RapiConnectionError,
    RapiError,
    RapiHttpError,
    RapiNotFound,
)
from snf.common.rapi import (
    HooksAborted,
    RapiClient,
    fingerprint_of_pem,
    ha1_users_line,
    normalize_pin,
)

USER = "snf"
PASSWORD = "s3cret-pass"

# --- certificates -----------------------------------------------------------------------


@dataclass(frozen=True)
class Cert:
    cert: Path
    key: Path
    combined: Path  # key then certificate, like /var/lib/ganeti/rapi.pem
    fingerprint: str  # as `openssl x509 -fingerprint -sha256` prints it: AB:CD:...


def make_cert(directory: Path) -> Cert:
    directory.mkdir(parents=True, exist_ok=True)
    key, cert = directory / "key.pem", directory / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=rapi.test"],
        check=True, capture_output=True,
    )  # fmt: skip
    out = subprocess.run(
        ["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", str(cert)],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    combined = directory / "rapi.pem"
    combined.write_text(key.read_text() + cert.read_text())
    return Cert(cert, key, combined, out.strip().split("=", 1)[1])


@pytest.fixture(scope="session")
def cert(tmp_path_factory: pytest.TempPathFactory) -> Cert:
    return make_cert(tmp_path_factory.mktemp("rapi-cert"))


@pytest.fixture(scope="session")
def other_cert(tmp_path_factory: pytest.TempPathFactory) -> Cert:
    return make_cert(tmp_path_factory.mktemp("other-cert"))


# --- the fake ganeti-rapi ---------------------------------------------------------------


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    raw: bytes | None = None  # sent as is instead of json.dumps(body)
    close: bool = False  # answer, then drop the connection without saying so
    hangup: bool = False  # drop the connection without answering
    delay: float = 0.0


@dataclass
class Seen:
    method: str
    target: str
    headers: Message
    body: bytes
    connection: int

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.target).query)

    @property
    def json(self) -> Any:
        return json.loads(self.body)


def ganeti_error(code: int, message: str, explain: str = "Ganeti says no") -> Reply:
    return Reply(code, {"code": code, "message": message, "explain": explain})


@dataclass
class FakeRapi:
    """Replies per (method, path), consumed in order; the last one repeats."""

    routes: dict[tuple[str, str], list[Reply]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    port: int = 0

    def route(self, method: str, path: str, *replies: Reply) -> None:
        self.routes[(method, path)] = list(replies)

    def reply_for(self, method: str, path: str) -> Reply:
        with self.lock:
            queue = self.routes.get((method, path))
            if not queue:
                return ganeti_error(404, "Not Found", "Nothing matches the given URI")
            return queue.pop(0) if len(queue) > 1 else queue[0]

    def record(self, seen: Seen) -> None:
        with self.lock:
            self.seen.append(seen)

    def new_connection(self) -> int:
        with self.lock:
            self.connections += 1
            return self.connections


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeRapi

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that hang up (pin mismatch, timeouts) are part of the tests


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a persistent client expects
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection_no = self.server.fake.new_connection()

    def serve(self) -> None:
        fake = self.server.fake
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        fake.record(Seen(self.command, self.path, self.headers, body, self.connection_no))
        reply = fake.reply_for(self.command, urlsplit(self.path).path)
        time.sleep(reply.delay)
        if reply.hangup:
            self.close_connection = True
            return
        data = reply.raw if reply.raw is not None else json.dumps(reply.body).encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.close_connection = reply.close

    do_GET = do_PUT = do_POST = do_DELETE = serve

    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve(cert: Cert | None) -> tuple[FakeRapi, _Server]:
    """Start a fake RAPI on 127.0.0.1 (plain HTTP when ``cert`` is None)."""
    fake = FakeRapi()
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.fake = fake
    if cert is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert.cert, cert.key)
        # The handshake happens in the handler's thread, on its first read.
        httpd.socket = context.wrap_socket(
            httpd.socket, server_side=True, do_handshake_on_connect=False
        )
    fake.port = httpd.server_address[1]
    threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True).start()
    return fake, httpd


@pytest.fixture
def server(cert: Cert) -> Iterator[FakeRapi]:
    fake, httpd = serve(cert)
    yield fake
    httpd.shutdown()
    httpd.server_close()


def make_client(server: FakeRapi, pin: str | None, **kw: Any) -> RapiClient:
    kw.setdefault("timeout", 5.0)
    return RapiClient("127.0.0.1", server.port, username=USER, password=PASSWORD, pin=pin, **kw)


@pytest.fixture
def client(server: FakeRapi, cert: Cert) -> Iterator[RapiClient]:
    with make_client(server, cert.fingerprint) as rapi:
        yield rapi


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def raises_exactly(cls: type[Exception], call: Callable[[], Any]) -> Exception:
    with pytest.raises(cls) as caught:
        call()
    assert type(caught.value) is cls, f"{type(caught.value).__name__}: {caught.value}"
    return caught.value


# --- pinning, credentials, transport ----------------------------------------------------


def test_pinned_request_carries_basic_auth(server: FakeRapi, client: RapiClient) -> None:
    server.route("GET", "/version", Reply(body=2))
    assert client.version() == 2
    (seen,) = server.seen
    assert (seen.method, seen.target) == ("GET", "/version")
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    assert seen.headers["Authorization"] == f"Basic {token}"
    assert seen.headers["Content-Type"] is None  # no body, no content type


@pytest.mark.parametrize(
    "form",
    [
        lambda fp: fp,  # AB:CD:... as openssl prints it
        lambda fp: fp.replace(":", "").lower(),
        lambda fp: "sha256:" + fp.lower(),
        lambda fp: "SHA256:" + fp.replace(":", ""),
        lambda fp: f"  sha256:{fp}\n",
    ],
)
def test_pin_formats(server: FakeRapi, cert: Cert, form: Callable[[str], str]) -> None:
    server.route("GET", "/version", Reply(body=2))
    with make_client(server, form(cert.fingerprint)) as rapi:
        assert rapi.version() == 2


@pytest.mark.parametrize("pin", ["", "abcd", "zz" * 32, "sha1:" + "ab" * 32, "ab" * 33])
def test_bad_pin_is_refused_before_connecting(server: FakeRapi, pin: str) -> None:
    with pytest.raises(InvalidInput):
        make_client(server, pin)
    assert server.connections == 0


def test_pin_mismatch_sends_nothing(server: FakeRapi, cert: Cert, other_cert: Cert) -> None:
    server.route("GET", "/2/instances", Reply(body=[]))
    with make_client(server, other_cert.fingerprint) as rapi:
        for _ in range(2):  # and no fallback on a second try
            with pytest.raises(RapiCertificateMismatch) as caught:
                rapi.instances()
    assert isinstance(caught.value, RapiConnectionError)
    message = str(caught.value)
    assert cert.fingerprint.replace(":", "").lower()[:16] in message
    assert other_cert.fingerprint.replace(":", "").lower()[:16] in message
    assert f"127.0.0.1:{server.port}" in message
    assert server.connections >= 1  # TLS was reached ...
    assert server.seen == []  # ... but no request, and so no credentials


def test_pin_none_skips_verification(server: FakeRapi) -> None:
    server.route("GET", "/2/features", Reply(body=["instance-create-reqv1"]))
    with make_client(server, None) as rapi:
        assert rapi.features() == ["instance-create-reqv1"]


def test_pin_is_required_explicitly(server: FakeRapi) -> None:
    with pytest.raises(TypeError):
        RapiClient("127.0.0.1", server.port, username=USER, password=PASSWORD)  # type: ignore[call-arg]


def test_fingerprint_of_pem_reads_rapi_pem_with_its_key(server: FakeRapi, cert: Cert) -> None:
    expected = cert.fingerprint.replace(":", "").lower()
    assert fingerprint_of_pem(cert.combined.read_text()) == expected
    assert fingerprint_of_pem(cert.cert.read_text()) == expected
    assert normalize_pin(cert.fingerprint) == expected
    server.route("GET", "/version", Reply(body=2))
    with RapiClient.from_pem_file("127.0.0.1", server.port, USER, PASSWORD, cert.combined) as rapi:
        assert rapi.version() == 2


def test_fingerprint_of_pem_refuses_garbage(cert: Cert) -> None:
    with pytest.raises(InvalidInput):
        fingerprint_of_pem(cert.key.read_text())
    with pytest.raises(InvalidInput):
        fingerprint_of_pem("-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n")


def test_ha1_users_line() -> None:
    # md5("snf:Ganeti Remote API:secret"), as `printf ... | md5sum` gives it
    assert ha1_users_line("snf", "secret") == "snf {HA1}2f8b842ca6d7b88c75bb0ff529a752c8 write"
    assert ha1_users_line("snf", "secret", write=False) == (
        "snf {HA1}2f8b842ca6d7b88c75bb0ff529a752c8"
    )
    for user, password in [("a b", "x"), ("a:b", "x"), ("#a", "x"), ("", "x"), ("a", "pässwort")]:
        with pytest.raises(InvalidInput):
            ha1_users_line(user, password)


@pytest.mark.parametrize(
    "kw",
    [
        {"username": "a:b"},
        {"username": ""},
        {"password": "pässwort"},
        {"host": ""},
        {"port": 0},
        {"port": True},
    ],
)
def test_bad_client_arguments(kw: dict[str, Any]) -> None:
    args: dict[str, Any] = {"host": "127.0.0.1", "port": 5080, "username": USER}
    args |= {"password": PASSWORD, "pin": None} | kw
    with pytest.raises(InvalidInput):
        RapiClient(**args)


def test_connection_refused() -> None:
    port = free_port()
    rapi = RapiClient("127.0.0.1", port, username=USER, password=PASSWORD, pin=None, timeout=2)
    error = raises_exactly(RapiConnectionError, rapi.version)
    assert f"127.0.0.1:{port}" in str(error)


def test_read_timeout(server: FakeRapi, cert: Cert) -> None:
    server.route("GET", "/version", Reply(body=2, delay=1.0))
    with make_client(server, cert.fingerprint, timeout=0.3) as rapi:
        error = raises_exactly(RapiConnectionError, rapi.version)
    assert "timed out" in str(error) and f":{server.port}" in str(error)


def test_tls_error_on_a_plain_http_server() -> None:
    fake, httpd = serve(None)
    try:
        rapi = RapiClient("127.0.0.1", fake.port, username=USER, password=PASSWORD, pin=None)
        error = raises_exactly(RapiConnectionError, rapi.version)
        assert "TLS" in str(error)
        assert fake.seen == []
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_keeps_one_connection(server: FakeRapi, client: RapiClient) -> None:
    server.route("GET", "/version", Reply(body=2))
    for _ in range(3):
        assert client.version() == 2
    assert [s.connection for s in server.seen] == [1, 1, 1]


def test_reconnects_once_when_the_server_closed_the_connection(
    server: FakeRapi, client: RapiClient
) -> None:
    server.route("GET", "/version", Reply(body=2, close=True), Reply(body=2))
    assert client.version() == 2
    time.sleep(0.1)  # the server has closed its end by now
    assert client.version() == 2
    assert client.version() == 2
    # The second request went over the dead connection (or not) and then over a new one.
    connections = [s.connection for s in server.seen]
    assert connections[0] == 1 and connections[-1] == connections[-2] == 2


def test_no_retry_when_a_new_connection_fails(server: FakeRapi, client: RapiClient) -> None:
    server.route("POST", "/2/instances/vm1/reboot", Reply(hangup=True))
    raises_exactly(RapiConnectionError, lambda: client.reboot_instance("vm1"))
    assert len(server.seen) == 1  # a job-submitting call is not sent twice


def test_one_request_at_a_time_across_threads(server: FakeRapi, client: RapiClient) -> None:
    server.route("GET", "/version", Reply(body=2, delay=0.01))
    results: list[int] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            results.extend(client.version() for _ in range(5))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and results == [2] * 30
    assert {s.connection for s in server.seen} == {1}


# --- HTTP errors and unexpected answers -------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "cls"),
    [
        (ganeti_error(401, "Unauthorized"), RapiAuthError),
        (ganeti_error(403, "Forbidden"), RapiAuthError),
        (ganeti_error(404, "Not Found"), RapiNotFound),
        (ganeti_error(500, "Internal Server Error"), RapiHttpError),
        (ganeti_error(502, "Can&#x27;t connect to master daemon"), RapiHttpError),
    ],
)
def test_http_errors(server: FakeRapi, client: RapiClient, reply: Reply, cls: type) -> None:
    server.route("GET", "/2/instances/vm1", reply)
    error = raises_exactly(cls, lambda: client.instance("vm1"))
    assert isinstance(error, RapiHttpError)
    assert error.status == reply.status
    assert error.explain == "Ganeti says no"
    assert "GET /2/instances/vm1" in str(error)
    assert "'" in str(error) if reply.status == 502 else reply.body["message"] in str(error)


def test_http_error_without_ganeti_body_uses_the_reason(
    server: FakeRapi, client: RapiClient
) -> None:
    server.route("GET", "/2/info", Reply(503, raw=b"<html>busy</html>"))
    error = raises_exactly(RapiHttpError, client.info)
    assert error.status == 503 and "Service Unavailable" in str(error)


@pytest.mark.parametrize(
    ("route", "reply", "call"),
    [
        ("/version", Reply(raw=b"<html>not json</html>"), lambda c: c.version()),
        ("/version", Reply(raw=b""), lambda c: c.version()),
        ("/version", Reply(body=True), lambda c: c.version()),
        ("/2/info", Reply(body=["a"]), lambda c: c.info()),
        ("/2/features", Reply(body={"a": 1}), lambda c: c.features()),
        ("/2/os", Reply(body=["ok", 3]), lambda c: c.os_names()),
        ("/2/instances", Reply(body=["vm1"]), lambda c: c.instances()),
        ("/2/jobs/5", Reply(body={"id": 5}), lambda c: c.job(5)),
        ("/2/jobs/5", Reply(body=None), lambda c: c.job(5)),
    ],
)
def test_unexpected_answers(
    server: FakeRapi, client: RapiClient, route: str, reply: Reply, call: Callable[..., Any]
) -> None:
    server.route("GET", route, reply)
    error = raises_exactly(RapiError, lambda: call(client))
    assert str(error).startswith("unexpected RAPI response")


@pytest.mark.parametrize("job_id", [{"id": 3}, "3a", -4, None, "³"])
def test_unexpected_job_id(server: FakeRapi, client: RapiClient, job_id: Any) -> None:
    server.route("DELETE", "/2/instances/vm1", Reply(body=job_id))
    error = raises_exactly(RapiError, lambda: client.delete_instance("vm1"))
    assert "expected a job id" in str(error)


# --- calls: URLs, queries, bodies -------------------------------------------------------


def test_create_instance_body(server: FakeRapi, client: RapiClient) -> None:
    server.route("POST", "/2/instances", Reply(body="1234"))
    job_id = client.create_instance(
        "snf-42",
        disk_template="ext",
        disks=[{"size": 10240, "provider": "archipelago", "origin": "map-1"}],
        nics=[{"network": "net-1", "ip": "10.0.0.5"}],
        os="snf-image+default",
        beparams={"vcpus": 1, "maxmem": 512},
        osparams={"img_id": "x"},
        osparams_secret={"img_passwd": "pw"},
        tags=["snf:owner:alice"],
        no_install=True,
    )
    assert job_id == 1234 and isinstance(job_id, int)
    (seen,) = server.seen
    assert seen.target == "/2/instances"
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.json == {
        "__version__": 1,
        "mode": "create",
        "instance_name": "snf-42",
        "os_type": "snf-image+default",
        "disk_template": "ext",
        "disks": [{"size": 10240, "provider": "archipelago", "origin": "map-1"}],
        "nics": [{"network": "net-1", "ip": "10.0.0.5"}],
        "beparams": {"vcpus": 1, "maxmem": 512},
        "osparams": {"img_id": "x"},
        "osparams_secret": {"img_passwd": "pw"},
        "tags": ["snf:owner:alice"],
        "name_check": False,
        "ip_check": False,
        "no_install": True,
    }


def test_create_instance_options(server: FakeRapi, client: RapiClient) -> None:
    server.route("POST", "/2/instances", Reply(body=77))
    assert client.create_instance(
        "vm1", disk_template="plain", disks=[], nics=[], dry_run=True, name_check=True
    ) == 77  # fmt: skip
    (seen,) = server.seen
    assert seen.query == {"dry-run": ["1"]}
    assert seen.json["name_check"] is True and "os_type" not in seen.json
    assert "conflicts_check" not in seen.json and "hypervisor" not in seen.json


@pytest.mark.parametrize(
    "kw",
    [{"instance_name": "x"}, {"mode": "import"}, {"__version__": 0}, {"disks": "no"},
     {"nics": [1]}, {"beparams": {"x": object()}}],
)  # fmt: skip
def test_create_instance_refuses(server: FakeRapi, client: RapiClient, kw: dict) -> None:
    args: dict[str, Any] = {"disk_template": "plain", "disks": [], "nics": []} | kw
    with pytest.raises(InvalidInput):
        client.create_instance("vm1", **args)
    assert server.seen == []


CALLS: list[tuple[str, Callable[[RapiClient], Any], str, str, dict[str, list[str]], Any]] = [
    ("delete", lambda c: c.delete_instance("vm1", dry_run=True),
     "DELETE", "/2/instances/vm1", {"dry-run": ["1"]}, None),
    ("startup", lambda c: c.startup_instance("vm1", force=True, no_remember=True),
     "PUT", "/2/instances/vm1/startup", {"force": ["1"], "no_remember": ["1"]}, None),
    ("startup-plain", lambda c: c.startup_instance("vm1"),
     "PUT", "/2/instances/vm1/startup", {}, None),
    ("shutdown", lambda c: c.shutdown_instance("vm1", timeout=30, no_remember=True),
     "PUT", "/2/instances/vm1/shutdown", {"no_remember": ["1"]}, {"timeout": 30}),
    ("reboot", lambda c: c.reboot_instance("vm1", type="hard"),
     "POST", "/2/instances/vm1/reboot", {"type": ["hard"]}, {}),
    ("reboot-default", lambda c: c.reboot_instance("vm1"),
     "POST", "/2/instances/vm1/reboot", {"type": ["soft"]}, {}),
    ("reinstall", lambda c: c.reinstall_instance("vm1", os="snf-image+default",
                                                 osparams={"a": "b"}, no_startup=True),
     "POST", "/2/instances/vm1/reinstall", {},
     {"start": False, "os": "snf-image+default", "osparams": {"a": "b"}}),
    ("modify", lambda c: c.modify_instance("vm1", nics=[["add", -1, {}]], hotplug=True),
     "PUT", "/2/instances/vm1/modify", {}, {"nics": [["add", -1, {}]], "hotplug": True}),
    ("tags", lambda c: c.add_instance_tags("vm1", ["a b", "c&d=e"], dry_run=True),
     "PUT", "/2/instances/vm1/tags", {"tag": ["a b", "c&d=e"], "dry-run": ["1"]}, None),
    ("info", lambda c: c.instance_info("vm1", static=True),
     "GET", "/2/instances/vm1/info", {"static": ["1"]}, None),
]  # fmt: skip


@pytest.mark.parametrize(("call", "method", "path", "query", "body"),
                         [c[1:] for c in CALLS], ids=[c[0] for c in CALLS])  # fmt: skip
def test_job_submitting_calls(
    server: FakeRapi,
    client: RapiClient,
    call: Callable[[RapiClient], Any],
    method: str,
    path: str,
    query: dict[str, list[str]],
    body: Any,
) -> None:
    server.route(method, path, Reply(body="31"))
    assert call(client) == 31
    (seen,) = server.seen
    assert (seen.method, seen.path, seen.query) == (method, path, query)
    if body is None:
        assert seen.body == b""
    else:
        assert seen.headers["Content-Type"] == "application/json"
        assert seen.json == body


def test_reading_calls(server: FakeRapi, client: RapiClient) -> None:
    server.route("GET", "/2/info", Reply(body={"name": "cluster1", "master": "node1"}))
    server.route("GET", "/2/os", Reply(body=["snf-image+default", "debootstrap+default"]))
    server.route("GET", "/2/nodes", Reply(body=[{"name": "node1", "mfree": 900}]))
    server.route("GET", "/2/instances", Reply(body=[{"id": "vm1", "uri": "/2/instances/vm1"}]))
    server.route("GET", "/2/instances/vm1", Reply(body={"name": "vm1", "status": "running"}))
    server.route("GET", "/2/instances/vm1/tags", Reply(body=["snf:owner:alice"]))
    server.route("GET", "/2/jobs/9", Reply(body={"id": 9, "status": "running"}))
    server.route("DELETE", "/2/jobs/9", Reply(body=[True, "Job 9 will be canceled"]))
    assert client.info()["name"] == "cluster1"
    assert client.os_names() == ["snf-image+default", "debootstrap+default"]
    assert client.nodes(bulk=True) == [{"name": "node1", "mfree": 900}]
    assert client.instances() == [{"id": "vm1", "uri": "/2/instances/vm1"}]
    assert client.instance("vm1")["status"] == "running"
    assert client.instance_tags("vm1") == ["snf:owner:alice"]
    assert client.job(9)["status"] == "running"
    assert client.cancel_job(9) is True
    assert [(s.method, s.target) for s in server.seen] == [
        ("GET", "/2/info"),
        ("GET", "/2/os"),
        ("GET", "/2/nodes?bulk=1"),
        ("GET", "/2/instances"),
        ("GET", "/2/instances/vm1"),
        ("GET", "/2/instances/vm1/tags"),
        ("GET", "/2/jobs/9"),
        ("DELETE", "/2/jobs/9"),
    ]


def test_names_are_quoted(server: FakeRapi, client: RapiClient) -> None:
    server.route("GET", "/2/instances/vm%3Fx%3D1%23y%25", Reply(body={"name": "odd"}))
    assert client.instance("vm?x=1#y%") == {"name": "odd"}
    assert server.seen[0].target == "/2/instances/vm%3Fx%3D1%23y%25"


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.instance(""),
        lambda c: c.instance("a/b"),
        lambda c: c.instance(".."),
        lambda c: c.instance("vm 1"),
        lambda c: c.instance("vm\n1"),
        lambda c: c.startup_instance("../info"),
        lambda c: c.job(-1),
        lambda c: c.job(True),
        lambda c: c.cancel_job("3"),
        lambda c: c.reboot_instance("vm1", type="cold"),
        lambda c: c.shutdown_instance("vm1", timeout=-1),
        lambda c: c.add_instance_tags("vm1", []),
        lambda c: c.add_instance_tags("vm1", [""]),
        lambda c: c.modify_instance("vm1"),
        lambda c: c.modify_instance("vm1", instance_name="vm2"),
    ],
)
def test_bad_input_sends_nothing(
    server: FakeRapi, client: RapiClient, call: Callable[[RapiClient], Any]
) -> None:
    with pytest.raises(InvalidInput):
        call(client)
    assert server.seen == []


# --- waiting for jobs -------------------------------------------------------------------


def log(serial: int, message: Any) -> list[Any]:
    return [serial, [1700000000, serial], "message", message]


def wait_answer(status: str, *entries: list[Any]) -> Reply:
    return Reply(body={"job_info": [status], "log_entries": list(entries)})


def test_wait_for_job_long_polls(server: FakeRapi, client: RapiClient) -> None:
    server.route(
        "GET",
        "/2/jobs/7/wait",
        Reply(body=None),  # nothing changed yet
        wait_answer("running", log(1, "creating disks"), log(2, "installing OS")),
        Reply(body=None),
        wait_answer("success", log(2, "installing OS"), log(3, {"progress": 100})),
    )
    server.route(
        "GET",
        "/2/jobs/7",
        Reply(body={"id": 7, "status": "success", "opstatus": ["success"],
                    "opresult": [["vm1.example.org"]]}),
    )  # fmt: skip
    progress: list[tuple[int, str]] = []
    result = client.wait_for_job(7, on_progress=lambda s, m: progress.append((s, m)))
    assert result == [["vm1.example.org"]]
    assert progress == [(1, "creating disks"), (2, "installing OS"), (3, '{"progress": 100}')]
    waits = [s for s in server.seen if s.path == "/2/jobs/7/wait"]
    assert [s.method for s in waits] == ["GET"] * 4  # rlib2.R_2_jobs_id_wait has GET only
    assert all(s.headers["Content-Type"] == "application/json" for s in waits)
    assert [s.json for s in waits] == [
        {"fields": ["status"], "previous_job_info": None, "previous_log_serial": None},
        {"fields": ["status"], "previous_job_info": None, "previous_log_serial": None},
        {"fields": ["status"], "previous_job_info": ["running"], "previous_log_serial": 2},
        {"fields": ["status"], "previous_job_info": ["running"], "previous_log_serial": 2},
    ]
    assert server.seen[-1].target == "/2/jobs/7"


def finish(server: FakeRapi, job_id: int, status: str, opstatus: list[str], opresult: list) -> None:
    server.route("GET", f"/2/jobs/{job_id}/wait", wait_answer(status))
    server.route(
        "GET",
        f"/2/jobs/{job_id}",
        Reply(body={"id": job_id, "status": status, "opstatus": opstatus, "opresult": opresult}),
    )


def test_job_failed_prereq(server: FakeRapi, client: RapiClient) -> None:
    message = "Instance 'vm1' is already in the cluster"
    finish(server, 8, "error", ["error"], [["OpPrereqError", [message, "already_exists"]]])
    error = raises_exactly(JobFailed, lambda: client.wait_for_job(8))
    assert (error.job_id, error.error_class, error.ecode) == (8, "OpPrereqError", "already_exists")
    assert error.detail == message
    assert str(error) == f"job 8 failed: OpPrereqError: {message}"


def test_job_failed_in_a_later_opcode(server: FakeRapi, client: RapiClient) -> None:
    finish(server, 9, "error", ["success", "error", "error"],
           [None, ["OpExecError", ["Could not start instance"]],
            ["OpExecError", ["Preceding opcode failed"]]])  # fmt: skip
    error = raises_exactly(JobFailed, lambda: client.wait_for_job(9))
    assert (error.error_class, error.detail, error.ecode) == (
        "OpExecError", "Could not start instance", None
    )  # fmt: skip


def test_hooks_abort(server: FakeRapi, client: RapiClient) -> None:
    triples = [
        ["node1.example.org", "00-snf-quota", "quota exceeded: cpu\nlimit 4\n"],
        ["node1.example.org", "10-other", ""],
    ]
    finish(server, 10, "error", ["error"], [["HooksAbort", [triples]]])
    with pytest.raises(HooksAborted) as caught:
        client.wait_for_job(10)
    error = caught.value
    assert isinstance(error, JobFailed) and error.error_class == "HooksAbort"
    assert error.detail == (
        "hooks failed: node node1.example.org, script 00-snf-quota: quota exceeded: cpu "
        "limit 4; node node1.example.org, script 10-other (no output)"
    )
    assert error.results == [tuple(t) for t in triples]
    assert error.ecode is None and error.job_id == 10


def test_unparseable_failure_is_still_job_failed(server: FakeRapi, client: RapiClient) -> None:
    finish(server, 11, "error", ["error"], [{"weird": True}])
    error = raises_exactly(JobFailed, lambda: client.wait_for_job(11))
    assert error.error_class == "UnknownError" and "weird" in error.detail


def test_job_canceled(server: FakeRapi, client: RapiClient) -> None:
    finish(server, 12, "canceled", ["canceled"], [None])
    error = raises_exactly(JobCanceled, lambda: client.wait_for_job(12))
    assert error.job_id == 12


def test_job_timeout_leaves_the_job(server: FakeRapi, client: RapiClient) -> None:
    server.route("GET", "/2/jobs/13/wait", wait_answer("running"), Reply(body=None))
    started = time.monotonic()
    error = raises_exactly(JobTimeout, lambda: client.wait_for_job(13, timeout=0.5))
    assert 0.5 <= time.monotonic() - started < 3
    assert error.job_id == 13 and "not canceled" in str(error) and "running" in str(error)
    assert {(s.method, s.path) for s in server.seen} == {("GET", "/2/jobs/13/wait")}


@pytest.mark.parametrize(
    "answer",
    [
        {"job_info": [], "log_entries": []},
        {"job_info": "success"},
        {"job_info": ["running"], "log_entries": [["x", 1, "message", "m"]]},
        ["success"],
    ],
)
def test_wait_unexpected_answer(server: FakeRapi, client: RapiClient, answer: Any) -> None:
    server.route("GET", "/2/jobs/14/wait", Reply(body=answer))
    error = raises_exactly(RapiError, lambda: client.wait_for_job(14, timeout=2))
    assert str(error).startswith("unexpected RAPI response to GET /2/jobs/14/wait")


def test_wait_for_a_missing_job(server: FakeRapi, client: RapiClient) -> None:
    server.route("GET", "/2/jobs/15/wait", ganeti_error(404, "Not Found"))
    raises_exactly(RapiNotFound, lambda: client.wait_for_job(15))
