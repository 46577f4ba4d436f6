"""Every failure answers `{"error": {"code", "message", "field"?}}` with its error class's HTTP status."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from functions.api.middleware import printable
from functions.api.schemas import ErrorBody
from shared.errors import (
    JobqError,
    RateLimitedError,
    SingletonConflictError,
    StoreUnavailableError,
    validation_message,
)

log = logging.getLogger("jobq.api")

# Documented on every route, so clients and the schema fuzzer know every status the API may answer.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in {
        400: "Malformed request (e.g. invalid JSON)",
        401: "Missing or invalid credentials",
        403: "Admin credentials required",
        404: "Not found (or not yours)",
        409: "Conflict (idempotency key reused, or invalid state transition)",
        413: "Body, batch or payload too large",
        422: "Invalid input; `field` names it",
        429: "Rate limited; see Retry-After",
        500: "Internal error; quote the request id",
        503: "Redis unavailable; see Retry-After",
    }.items()
}

STORE_RETRY_AFTER = 5  # seconds a client should wait when Redis is unreachable
STORE_UNAVAILABLE_MESSAGE = "the store is unavailable; retry later"

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "too_large",
    415: "unsupported_media_type",
}


def public_message(exc: JobqError) -> str:
    """What a caller may read of an error: a server-side failure's detail stays in the log."""
    if isinstance(exc, StoreUnavailableError):
        return STORE_UNAVAILABLE_MESSAGE
    return "internal error" if exc.status_code >= 500 else exc.message


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    field: str | None = None,
    headers: dict[str, str] | None = None,
    request_id: str | None = None,
    job_id: str | None = None,
) -> JSONResponse:
    detail: dict[str, Any] = {"code": code, "message": printable(message)}
    if field is not None:
        detail["field"] = printable(field)
    if job_id is not None:  # the job a conflict is with (a singleton key's holder)
        detail["job_id"] = job_id
    if request_id is not None:
        detail["request_id"] = request_id
    return JSONResponse({"error": detail}, status_code=status, headers=headers)


def field_name(loc: Sequence[int | str]) -> str | None:
    """('body', 'jobs', 3, 'payload', 'url') -> 'jobs[3].payload.url'; query and path names stay bare."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    name = ""
    for part in parts:
        if isinstance(part, int):
            name += f"[{part}]"
        else:
            name += f".{part}" if name else str(part)
    return name or None


async def _jobq_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, JobqError)
    headers: dict[str, str] = {}
    if isinstance(exc, RateLimitedError):
        headers["Retry-After"] = str(int(exc.retry_after))
    elif isinstance(exc, StoreUnavailableError):
        # The detail (which may name the backend's host and port) goes to the log, never to the caller.
        headers["Retry-After"] = str(STORE_RETRY_AFTER)
        log.warning("store unavailable: %s", exc.message, extra={"request_id": _request_id(request)})
        return error_response(
            exc.status_code, exc.code, STORE_UNAVAILABLE_MESSAGE, headers=headers, field=exc.field
        )
    if exc.status_code == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if exc.status_code >= 500 and not isinstance(exc, StoreUnavailableError):
        request_id = _request_id(request)
        log.error("store error %s: %s", exc.code, exc.message, extra={"request_id": request_id})
        return error_response(500, "internal", "internal error", request_id=request_id)
    job_id = exc.job_id if isinstance(exc, SingletonConflictError) else None
    if job_id is not None:
        headers["Location"] = f"/v1/jobs/{job_id}"
    return error_response(
        exc.status_code, exc.code, exc.message, field=exc.field, headers=headers, job_id=job_id
    )


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request", "type": ""}
    if first.get("type") == "json_invalid":
        return error_response(400, "invalid_json", "the request body is not valid JSON", field="body")
    message = validation_message(first)
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more)"
    return error_response(422, "invalid", message, field=field_name(first.get("loc", ())) or "body")


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "error")
    headers = dict(exc.headers or {})
    message = str(exc.detail)
    if exc.status_code == 405 and headers.get("Allow"):
        message = f"{request.method} is not allowed on {request.url.path}; allowed: {headers['Allow']}"
    return error_response(exc.status_code, code, message, headers=headers)


async def _transport_error(request: Request, exc: Exception) -> JSONResponse:
    """A Redis transport failure that reached us unwrapped is still an outage, not a bug in the request."""
    return await _jobq_error(request, StoreUnavailableError(f"Redis is unavailable ({type(exc).__name__})"))


def _request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(JobqError, _jobq_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(httpx.TransportError, _transport_error)
