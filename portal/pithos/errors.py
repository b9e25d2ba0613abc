"""The object store's errors, each with the status and OpenStack fault name it answers with."""

from __future__ import annotations

from snf.common.errors import Conflict, InvalidInput, NotFound, SnfError


class BadRequest(InvalidInput):
    """400: a malformed name, header, parameter or body."""


class ItemNotFound(NotFound):
    """404: no such account, container, object or version."""


class Forbidden(SnfError):
    """403: the caller may not read or write this."""

    http_status = 403
    openstack_name = "forbidden"


class ContainerNotEmpty(Conflict):
    """409: a container that still holds objects cannot be deleted."""

    openstack_name = "conflict"


class LengthRequired(SnfError):
    """411: a PUT without Content-Length or chunked transfer (or without Content-Type)."""

    http_status = 411
    openstack_name = "lengthRequired"


class PreconditionFailed(SnfError):
    """412: If-Match / If-None-Match / If-Unmodified-Since did not hold for a write."""

    http_status = 412
    openstack_name = "preconditionFailed"


class OverQuota(SnfError):
    """413: the upload would exceed the account's or the container's quota."""

    http_status = 413
    openstack_name = "overLimit"


class RangeNotSatisfiable(SnfError):
    """416: no requested range overlaps the object (``size`` goes into Content-Range)."""

    http_status = 416
    openstack_name = "rangeNotSatisfiable"

    def __init__(self, message: str, size: int) -> None:
        super().__init__(message)
        self.size = size


class Unprocessable(SnfError):
    """422: the body's MD5 differs from the ETag the client sent."""

    http_status = 422
    openstack_name = "unprocessableEntity"
