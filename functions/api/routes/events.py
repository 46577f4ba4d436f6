"""Server-sent event streams, each bounded in time and resumed with Last-Event-ID (functions/api/sse.py).

- /v1/jobs/{id}/events: a job's changes until it is terminal, or a long poll with ?wait=N. Cost: one
  engine GET (one Redis command) per poll interval per watching client, nothing else.
- /v1/events/queues (admin): every queue's job state changes, as the dashboard shows them. Cost: one
  XREAD for all queues per poll interval per open stream, plus one SMEMBERS per QUEUE_REFRESH_SECONDS
  to learn new queues.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import StreamingResponse

from functions.api.deps import AdminUser, CurrentUser, EngineDep, ServicesDep, job_id_or_404, owner_scope
from functions.api.schemas import JobChange
from functions.api.sse import (
    Mark,
    is_terminal,
    new_logs,
    poll_stream,
    sse,
    status_changed,
    status_of,
    stream_response,
)
from shared.engine import MAX_STREAM_PART, Engine, is_stream_id
from shared.models import NAME_PATTERN, Job

router = APIRouter()

MAX_WAIT = 25  # seconds: below API Gateway's 30 s integration timeout
QUEUE_REFRESH_SECONDS = 5.0
EVENTS_PER_READ = 100
MAX_CURSOR_CHARS = 8192
_QUEUE = re.compile(NAME_PATTERN)

EVENTS_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {
        "description": "text/event-stream of `status` and `log` events; JSON (JobChange) with ?wait=N",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    },
    204: {"description": "The job is terminal and the client has seen its last event: stop reconnecting"},
}


@router.get("/v1/jobs/{job_id}/events", response_model=JobChange, responses=EVENTS_RESPONSES, tags=["jobs"])
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
    return stream_response(_job_stream(engine, job, owner, seen, poll, services.settings.events_max_seconds))


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


def _job_stream(
    engine: Engine, job: Job, owner: str | None, seen: Mark | None, poll: float, max_seconds: float
) -> AsyncIterator[str]:
    first = True

    async def step() -> tuple[list[str], bool]:
        nonlocal job, seen, first
        if not first:
            job = await engine.get(job.id, owner=owner)
        first = False
        events: list[str] = []
        if _changed(job, seen):
            mark = Mark.of(job)
            events += [sse("log", json.dumps({"line": line})) for line in new_logs(job.logs, seen)]
            if status_changed(job, seen) or is_terminal(job):
                events.append(sse("status", status_of(job).model_dump_json(), mark.encode()))
            else:
                events.append(f"id: {mark.encode()}\n\n")
            seen = mark
        return events, is_terminal(job)

    return poll_stream(step, poll=poll, max_seconds=max_seconds)


# -- every queue (admin) ----------------------------------------------------------------------------

QUEUES_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {
        "description": "text/event-stream of `hello` and `jobs` events (state changes of every queue's jobs)",
        "content": {
            "text/event-stream": {
                "schema": {  # one event (OpenAPI before 3.2); `data` is JSON text
                    "type": "object",
                    "properties": {
                        "event": {"type": "string", "enum": ["hello", "jobs", "error"]},
                        "data": {"type": "string"},
                        "id": {"type": "string"},
                        "retry": {"type": "integer"},
                    },
                }
            }
        },
    },
}


@dataclass
class StreamCursor:
    """Where a client is in every queue's event stream, sent as the SSE id and returned as Last-Event-ID.

    `base` (epoch ms) is where the client's first connection started: a queue absent from `positions` has
    had nothing new for the client since then, so it is read from `base`. Encoded as
    `base~queue=ms-seq,queue=ms-seq`.
    """

    base: int
    positions: dict[str, str] = field(default_factory=dict)

    def after(self, queue: str) -> str:
        return self.positions.get(queue, f"{self.base}-0")

    def encode(self) -> str:
        return f"{self.base}~" + ",".join(f"{q}={pos}" for q, pos in sorted(self.positions.items()))

    @classmethod
    def decode(cls, raw: str | None, now_ms: int) -> StreamCursor:
        """A client-supplied id; anything malformed starts afresh from now."""
        base, _, rest = (raw or "").partition("~")
        if not (base.isascii() and base.isdigit() and len(base) <= 20 and int(base) <= MAX_STREAM_PART):
            return cls(base=now_ms)
        positions: dict[str, str] = {}
        for item in filter(None, rest.split(",")):
            queue, _, pos = item.rpartition("=")
            if not _QUEUE.fullmatch(queue) or not is_stream_id(pos):
                return cls(base=now_ms)
            positions[queue] = pos
        return cls(base=int(base), positions=positions)


@router.get("/v1/events/queues", response_model=None, responses=QUEUES_RESPONSES, tags=["queues"])
async def queue_events(
    _: AdminUser,
    engine: EngineDep,
    services: ServicesDep,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=MAX_CURSOR_CHARS)] = None,
) -> StreamingResponse:
    """Server-sent events of every queue's job state changes, polled from the per-queue event streams.
    Bounded in time (reconnect with Last-Event-ID to resume exactly where the last event left off)."""
    cursor = StreamCursor.decode(last_event_id, int(time.time() * 1000))
    queues = await engine.queue_names()  # fails fast (401/503) before streaming
    settings = services.settings
    return stream_response(
        _queue_stream(engine, cursor, queues, settings.events_poll_seconds, settings.events_max_seconds)
    )


def _queue_stream(
    engine: Engine, cursor: StreamCursor, queues: list[str], poll: float, max_seconds: float
) -> AsyncIterator[str]:
    refreshed = time.monotonic()

    async def step() -> tuple[list[str], bool]:
        nonlocal queues, refreshed
        if time.monotonic() - refreshed >= QUEUE_REFRESH_SECONDS:
            queues, refreshed = await engine.queue_names(), time.monotonic()
        found = await _read(engine, cursor, queues)
        return ([sse("jobs", json.dumps({"events": found}), cursor.encode())] if found else []), False

    hello = sse("hello", json.dumps({"queues": queues}), cursor.encode())
    return poll_stream(step, poll=poll, max_seconds=max_seconds, opening=[hello])


async def _read(engine: Engine, cursor: StreamCursor, queues: list[str]) -> list[dict[str, object]]:
    batches = await engine.events_since({q: cursor.after(q) for q in queues}, count=EVENTS_PER_READ)
    found: list[dict[str, object]] = []
    for queue, events in batches.items():
        if events:
            cursor.positions[queue] = events[-1].id
        for e in events:
            row: dict[str, object] = {"queue": queue, "job_id": e.job_id, "state": e.state}
            found.append(row | {"progress": e.progress, "at": e.at.isoformat()})
    return found
