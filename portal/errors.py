"""Errors in OpenStack's JSON shape: ``{"<fault>": {"code", "message", "details"}}``.

Every error a client sees goes through here: snf errors keep their status and fault name,
Werkzeug's HTTP errors get the fault of their status, anything else is a 500 whose
traceback goes to the log only.  An unknown path answers 400 "API endpoint not found", as
Synnefo does.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, render_template, request
from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.http import HTTP_STATUS_CODES

from snf.common.errors import SnfError

log = logging.getLogger("snf.portal")

FAULTS = {
    400: "badRequest",
    401: "unauthorized",
    403: "forbidden",
    404: "itemNotFound",
    405: "notAllowed",
    409: "conflict",
    411: "lengthRequired",
    412: "preconditionFailed",
    413: "overLimit",
    415: "badMediaType",
    416: "rangeNotSatisfiable",
    422: "unprocessableEntity",
    429: "overLimit",
    500: "computeFault",
    501: "notImplemented",
    503: "serviceUnavailable",
}


class ApiError(SnfError):
    """An API answer other than success, raised from views."""

    def __init__(self, status: int, message: str, *, fault: str | None = None, details: str = ""):
        super().__init__(message)
        self.http_status = status
        self.openstack_name = fault or FAULTS.get(status, "computeFault")
        self.details = details


def Unauthorized(
    message: str = "This server could not verify that you are authorized.",
) -> ApiError:
    return ApiError(401, message)


def fault(status: int, message: str, name: str | None = None, details: str = "") -> Response:
    name = name or FAULTS.get(status, "computeFault")
    body = {name: {"code": status, "message": message, "details": details}}
    response = jsonify(body)
    response.status_code = status
    return response


def _is_page() -> bool:
    """The web UI answers errors with a page; every API with JSON."""
    return request.path == "/ui" or request.path.startswith("/ui/")


def page(status: int, message: str) -> Response:
    title = "Error" if status >= 500 else HTTP_STATUS_CODES.get(status, "Error")
    body = render_template("message.html", title=title, message=message)
    return Response(body, status=status, mimetype="text/html")


def init_app(app: Flask) -> None:
    @app.errorhandler(SnfError)
    def snf_error(exc: SnfError) -> Response:
        if _is_page():
            return page(exc.http_status, str(exc))
        return fault(exc.http_status, str(exc), exc.openstack_name, getattr(exc, "details", ""))

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        if _is_page():
            return page(exc.code or 500, exc.description or exc.name)
        if isinstance(exc, NotFound):
            return fault(400, "API endpoint not found")
        response = fault(exc.code or 500, exc.description or exc.name)
        if exc.code == 405 and exc.valid_methods:  # type: ignore[attr-defined]
            response.headers["Allow"] = ", ".join(exc.valid_methods)  # type: ignore[attr-defined]
        return response

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        log.exception("unexpected error")
        if _is_page():
            return page(500, "Something went wrong on our side; it has been logged.")
        return fault(500, "internal error: see the portal's log")
