"""The push endpoint: an authenticated POST starts a bounded run (functions/consumer/runtime.py).

On Lambda the run's budget is the invocation's remaining time (less grace and margin), so each lane's
function (its own Function URL, no API Gateway 30 s cut) can hold its longest job; elsewhere it is
`JOBQ_PUSH_BUDGET`.

QStash calls are verified against the current and the next signing key and deduplicated on
`Upstash-Message-Id` (one SET NX per push), so a redelivered message does not start a second run.
Whatever a bounded run leaves is picked up by the next trigger or the scheduled tick.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from functions.consumer.auth import PushAuth
from functions.consumer.runtime import ConsumerRuntime, run_bounded, run_budget
from shared.errors import AuthError, JobqError

log = logging.getLogger("jobq.consumer")

PUSH_PATH = "/consume"
DEDUPE_SECONDS = 24 * 3600  # longer than QStash keeps retrying a message
RETRY_AFTER = "10"


def dedupe_key(prefix: str, message_id: str) -> str:
    digest = hashlib.sha256(message_id.encode()).hexdigest()[:32]
    return f"{prefix}:push:{digest}"


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def create_push_app(runtime: ConsumerRuntime) -> FastAPI:
    app = FastAPI(title="jobq consumer", version="1", docs_url=None, redoc_url=None, openapi_url=None)
    auth = PushAuth(runtime.settings)
    app.state.runtime = runtime

    @app.post(PUSH_PATH)
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
        message_id = request.headers.get("upstash-message-id") if how == "qstash" else None
        key = dedupe_key(runtime.settings.key_prefix, message_id) if message_id else None
        try:
            store = runtime.engine.store
            # SET NX replies OK (the SDK: True) the first time, nil (False) for a redelivery.
            if key is not None and not await store.command("SET", key, "1", "NX", "EX", DEDUPE_SECONDS):
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

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"ok": True}

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
