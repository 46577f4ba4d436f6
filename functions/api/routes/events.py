"""Server-sent events, or a long poll with ?wait=N where nothing can stream (API Gateway):

- /v1/jobs/{id}/events: one job until it is terminal. Cost: one engine GET (one Redis command) per poll
  interval per watching client, nothing else.
- /v1/events: every change to the caller's jobs, by tag and queue. Cost per poll, whatever the number of
  jobs: functions/api/sse.py OwnerFeed.
- /v1/events/queues (admin): every queue's job state changes, as the dashboard shows them. Cost: one
  XREAD for all queues per poll interval per open stream, plus one SMEMBERS per QUEUE_REFRESH_SECONDS
  to learn new queues.

Every stream runs the one loop in functions/api/sse.py (poll_stream).

The first two accept a browser token as `?access_token=` (EventSource cannot send a header).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Header, Query, Response
from fastapi.responses import StreamingResponse

from functions.api.deferred import api_router
from functions.api.deps import (
    AdminUser,
    EngineDep,
    ServicesDep,
    StreamUser,
    job_id_or_404,
    owner_scope,
    sees,
)
from functions.api.schemas import JobChange, JobUpdates
from functions.api.sse import (
    QUEUE_REFRESH_SECONDS,
    Mark,
    OwnerFeed,
    StreamCursor,
    Watch,
    is_terminal,
    new_logs,
    poll_stream,
    sse,
    status_changed,
    status_of,
    stream_response,
)
from shared.engine import Engine
from shared.errors import ForbiddenError, JobNotFoundError
from shared.ids import split_id
from shared.models import NAME_PATTERN, TAG_PATTERN, Job

router = api_router(tags=["events"])

MAX_WAIT = 25  # seconds: below API Gateway's 30 s integration timeout
MAX_CURSOR_CHARS = 8192

EVENTS_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {
        "description": "text/event-stream of `status` and `log` events; JSON (JobChange) with ?wait=N",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    },
    204: {"description": "The job is terminal and the client has seen its last event: stop reconnecting"},
}


@router.get("/v1/jobs/{job_id}/events", response_model=JobChange, responses=EVENTS_RESPONSES)
async def job_events(
    job_id: str,
    user: StreamUser,
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
    if not sees(user, job):
        raise JobNotFoundError("job not found")
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


def stream_responses(description: str, events: list[str]) -> dict[int | str, dict[str, object]]:
    """A stream's 200 in the OpenAPI schema: one event (OpenAPI before 3.2), whose `data` is JSON text."""
    event = {
        "type": "object",
        "properties": {
            "event": {"type": "string", "enum": events},
            "data": {"type": "string"},
            "id": {"type": "string"},
            "retry": {"type": "integer"},
        },
    }
    return {200: {"description": description, "content": {"text/event-stream": {"schema": event}}}}


FEED_RESPONSES = stream_responses(
    "text/event-stream of `hello` and `job` (JobUpdate) events; JSON (JobUpdates) with ?wait=N",
    ["hello", "job", "error"],
)


@router.get("/v1/events", response_model=JobUpdates, responses=FEED_RESPONSES)
async def owner_events(
    user: StreamUser,
    engine: EngineDep,
    services: ServicesDep,
    tag: Annotated[str | None, Query(pattern=TAG_PATTERN, description="Only jobs with this tag")] = None,
    queue: Annotated[str | None, Query(pattern=NAME_PATTERN, description="Only this queue's jobs")] = None,
    wait: Annotated[float | None, Query(ge=0, le=MAX_WAIT)] = None,
    since: Annotated[str | None, Query(max_length=MAX_CURSOR_CHARS)] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=MAX_CURSOR_CHARS)] = None,
) -> Response:
    """Stream every change to the caller's jobs (state, progress, log lines), by tag and queue, bounded in
    time (reconnect with Last-Event-ID to resume). With `?wait=N`: answer as soon as something changed
    since `since`/Last-Event-ID, or after N seconds with no updates."""
    if user.tag is not None:
        if tag not in (None, user.tag):
            raise ForbiddenError("this token sees only its own tag's jobs", field="tag")
        tag = user.tag
    cursor = StreamCursor.decode(since or last_event_id, int(time.time() * 1000))
    feed = OwnerFeed(engine, Watch(owner=user.owner, tag=tag, queue=queue), cursor)
    queues = [queue] if queue is not None else await engine.queue_names()  # fails fast (503) before streaming
    settings = services.settings
    if wait is not None:
        held = min(wait, settings.events_max_seconds)  # no longer than a stream stays open
        answer = await _feed_poll(feed, queues, held, settings.events_poll_seconds)
        return Response(answer.model_dump_json(), media_type="application/json")
    await feed.follow_active()
    return stream_response(
        _feed_stream(feed, queues, settings.events_poll_seconds, settings.events_max_seconds)
    )


