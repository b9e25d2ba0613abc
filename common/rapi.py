"""A small typed client for Ganeti's Remote API (RAPI), version 2.

Ganeti runs ``ganeti-rapi`` on the master node: HTTPS on TCP port 5080, with the self-signed
certificate ``/var/lib/ganeti/rapi.pem`` (Debian starts it with
``RAPI_ARGS="-b 127.0.0.1 --require-authentication"`` in ``/etc/default/ganeti``).

**A RAPI user.** Add one line per user to ``/var/lib/ganeti/rapi/users`` (owner
``gnt-rapi:gnt-masterd``, mode 0640; ganeti-rapi reloads the file by itself)::

    snf {HA1}<md5 hex of "snf:Ganeti Remote API:PASSWORD"> write

:func:`ha1_users_line` returns that line; in a shell::

    printf 'snf {HA1}%s write\\n' \\
        "$(printf '%s' 'snf:Ganeti Remote API:PASSWORD' | md5sum | cut -d' ' -f1)"

``write`` is needed by every call that submits a job and by :meth:`RapiClient.wait_for_job`.
Ganeti reads user names and passwords as ASCII; a user name cannot hold ``:`` or blanks.

**The certificate pin.** The client does TLS without CA or host name checks (Ganeti's
certificate is self-signed) and instead compares the SHA-256 fingerprint of the server's
certificate with a pin, before it sends anything (credentials included). On the master::

    openssl x509 -noout -fingerprint -sha256 -in /var/lib/ganeti/rapi.pem

and pass the part after ``=`` as ``pin=`` (colons, case and a ``sha256:`` prefix do not
matter). :func:`fingerprint_of_pem` and :meth:`RapiClient.from_pem_file` compute the same pin
from a copy of the file. rapi.pem also holds the private key: copy only the certificate
(``openssl x509 -in /var/lib/ganeti/rapi.pem``) off the master. Renewing the certificate
(``gnt-cluster renew-crypto --new-rapi-certificate``) changes the pin. ``pin=None`` turns
verification off and must be written out: it is for tests and bootstrap only.

Usage: ``rapi = RapiClient("192.0.2.1", username="snf", password=secret, pin=pin)``, then
``rapi.wait_for_job(rapi.create_instance(...), on_progress=...)``. Errors are those of
:mod:`snf.common.errors` (``RapiError`` and below), plus :class:`HooksAborted`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import re
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import quote, urlencode

from snf.common import rapi_jobs as answers
from snf.common.errors import (
    ConfigError,
    InvalidInput,
    JobTimeout,
    RapiCertificateMismatch,
    RapiConnectionError,
)
from snf.common.rapi_jobs import HooksAborted, Job, JobWatch

__all__ = [
    "DEFAULT_PORT",
    "HooksAborted",
    "Job",
    "RapiClient",
    "fingerprint_of_pem",
    "ha1_users_line",
    "normalize_pin",
]

DEFAULT_PORT = 5080
#: The HTTP authentication realm of ganeti-rapi, part of every HA1 hash.
RAPI_REALM = "Ganeti Remote API"
#: ganeti-rapi answers a /wait request after at most 10 s (rlib2._WFJC_TIMEOUT).
_WAIT_SOCKET_TIMEOUT = 40.0
#: Against a server that answers "no change" at once, do not poll faster than this.
_MIN_POLL_INTERVAL = 0.25
#: Errors that, on a reused connection, mean the server had closed it: send once more.
_STALE_CONNECTION_ERRORS = (ConnectionError, ssl.SSLEOFError)
_PEM_CERT = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)
_HEX64 = re.compile(r"[0-9a-f]{64}")
_REBOOT_TYPES = ("soft", "hard", "full")
_CREATE_RESERVED = frozenset({"__version__", "mode", "instance_name", "name", "os_type"})


def _credential(kind: str, value: str) -> str:
    if not isinstance(value, str) or not value or not value.isascii():
        raise InvalidInput(f"RAPI {kind} must be a non-empty ASCII string")
    return value


def ha1_users_line(username: str, password: str, write: bool = True) -> str:
    """A line for ``/var/lib/ganeti/rapi/users`` (no newline), with the password as HA1."""
    _credential("password", password)
    if not _credential("user name", username).isprintable() or any(c in username for c in ": #"):
        raise InvalidInput(f"RAPI user name {username!r} cannot hold ':', '#' or blanks")
    digest = hashlib.md5(
        f"{username}:{RAPI_REALM}:{password}".encode("ascii"), usedforsecurity=False
    ).hexdigest()
    return f"{username} {{HA1}}{digest}" + (" write" if write else "")


def fingerprint_of_pem(pem_text: str) -> str:
    """SHA-256 of the first certificate in ``pem_text`` (lowercase hex, as a pin).

    ``pem_text`` may also hold a private key, as ``/var/lib/ganeti/rapi.pem`` does.
    """
    match = _PEM_CERT.search(pem_text)
    if match is None:
        raise InvalidInput("no PEM certificate (BEGIN CERTIFICATE) found")
    try:
        der = ssl.PEM_cert_to_DER_cert(match.group(0))
    except ValueError as err:
        raise InvalidInput(f"bad PEM certificate: {err}") from None
    # PEM_cert_to_DER_cert skips non-base64 characters: check for one whole DER SEQUENCE.
    size = der[1] if len(der) > 1 else 0
    if size > 0x80:
        size = int.from_bytes(der[2 : 2 + size - 0x80], "big") + size - 0x80
    if not der or der[0] != 0x30 or len(der) != 2 + size:
        raise InvalidInput("bad PEM certificate: not one DER structure")
    return hashlib.sha256(der).hexdigest()


def normalize_pin(pin: str) -> str:
    """A pin as 64 lowercase hex digits; accepts colons, any case, a ``sha256:`` prefix."""
    text = pin.strip().lower() if isinstance(pin, str) else ""
    text = text.removeprefix("sha256:").replace(":", "")
    if not _HEX64.fullmatch(text):
        raise InvalidInput(f"bad RAPI certificate pin {pin!r}: expected a SHA-256 in hex")
    return text


def _segment(kind: str, name: str) -> str:
    """A URL path segment for a Ganeti name, quoted."""
    if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
        raise InvalidInput(f"bad {kind} name {name!r}")
    if not name.isprintable() or any(c.isspace() for c in name):
        raise InvalidInput(f"bad {kind} name {name!r}: no blanks or control characters")
    return quote(name, safe="")


def _instance(name: str, action: str = "") -> str:
    """The path of an instance, or of one of its actions."""
    return f"/2/instances/{_segment('instance', name)}" + (f"/{action}" if action else "")


def _job(job_id: int, action: str = "") -> str:
    """The path of a job, or of one of its actions."""
    if not isinstance(job_id, int) or isinstance(job_id, bool) or job_id < 0:
        raise InvalidInput(f"bad job id {job_id!r}")
    return f"/2/jobs/{job_id}" + (f"/{action}" if action else "")


def _flags(**flags: bool) -> list[tuple[str, str]]:
    """Query arguments ``name=1`` for the true flags (``dry_run`` becomes ``dry-run``)."""
    return [(name.replace("dry_run", "dry-run"), "1") for name, on in flags.items() if on]


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """An HTTPS connection that checks the server certificate's SHA-256 on every connect."""

    def __init__(self, host: str, port: int, *, timeout: float, pin: str | None) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # self-signed: the pin is the check
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        super().__init__(host, port, timeout=timeout, context=context)
        self._pin = pin

    def connect(self) -> None:
        super().connect()
        if self._pin is None:
            return
        der = cast(ssl.SSLSocket, self.sock).getpeercert(binary_form=True)
        seen = hashlib.sha256(der).hexdigest() if der else ""
        if not hmac.compare_digest(seen, self._pin):
            self.close()
            raise RapiCertificateMismatch(
                f"RAPI server {self.host}:{self.port} presented certificate sha256 "
                f"{seen[:16] or '(none)'}..., expected the pinned {self._pin[:16]}..."
            )


