"""The snf error tree.

Every error that snf code raises on purpose derives from :class:`SnfError`. Each class
carries what its two kinds of callers need: ``exit_code`` for command-line tools (which print
the message as one line on stderr, see :func:`snf.common.cli.run_main`) and ``http_status`` /
``openstack_name`` for the APIs (which answer in OpenStack's JSON error shape). Messages are
written for the person who reads them: they name the thing that is wrong and the value.

This is a leaf module: it imports nothing from snf.
"""

from __future__ import annotations

from typing import Any


class SnfError(Exception):
    """Root of every error snf raises on purpose."""

    exit_code: int = 1
    http_status: int = 500
    openstack_name: str = "computeFault"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        # Subclasses take other constructor arguments: rebuild from the attributes instead,
        # so every snf error survives pickling (multiprocessing, forked test helpers).
        return (_rebuild, (type(self), self.message, self.__dict__))


def _rebuild(cls: type[SnfError], message: str, state: dict[str, Any]) -> SnfError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class ConfigError(SnfError):
    """A configuration file cannot be read, or holds a bad value."""

    exit_code = 2


class InvalidInput(SnfError):
    """A value given by a user, an API client, Ganeti or a file is not acceptable."""

    exit_code = 2
    http_status = 400
    openstack_name = "badRequest"


class NotFound(SnfError):
    """The named thing does not exist."""

    http_status = 404
    openstack_name = "itemNotFound"


class Conflict(SnfError):
    """The request conflicts with the current state of the thing."""

    http_status = 409
    openstack_name = "conflictingRequest"


class CommandFailed(SnfError):
    """An external command exited non-zero."""

    def __init__(self, argv: list[str], returncode: int, output: str) -> None:
        tail = output.strip().splitlines()[-1:] if output.strip() else []
        detail = f": {tail[0]}" if tail else ""
        super().__init__(f"{argv[0]} exited with status {returncode}{detail}")
        self.argv = argv
        self.returncode = returncode
        self.output = output


# --- Ganeti's Remote API -------------------------------------------------------------------


class RapiError(SnfError):
    """Ganeti's Remote API could not do what was asked."""

    http_status = 503
    openstack_name = "serviceUnavailable"


class RapiConnectionError(RapiError):
    """The RAPI daemon cannot be reached (refused, timed out, TLS failure)."""


class RapiCertificateMismatch(RapiConnectionError):
    """The RAPI server's certificate is not the pinned one."""


class RapiHttpError(RapiError):
    """RAPI answered with an HTTP error; ``status`` and Ganeti's ``explain`` are kept."""

    def __init__(self, status: int, message: str, explain: str = "") -> None:
        super().__init__(f"RAPI error {status}: {message}")
        self.status = status
        self.explain = explain


class RapiAuthError(RapiHttpError):
    """RAPI refused the credentials (401) or the user lacks write access (403)."""


class RapiNotFound(RapiHttpError):
    """RAPI answered 404: no such instance, job, node, ..."""

    http_status = 404
    openstack_name = "itemNotFound"


class JobError(RapiError):
    """A Ganeti job did not succeed."""

    def __init__(self, job_id: int, message: str) -> None:
        super().__init__(message)
        self.job_id = job_id


class JobFailed(JobError):
    """A Ganeti job ended in status ``error``.

    ``error_class`` is Ganeti's exception class name (``OpPrereqError``, ``HooksAbort``, ...),
    ``detail`` the message Ganeti gave, ``ecode`` Ganeti's error category when it sent one.
    """

    def __init__(
        self, job_id: int, error_class: str, detail: str, ecode: str | None = None
    ) -> None:
        super().__init__(job_id, f"job {job_id} failed: {error_class}: {detail}")
        self.error_class = error_class
        self.detail = detail
        self.ecode = ecode


class JobCanceled(JobError):
    """A Ganeti job was canceled before it finished."""


class JobTimeout(JobError):
    """A Ganeti job did not finish within the time the caller allowed."""