async def _queues(
    engine: Engine, queues: list[str], refreshed: float, *, watched: str | None = None
) -> tuple[list[str], float]:
    """Every queue's name again every QUEUE_REFRESH_SECONDS (one SMEMBERS), unless one queue is watched."""
    if watched is not None or time.monotonic() - refreshed < QUEUE_REFRESH_SECONDS:
        return queues, refreshed
    return await engine.queue_names(), time.monotonic()


async def _feed_poll(feed: OwnerFeed, queues: list[str], wait: float, poll: float) -> JobUpdates:
    deadline = refreshed = time.monotonic()
    deadline += wait
    while True:
        queues, refreshed = await _queues(feed.engine, queues, refreshed, watched=feed.watch.queue)
        updates = await feed.poll(queues, remember=False)
        if updates or time.monotonic() >= deadline:
            return JobUpdates(event_id=feed.cursor.encode(), updates=updates)
        await asyncio.sleep(min(poll, max(0.0, deadline - time.monotonic())))


def _feed_stream(feed: OwnerFeed, queues: list[str], poll: float, max_seconds: float) -> AsyncIterator[str]:
    refreshed = time.monotonic()
    sent = feed.cursor.encode()

    async def step() -> tuple[list[str], bool]:
        nonlocal queues, refreshed, sent
        queues, refreshed = await _queues(feed.engine, queues, refreshed, watched=feed.watch.queue)
        updates = await feed.poll(queues)
        position, moved = feed.cursor.encode(), feed.cursor.encode() != sent
        sent = position
        if not updates:  # other owners' events moved the cursor: a bare id, so a resume skips them too
            return ([f"id: {position}\n\n"] if moved else []), False
        last = len(updates) - 1  # the id on the batch's last event: a resume never skips one
        events = [
            sse("job", update.model_dump_json(), position if index == last else None)
            for index, update in enumerate(updates)
        ]
        return events, False

    hello = sse("hello", json.dumps({"queue": feed.watch.queue, "tag": feed.watch.tag}), feed.cursor.encode())
    return poll_stream(step, poll=poll, max_seconds=max_seconds, opening=[hello])


# -- every queue (admin) ----------------------------------------------------------------------------

QUEUES_RESPONSES = stream_responses(
    "text/event-stream of `hello` and `jobs` events (state changes of every queue's jobs)",
    ["hello", "jobs", "error"],
)


@router.get("/v1/events/queues", response_model=None, responses=QUEUES_RESPONSES)
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
        queues, refreshed = await _queues(engine, queues, refreshed)
        found = await _read(engine, cursor, queues)
        return ([sse("jobs", json.dumps({"events": found}), cursor.encode())] if found else []), False

    hello = sse("hello", json.dumps({"queues": queues}), cursor.encode())
    return poll_stream(step, poll=poll, max_seconds=max_seconds, opening=[hello])


async def _read(engine: Engine, cursor: StreamCursor, queues: list[str]) -> list[dict[str, object]]:
    return [
        {"queue": split_id(e.job_id)[1], "job_id": e.job_id, "state": e.state}
        | {"progress": e.progress, "at": e.at.isoformat()}
        for e in await cursor.read(engine, queues)
    ]
