"""/v1/jobs/{id}/events: server-sent events of a job until it is terminal, or a long poll with ?wait=N.

Cost: one engine GET (one Redis command) per poll interval per watching client, nothing else.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import StreamingResponse

from functions.api.deps import CurrentUser, EngineDep, ServicesDep, job_id_or_404, owner_scope
from functions.api.errors import public_message
from functions.api.schemas import JobChange
from functions.api.sse import Mark, is_terminal, new_logs, sse, status_changed, status_of
from shared.engine import Engine
from shared.errors import JobqError
from shared.models import Job

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

MAX_WAIT = 25  # seconds: below API Gateway's 30 s integration timeout
KEEPALIVE_SECONDS = 15.0
RECONNECT_MS = 2000

EVENTS_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {
        "description": "text/event-stream of `status` and `log` events; JSON (JobChange) with ?wait=N",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    },
    204: {"description": "The job is terminal and the client has seen its last event: stop reconnecting"},
}


@router.get("/{job_id}/events", response_model=JobChange, responses=EVENTS_RESPONSES)
async def job_events(
    job_id: str,
    user: CurrentUser,
    engine: EngineDep,
    services: ServicesDep,
    wait: Annotated[float | None, Query(ge=0, le=MAX_WAIT)] = None,
    since: Annotated[str | None, Query(max_length=64)] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=64)] = None,
) -> Response:
    """Stream a job's state, progress and log lines until it is terminal (bounded in time; reconnect with
    Last-Event-ID). With `?wait=N` (for API Gateway, which cannot stream): answer as soon as something
    changed since `since`/Last-Event-ID, or after N seconds with `changed: false`."""
    owner = owner_scope(user)
    job = await engine.get(job_id_or_404(job_id), owner=owner)
    seen = Mark.decode(since or last_event_id)
    poll = services.settings.events_poll_seconds
    if wait is not None:
        change = await _long_poll(engine, job, owner, seen, wait, poll)
        return Response(change.model_dump_json(), media_type="application/json")
    if is_terminal(job) and seen is not None and not _changed(job, seen):
        return Response(status_code=204)
    stream = _stream(engine, job, owner, seen, poll, services.settings.events_max_seconds)
    return StreamingResponse(
        stream,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _changed(job: Job, seen: Mark | None) -> bool:
    return status_changed(job, seen) or bool(new_logs(job.logs, seen))


async def _long_poll(
    engine: Engine, job: Job, owner: str | None, seen: Mark | None, wait: float, poll: float
) -> JobChange:
    deadline = time.monotonic() + wait
    while not _changed(job, seen) and not is_terminal(job) and time.monotonic() < deadline:
        await asyncio.sleep(min(poll, max(0.0, deadline - time.monotonic())))
        job = await engine.get(job.id, owner=owner)
    changed = _changed(job, seen)
    return JobChange(
        event_id=Mark.of(job).encode(),
        changed=changed,
        terminal=is_terminal(job),
        status=status_of(job),
        logs=new_logs(job.logs, seen) if changed else [],
    )


async def _stream(
    engine: Engine, job: Job, owner: str | None, seen: Mark | None, poll: float, max_seconds: float
) -> AsyncIterator[str]:
    yield f"retry: {RECONNECT_MS}\n\n"
    deadline = time.monotonic() + max_seconds
    quiet_since = time.monotonic()
    while True:
        if _changed(job, seen):
            mark = Mark.of(job)
            for line in new_logs(job.logs, seen):
                yield sse("log", json.dumps({"line": line}))
            if status_changed(job, seen) or is_terminal(job):
                yield sse("status", status_of(job).model_dump_json(), mark.encode())
            else:
                yield f"id: {mark.encode()}\n\n"
            seen, quiet_since = mark, time.monotonic()
        if is_terminal(job) or time.monotonic() >= deadline:
            return
        if time.monotonic() - quiet_since >= KEEPALIVE_SECONDS:
            yield ": keep-alive\n\n"
            quiet_since = time.monotonic()
        await asyncio.sleep(min(poll, max(0.0, deadline - time.monotonic())))
        try:
            job = await engine.get(job.id, owner=owner)
        except JobqError as exc:
            yield sse("error", json.dumps({"code": exc.code, "message": public_message(exc)}))
            return
