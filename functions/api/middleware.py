"""Pure ASGI middleware: request ids, access log and last-resort 500; a body bound enforced before parsing;
the sync token of read-your-writes (shared/freshness.py)."""

from __future__ import annotations

import json
import logging
import math
import re
import secrets
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared import freshness
from shared.limits import MAX_JSON_DEPTH
from shared.logs import ACCESS_LOGGER

log = logging.getLogger("jobq.api")
access_log = logging.getLogger(ACCESS_LOGGER)

_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


async def _send_error(
    send: Send,
    status: int,
    code: str,
    message: str,
    request_id: str | None = None,
    field: str | None = None,
) -> None:
    detail: dict[str, str] = {"code": code, "message": printable(message)}
    if field is not None:
        detail["field"] = printable(field)
    if request_id:
        detail["request_id"] = request_id
    body = json.dumps({"error": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if request_id:
        headers.append((b"x-request-id", request_id.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def printable(text: str) -> str:
    """Text safe to send as UTF-8: a lone surrogate (from a hostile key name, say) is shown escaped."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class RequestIdMiddleware:
    """Tags each request and response with an id; an unexpected exception becomes a 500 logged with it.

    Also writes the access log: one line per request (method, path without the query string, status,
    duration_ms, request_id, and owner once auth has set it), never headers or bodies.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _SAFE_REQUEST_ID.match(incoming) else secrets.token_hex(8)
        scope.setdefault("state", {})["request_id"] = request_id
        # 499 (as nginx logs it) if the client goes away before any answer, 500 if the app raises.
        started, status, began = False, 499, time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal started, status
            if message["type"] == "http.response.start":
                started, status = True, message["status"]
                headers = message.get("headers", [])
                if not any(name.lower() == b"x-request-id" for name, _ in headers):  # _send_error's has it
                    message["headers"] = [*headers, (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error", extra={"request_id": request_id})
            status = status if started else 500
            if not started:
                await _send_error(send, 500, "internal", "internal error", request_id)
        finally:
            _access_log(scope, status, began, request_id)


def _access_log(scope: Scope, status: int, began: float, request_id: str) -> None:
    fields = {
        "method": scope["method"],
        "path": scope["path"],
        "status": status,
        "duration_ms": round((time.perf_counter() - began) * 1000, 1),
        "request_id": request_id,
    }
    owner = scope["state"].get("owner")
    if owner is not None:
        fields["owner"] = owner
    access_log.log(logging.ERROR if status >= 500 else logging.INFO, "request", extra=fields)


class BodyLimitMiddleware:
    """Refuses bodies over `max_bytes` with 413 before any parsing, whether sized or chunked."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = scope.get("state", {}).get("request_id")
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await _send_error(send, 400, "bad_request", "invalid Content-Length header", request_id)
                return
            if int(declared) > self.max_bytes:
                await _send_error(send, 413, "too_large", self._too_large(), request_id)
                return
        buffered: list[Message] = []
        size = 0
        while True:
            message = await receive()
            buffered.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await _send_error(send, 413, "too_large", self._too_large(), request_id)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return buffered.pop(0) if buffered else await receive()

        await self.app(scope, replay, send)

    def _too_large(self) -> str:
        return f"request body exceeds {self.max_bytes} bytes"


class SyncTokenMiddleware:
    """Read-your-writes across instances: a request's `Jobq-Sync-Token` goes with its Redis calls, and its
    answer carries the token of its last Redis call (none if it made none). A malformed token is a 400."""

    header = freshness.HEADER.lower().encode()

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = [value for name, value in scope["headers"] if name == self.header]
        try:
            if len(sent) > 1:
                raise ValueError(f"send one {freshness.HEADER} header, not {len(sent)}")
            token = freshness.check_token(sent[0].decode("latin-1")) if sent else None
        except ValueError as exc:
            request_id = scope.get("state", {}).get("request_id")
            await _send_error(send, 400, "invalid_header", str(exc), request_id, freshness.HEADER)
            return
        with freshness.session(token) as current:

            async def send_with_token(message: Message) -> None:
                if message["type"] == "http.response.start" and current.token:
                    headers = [*message.get("headers", []), (self.header, current.token.encode("latin-1"))]
                    message = {**message, "headers": headers}
                await send(message)

            await self.app(scope, receive, send_with_token)


class BodyRefusedError(Exception):
    """Why StrictJsonMiddleware refuses a body: the answer's status, code, message and field."""

    def __init__(self, status: int, code: str, message: str, field: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field


NOT_JSON = "the body must be JSON: send Content-Type: application/json"


class StrictJsonMiddleware:
    """Refuses, before any route runs, a body sent without a JSON Content-Type (415: `curl -d` sends a
    form's) and JSON bodies that Python's parser would let through but that are not JSON or cannot be
    stored: NaN and Infinity (400 invalid_json), duplicate member names (400: which one wins differs between
    parsers), text that is not UTF-8 (400), numbers too large for a float, lone UTF-16 surrogates and
    nesting deeper than MAX_JSON_DEPTH (422, naming the field).

    Sits inside BodyLimitMiddleware, so the body it buffers is already bounded.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH", "DELETE"):
            await self.app(scope, receive, send)
            return
        content_type = dict(scope["headers"]).get(b"content-type", b"").decode("latin-1").lower()
        buffered: list[Message] = []
        body = b""
        while True:
            message = await receive()
            buffered.append(message)
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        if body.strip():
            try:
                if "json" not in content_type:  # every body this API takes is JSON
                    raise BodyRefusedError(415, "unsupported_media_type", NOT_JSON, "content-type")
                check_json(body)
            except BodyRefusedError as refused:
                request_id = scope.get("state", {}).get("request_id")
                await _send_error(
                    send, refused.status, refused.code, refused.message, request_id, refused.field
                )
                return

        async def replay() -> Message:
            return buffered.pop(0) if buffered else await receive()

        await self.app(scope, replay, send)


def _no_constant(name: str) -> Any:
    raise BodyRefusedError(400, "invalid_json", f"{name} is not JSON (use null or a string)", "body")


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    members: dict[str, Any] = {}
    for key, value in pairs:
        if key in members:
            message = f"the member {key!r} appears twice in one object"
            raise BodyRefusedError(400, "invalid_json", message, key or "body")
        members[key] = value
    return members


def check_json(body: bytes) -> Any:
    """The parsed body, or BodyRefusedError saying what is wrong and where."""
    try:
        text = body.decode("utf-8")  # strict: surrogate code points encoded as UTF-8 are refused too
    except UnicodeDecodeError:
        raise BodyRefusedError(400, "invalid_json", "the request body is not UTF-8", "body") from None
    try:
        value = json.loads(text, parse_constant=_no_constant, object_pairs_hook=_unique_members)
    except RecursionError:
        message = f"the body nests deeper than {MAX_JSON_DEPTH} levels"
        raise BodyRefusedError(422, "invalid", message, "body") from None
    except ValueError:  # also the digit limit of int(): a number thousands of digits long
        raise BodyRefusedError(400, "invalid_json", "the request body is not valid JSON", "body") from None
    _walk(value)
    return value


def _walk(value: Any) -> None:
    """Depth, lone surrogates and out-of-range numbers anywhere in a parsed body (iterative)."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, ())]
    while stack:
        item, path = stack.pop()
        if isinstance(item, dict):
            if len(path) >= MAX_JSON_DEPTH:
                _refuse(path, f"nests deeper than {MAX_JSON_DEPTH} levels", short=True)
            for key, child in item.items():
                if _has_surrogate(key):
                    _refuse((*path, key), "is a member name with a lone UTF-16 surrogate")
                stack.append((child, (*path, key)))
        elif isinstance(item, list):
            if len(path) >= MAX_JSON_DEPTH:
                _refuse(path, f"nests deeper than {MAX_JSON_DEPTH} levels", short=True)
            stack.extend((child, (*path, index)) for index, child in enumerate(item))
        elif isinstance(item, str):
            if _has_surrogate(item):
                _refuse(path, "holds a lone UTF-16 surrogate, which UTF-8 cannot carry")
        elif isinstance(item, float) and not math.isfinite(item):
            _refuse(path, "is a number too large to represent")


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _refuse(path: tuple[str | int, ...], message: str, *, short: bool = False) -> None:
    if short:  # a deep value is named by the member it starts in, not by hundreds of indexes
        path = path[:4]
        while path and isinstance(path[-1], int):
            path = path[:-1]
    name = ""
    for part in path:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    name = name or "body"
    raise BodyRefusedError(422, "invalid", f"{name} {message}", name)
