"""The push endpoint: an authenticated POST starts a bounded run (functions/consumer/runtime.py).

On Lambda the run's budget is the invocation's remaining time (less grace and margin), so each lane's
function (its own Function URL, no API Gateway 30 s cut) can hold its longest job; elsewhere it is
`JOBQ_PUSH_BUDGET`.

QStash calls are verified against the current and the next signing key and deduplicated on what the
signature covers, its `jti` (one SET NX per push, kept while the signature is valid), so replaying a signed
request starts no second run whatever Upstash-Message-Id it carries (that header is not signed). QStash
signs each delivery afresh, so its own retry of a failed run goes through.
Whatever a bounded run leaves is picked up by the next trigger or the scheduled tick.

The app is plain Starlette (FastAPI's own base): two routes with no models and no OpenAPI to build, so a
consumer's cold start does not pay for FastAPI (docs/decisions.md, "Start-up").
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict
from http import HTTPStatus

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from functions.consumer.auth import PushAuth, signed_identity
from functions.consumer.runtime import PUSH_PATH, ConsumerRuntime, run_bounded, run_budget
from shared.codec import ms
from shared.errors import AuthError, JobqError

log = logging.getLogger("jobq.consumer")

DEDUPE_SECONDS = 24 * 3600  # the most a dedupe mark is kept (a signature's own expiry is far sooner)
RETRY_AFTER = "10"


def dedupe_key(prefix: str, identity: str) -> str:
    digest = hashlib.sha256(identity.encode()).hexdigest()[:32]
    return f"{prefix}:push:{digest}"


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def create_push_app(runtime: ConsumerRuntime) -> Starlette:
    auth = PushAuth(runtime.settings)

    async def consume(request: Request) -> JSONResponse:
        body = await request.body()
        try:
            how = auth.verify(
                signature=request.headers.get("upstash-signature"),
                authorization=request.headers.get("authorization"),
                body=body,
            )
        except AuthError as exc:
            return _error(401, exc.code, exc.message)
        key, keep = None, float(DEDUPE_SECONDS)
        signature = request.headers.get("upstash-signature")
        if how == "qstash" and signature is not None:
            identity, keep = signed_identity(signature, max_seconds=DEDUPE_SECONDS)
            key = dedupe_key(runtime.settings.key_prefix, identity)
        try:
            store = runtime.engine.store
            # SET NX replies OK (the SDK: True) the first time, nil (False) for a replay.
            if key is not None and not await store.command("SET", key, "1", "NX", "PX", ms(keep)):
                return JSONResponse({"duplicate": True})
            report = await run_bounded(runtime, _budget(request, runtime))
        except JobqError as exc:  # the store is down or erring: let the sender retry
            log.warning("pushed run failed: %s", exc)
            await _forget(runtime, key)
            return _error(
                503,
                "store_unavailable",
                "the store is unavailable; retry later",
                {"Retry-After": RETRY_AFTER},
            )
        return JSONResponse({"duplicate": False, "report": asdict(report)})

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        code = {404: "not_found", 405: "method_not_allowed"}.get(status, "http_error")
        return _error(status, code, f"{request.method} {request.url.path}: {HTTPStatus(status).phrase}")

    app = Starlette(
        routes=[Route(PUSH_PATH, consume, methods=["POST"]), Route("/health", health, methods=["GET"])],
        exception_handlers={HTTPException: http_error},
    )
    app.state.runtime = runtime
    return app


def _budget(request: Request, runtime: ConsumerRuntime) -> float:
    context = request.scope.get("aws.context")  # set by mangum on Lambda
    return run_budget(context, runtime.consumer.config.grace, default=runtime.settings.push_budget)


async def _forget(runtime: ConsumerRuntime, key: str | None) -> None:
    """Let the sender's retry of a failed run go through (best effort: the store may be down)."""
    if key is None:
        return
    try:
        await runtime.engine.store.command("DEL", key)
    except JobqError as exc:  # nothing more to do: the redelivery is then deduplicated
        log.warning("could not clear the dedupe mark: %s", exc)