class RapiClient:
    """A Ganeti RAPI v2 client over one persistent, pinned HTTPS connection.

    :param host: the master's address or name.
    :param port: ganeti-rapi's port.
    :param username: a RAPI user (see the module doc for the users file).
    :param password: that user's password.
    :param pin: SHA-256 of the server's certificate, or None for no verification at all
        (tests and bootstrap only; it must be given explicitly).
    :param timeout: seconds to connect and for each answer (long polls wait longer).

    Safe to share between threads: one request at a time goes over the connection.
    ganeti-rapi 3.0 answers ``Connection: close``, so there each call connects (and checks
    the pin) anew; a connection the server dropped while idle is reopened once.
    """

    def __init__(
        self,
        host: str,
        port: int = DEFAULT_PORT,
        *,
        username: str,
        password: str,
        pin: str | None,
        timeout: float = 30.0,
    ) -> None:
        if not isinstance(host, str) or not host or "/" in host or not host.isprintable():
            raise InvalidInput(f"bad RAPI host {host!r}")
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            raise InvalidInput(f"bad RAPI port {port!r}")
        if ":" in _credential("user name", username):
            raise InvalidInput(f"RAPI user name {username!r} cannot hold ':'")
        token = base64.b64encode(f"{username}:{_credential('password', password)}".encode())
        self.host = host
        self.port = port
        self.timeout = timeout
        self._pin = None if pin is None else normalize_pin(pin)
        self._authorization = "Basic " + token.decode("ascii")
        self._lock = threading.Lock()
        self._conn: _PinnedHTTPSConnection | None = None

    @classmethod
    def from_pem_file(
        cls, host: str, port: int, username: str, password: str, pem_path: str | Path
    ) -> RapiClient:
        """A client pinned to the certificate in a copy of ``rapi.pem`` (or its cert part)."""
        try:
            pem_text = Path(pem_path).read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"cannot read RAPI certificate {pem_path}: {err}") from None
        pin = fingerprint_of_pem(pem_text)
        return cls(host, port, username=username, password=password, pin=pin)

    def close(self) -> None:
        """Close the connection (the next call opens a new one)."""
        with self._lock:
            self._drop()

    def __enter__(self) -> RapiClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- transport -----------------------------------------------------------------------

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection_error(self, err: BaseException, timeout: float) -> RapiConnectionError:
        where = f"{self.host}:{self.port}"
        if isinstance(err, ssl.SSLError):
            return RapiConnectionError(f"TLS error with RAPI at {where}: {err}")
        if isinstance(err, TimeoutError):
            return RapiConnectionError(f"RAPI at {where} timed out after {timeout:g} s")
        return RapiConnectionError(f"cannot talk to RAPI at {where}: {err}")

    def _exchange(
        self, method: str, url: str, payload: bytes | None, timeout: float
    ) -> tuple[int, str, bytes]:
        headers = {"Authorization": self._authorization, "Accept": "application/json"}
        if payload is not None:
            headers["Content-Type"] = "application/json"
        with self._lock:
            for attempt in (1, 2):
                if self._conn is None:
                    self._conn = _PinnedHTTPSConnection(
                        self.host, self.port, timeout=timeout, pin=self._pin
                    )
                conn = self._conn
                reused = conn.sock is not None
                conn.timeout = timeout
                if conn.sock is not None:
                    conn.sock.settimeout(timeout)
                try:
                    conn.request(method, url, body=payload, headers=headers)
                    response = conn.getresponse()
                    return response.status, response.reason, response.read()
                except _STALE_CONNECTION_ERRORS as err:
                    self._drop()
                    if reused and attempt == 1:
                        continue
                    raise self._connection_error(err, timeout) from err
                except (OSError, http.client.HTTPException) as err:
                    self._drop()
                    raise self._connection_error(err, timeout) from err
                except BaseException:
                    self._drop()
                    raise
        raise AssertionError("unreachable")

    def _request(
        self,
        method: str,
        path: str,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        *,
        timeout: float | None = None,
    ) -> Any:
        where = f"{method} {path}"
        url = f"{path}?{urlencode(query)}" if query else path
        payload = None
        if body is not None:
            try:
                payload = json.dumps(body).encode("utf-8")
            except (TypeError, ValueError) as err:
                raise InvalidInput(f"cannot send {where}: {err}") from None
        status, reason, data = self._exchange(method, url, payload, timeout or self.timeout)
        if status >= 400:
            raise answers.http_error(where, status, reason, data)
        return answers.json_answer(where, status, data)

    # --- typed calls ---------------------------------------------------------------------

    def _job_id(self, method: str, path: str, query: Any = None, body: Any = None) -> int:
        return answers.job_id_answer(f"{method} {path}", self._request(method, path, query, body))

    def _typed(self, path: str, kind: type, query: Any = None, of: type | None = None) -> Any:
        return answers.checked(f"GET {path}", self._request("GET", path, query), kind, of)

    def version(self) -> int:
        """The RAPI version (2)."""
        return self._typed("/version", int)

    def info(self) -> dict[str, Any]:
        """Cluster information (``gnt-cluster info``)."""
        return self._typed("/2/info", dict)

    def features(self) -> list[str]:
        """Optional RAPI features, e.g. ``instance-create-reqv1``."""
        return self._typed("/2/features", list, of=str)

    def os_names(self) -> list[str]:
        """OS names with variants (``snf-image+default``); Ganeti runs a job for this."""
        return self._typed("/2/os", list, of=str)

    def nodes(self, bulk: bool = False) -> list[dict[str, Any]]:
        """Nodes: ``{"id", "uri"}`` each, or every field with ``bulk``."""
        return self._typed("/2/nodes", list, _flags(bulk=bulk), dict)

    def instances(self, bulk: bool = False) -> list[dict[str, Any]]:
        """Instances: ``{"id", "uri"}`` each, or every field with ``bulk``."""
        return self._typed("/2/instances", list, _flags(bulk=bulk), dict)

    def instance(self, name: str) -> dict[str, Any]:
        """One instance's fields; :class:`RapiNotFound` if there is no such instance."""
        return self._typed(_instance(name), dict)

    def instance_console(self, name: str) -> dict[str, Any]:
        """How to reach a running instance's console: ``kind`` (vnc, spice, ssh, message)
        with ``host``/``port`` or ``command``/``message``."""
        return self._typed(_instance(name, "console"), dict)

    def instance_info(self, name: str, static: bool = False) -> int:
        """Submit a detailed-information query job (its result is the information)."""
        return self._job_id("GET", _instance(name, "info"), _flags(static=static))

    def create_instance(
        self,
        name: str,
        *,
        disk_template: str,
        disks: list[dict[str, Any]],
        nics: list[dict[str, Any]],
        os: str | None = None,
        beparams: dict[str, Any] | None = None,
        hvparams: dict[str, Any] | None = None,
        osparams: dict[str, Any] | None = None,
        osparams_secret: dict[str, Any] | None = None,
        hypervisor: str | None = None,
        tags: list[str] | None = None,
        dry_run: bool = False,
        **extra: Any,
    ) -> int:
        """Submit ``OP_INSTANCE_CREATE``; ``extra`` holds further opcode parameters.

        ``name_check`` and ``ip_check`` default to False (pass them in ``extra`` to change).
        """
        _segment("instance", name)
        if reserved := _CREATE_RESERVED.intersection(extra):
            raise InvalidInput(f"create_instance sets {', '.join(sorted(reserved))} itself")
        for kind, items in (("disks", disks), ("nics", nics)):
            if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                raise InvalidInput(f"{kind} must be a list of objects, got {answers.show(items)}")
        body = {
            "__version__": 1,
            "mode": "create",
            "instance_name": name,
            "os_type": os,
            "disk_template": disk_template,
            "disks": disks,
            "nics": nics,
            "beparams": beparams,
            "hvparams": hvparams,
            "osparams": osparams,
            "osparams_secret": osparams_secret,
            "hypervisor": hypervisor,
            "tags": tags,
            "name_check": False,
            "ip_check": False,
        }
        body = {key: value for key, value in body.items() if value is not None} | extra
        return self._job_id("POST", "/2/instances", _flags(dry_run=dry_run), body)

    def delete_instance(self, name: str, dry_run: bool = False) -> int:
        """Submit ``OP_INSTANCE_REMOVE``."""
        return self._job_id("DELETE", _instance(name), _flags(dry_run=dry_run))

    def startup_instance(self, name: str, *, force: bool = False, no_remember: bool = False) -> int:
        """Submit ``OP_INSTANCE_STARTUP``."""
        path = _instance(name, "startup")
        return self._job_id("PUT", path, _flags(force=force, no_remember=no_remember))

    def shutdown_instance(
        self, name: str, *, timeout: int | None = None, no_remember: bool = False
    ) -> int:
        """Submit ``OP_INSTANCE_SHUTDOWN``; ``timeout`` is Ganeti's, in seconds."""
        body: dict[str, Any] = {}
        if timeout is not None:
            if not isinstance(timeout, int) or isinstance(timeout, bool) or timeout < 0:
                raise InvalidInput(f"bad shutdown timeout {timeout!r}")
            body["timeout"] = timeout
        path = _instance(name, "shutdown")
        return self._job_id("PUT", path, _flags(no_remember=no_remember), body)

    def reboot_instance(self, name: str, *, type: Literal["soft", "hard", "full"] = "soft") -> int:
        """Submit ``OP_INSTANCE_REBOOT``."""
        if type not in _REBOOT_TYPES:
            raise InvalidInput(f"bad reboot type {type!r}: expected one of {_REBOOT_TYPES}")
        return self._job_id("POST", _instance(name, "reboot"), [("type", type)], {})

    def reinstall_instance(
        self,
        name: str,
        *,
        os: str | None = None,
        osparams: dict[str, Any] | None = None,
        no_startup: bool = False,
    ) -> int:
        """Submit a job that shuts down, reinstalls and (unless ``no_startup``) starts."""
        body = {"start": not no_startup, "os": os, "osparams": osparams}
        body = {key: value for key, value in body.items() if value is not None}
        return self._job_id("POST", _instance(name, "reinstall"), None, body)

    def modify_instance(self, name: str, **params: Any) -> int:
        """Submit ``OP_INSTANCE_SET_PARAMS`` with ``params`` (``disks``, ``nics``, ...)."""
        if not params or "instance_name" in params:
            raise InvalidInput("modify_instance needs parameters other than instance_name")
        return self._job_id("PUT", _instance(name, "modify"), None, params)

    def rename_instance(
        self, name: str, new_name: str, *, name_check: bool = True, ip_check: bool = True
    ) -> int:
        """Submit ``OP_INSTANCE_RENAME`` (the instance must be stopped)."""
        body = {"new_name": new_name, "name_check": name_check, "ip_check": ip_check}
        return self._job_id("PUT", _instance(name, "rename"), None, body)

    def instance_tags(self, name: str) -> list[str]:
        """The instance's tags."""
        return self._typed(_instance(name, "tags"), list, of=str)

    def add_instance_tags(self, name: str, tags: list[str], dry_run: bool = False) -> int:
        """Submit ``OP_TAGS_SET`` for the instance."""
        if not (isinstance(tags, list) and tags and all(isinstance(t, str) and t for t in tags)):
            raise InvalidInput(f"tags must be non-empty strings, got {answers.show(tags)}")
        path = _instance(name, "tags")
        query = [("tag", t) for t in tags] + _flags(dry_run=dry_run)
        return self._job_id("PUT", path, query)

    def job(self, job_id: int) -> Job:
        """A job's status, opcodes, results and log."""
        path = _job(job_id)
        return answers.parse_job(f"GET {path}", self._request("GET", path))

    def cancel_job(self, job_id: int) -> bool:
        """Ask Ganeti to cancel a job; True if Ganeti accepted (it may still finish)."""
        path = _job(job_id)
        return answers.cancel_answer(f"DELETE {path}", self._request("DELETE", path))

    # --- waiting -------------------------------------------------------------------------

    def wait_for_job(
        self,
        job_id: int,
        *,
        timeout: float = 600.0,
        on_progress: Callable[[int, str], None] | None = None,
    ) -> list[Any]:
        """Wait for a job to end and return its ``opresult`` list (one result per opcode).

        Long-polls ``/2/jobs/<id>/wait`` (needs a ``write`` user); ``on_progress(serial,
        message)`` sees each new log entry once. Raises :class:`JobFailed` (or
        :class:`HooksAborted`), :class:`JobCanceled`, or :class:`JobTimeout` once
        ``timeout`` seconds have passed (checked between polls; Ganeti answers a poll
        within about 10 s). A timeout leaves the job running.
        """
        path = _job(job_id, "wait")
        deadline = time.monotonic() + timeout
        watch = JobWatch()
        socket_timeout = max(self.timeout, _WAIT_SOCKET_TIMEOUT)
        while True:
            started = time.monotonic()
            value = self._request("GET", path, None, watch.wait_body(), timeout=socket_timeout)
            answer = answers.parse_wait_answer(f"GET {path}", value)
            if answer is not None:
                for entry in watch.update(answer):
                    if on_progress is not None:
                        on_progress(entry.serial, entry.message)
                if watch.done:
                    break
            now = time.monotonic()
            if now >= deadline:
                raise JobTimeout(
                    job_id,
                    f"job {job_id} did not finish within {timeout:g} s (last status "
                    f"{watch.status}); it was not canceled and may still finish",
                )
            if answer is None and now - started < _MIN_POLL_INTERVAL:
                time.sleep(min(_MIN_POLL_INTERVAL, deadline - now))
        return answers.job_outcome(job_id, self.job(job_id))
