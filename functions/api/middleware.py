"""Pure ASGI middleware: request ids, access log and last-resort 500; a body bound enforced before parsing."""

from __future__ import annotations

import json
import logging
import re
import secrets
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("jobq.api")

_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


async def _send_error(
    send: Send, status: int, code: str, message: str, request_id: str | None = None
) -> None:
    detail: dict[str, str] = {"code": code, "message": message}
    if request_id:
        detail["request_id"] = request_id
    body = json.dumps({"error": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if request_id:
        headers.append((b"x-request-id", request_id.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


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
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
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
    log.log(logging.ERROR if status >= 500 else logging.INFO, "request", extra=fields)


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
