"""The operator dashboard: `/dashboard` serves a static page; `/v1/dashboard/...` the JSON it needs (admin).

The page shell (HTML, JS, CSS) needs no credentials; every data call does. See docs/dashboard.md.

Live stream cost: one XREAD for all queues per poll interval per open (visible) dashboard, plus one
SMEMBERS per QUEUE_REFRESH_SECONDS to learn new queues.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Header, Query
from fastapi.responses import FileResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from functions.api.deps import AdminUser, EngineDep, QueueName, ServicesDep
from functions.api.events import QUEUE_REFRESH_SECONDS, StreamCursor, poll_stream, sse
from functions.api.schemas import MAX_LIST_LIMIT, JobErrorPublic, QueuePublic
from shared.engine import Engine
from shared.ids import split_id
from shared.models import NAME_PATTERN, Job, QueueMetrics, State, ThroughputPoint
from shared.percentiles import percentile

STATIC = Path(__file__).resolve().parent.parent / "static"
ASSETS = {"app.js": "text/javascript", "app.css": "text/css"}
# The page runs only its own script and style; job data can never become markup or code.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
EVENTS_PER_READ = 100
MAX_CURSOR_CHARS = 8192
# The engine's queue-listing cursor (state index number and offset); pinned to it by a test, so every
# cursor the schema allows is one the engine accepts.
QUEUE_CURSOR_PATTERN = r"^[1-7]\.[0-9]{1,9}$"

page = APIRouter(include_in_schema=False)
api = APIRouter(prefix="/v1/dashboard", tags=["dashboard"])


@page.get("/dashboard")
async def dashboard_page() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html", headers=PAGE_HEADERS)


@page.get("/dashboard/{asset}")
async def dashboard_asset(asset: str) -> Response:
    if asset not in ASSETS:  # a fixed list: no path from the request reaches the file system
        return Response(status_code=404)
    return FileResponse(STATIC / asset, media_type=ASSETS[asset], headers=PAGE_HEADERS)


# -- overview -----------------------------------------------------------------------------------


class QueueOverview(QueuePublic):
    """A queue's counts and totals, plus the last hour's throughput and estimated p50/p95 times."""

    throughput: list[ThroughputPoint] = Field(description="Jobs finished per minute, last 60, oldest first")
    run_p50_seconds: float | None = None
    run_p95_seconds: float | None = None
    wait_p50_seconds: float | None = None
    wait_p95_seconds: float | None = None


class OverviewTotals(BaseModel):
    counts: dict[State, int]
    completed_total: int
    failed_total: int
    throughput: list[ThroughputPoint]


class Overview(BaseModel):
    queues: list[QueueOverview]
    totals: OverviewTotals


def queue_overview(metrics: QueueMetrics) -> QueueOverview:
    def pct(buckets: list[int], q: float) -> float | None:
        return percentile(metrics.bounds, buckets, q)

    return QueueOverview(
        **QueuePublic.of(metrics).model_dump(),
        throughput=metrics.throughput,
        run_p50_seconds=pct(metrics.run_buckets, 0.5),
        run_p95_seconds=pct(metrics.run_buckets, 0.95),
        wait_p50_seconds=pct(metrics.wait_buckets, 0.5),
        wait_p95_seconds=pct(metrics.wait_buckets, 0.95),
    )


def overview_totals(queues: list[QueueOverview]) -> OverviewTotals:
    counts = {state: sum(q.counts.get(state, 0) for q in queues) for state in State}
    minutes: dict[datetime, ThroughputPoint] = {}
    for queue in queues:
        for point in queue.throughput:
            empty = ThroughputPoint(minute=point.minute, completed=0, failed=0)
            total = minutes.setdefault(point.minute, empty)
            total.completed += point.completed
            total.failed += point.failed
    return OverviewTotals(
        counts=counts,
        completed_total=sum(q.completed_total for q in queues),
        failed_total=sum(q.failed_total for q in queues),
        throughput=[minutes[m] for m in sorted(minutes)],
    )


@api.get("/overview")
async def overview(_: AdminUser, engine: EngineDep) -> Overview:
    """Every queue with counts, paused flag, totals, throughput per minute (last hour) and p50/p95 run and
    wait times, interpolated within histogram buckets. One Redis round trip."""
    queues = [queue_overview(m) for m in await engine.metrics()]
    return Overview(queues=queues, totals=overview_totals(queues))


# -- a queue's jobs -----------------------------------------------------------------------------


class JobSummary(BaseModel):
    """A row of the jobs table: no payload, result or logs (the detail view fetches those)."""

    id: str
    type: str
    owner: str
    state: State
    priority: int
    progress: int
    attempts: int
    max_attempts: int
    error: JobErrorPublic | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @classmethod
    def of(cls, job: Job) -> JobSummary:
        return cls.model_validate(job.model_dump(include=set(cls.model_fields)))


class JobSummaryPage(BaseModel):
    jobs: list[JobSummary]
    cursor: str | None = None


@api.get("/queues/{queue}/jobs")
async def queue_jobs(
    queue: QueueName,
    _: AdminUser,
    engine: EngineDep,
    state: State | None = None,
    type: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    owner: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
    cursor: Annotated[str | None, Query(pattern=QUEUE_CURSOR_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST_LIMIT)] = 50,
) -> JobSummaryPage:
    """A queue's jobs by state, type and owner (filtered in the listing script), in the engine's order:
    waiting in claim order, delayed next due first, the others newest first. A page may come back short
    when the filters are sparse; follow `cursor` until it is null."""
    page = await engine.list_jobs(
        queue=queue, state=state, type=type, owner=owner, cursor=cursor, limit=limit
    )
    return JobSummaryPage(jobs=[JobSummary.of(job) for job in page.jobs], cursor=page.cursor)


# -- live stream ----------------------------------------------------------------------------------

_QUEUE = re.compile(NAME_PATTERN)

STREAM_RESPONSES: dict[int | str, dict[str, object]] = {
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


@api.get("/stream", response_model=None, responses=STREAM_RESPONSES)
async def stream(
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
    body = _events(engine, cursor, queues, settings.events_poll_seconds, settings.events_max_seconds)
    return StreamingResponse(
        body, media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )


async def _read(engine: Engine, cursor: StreamCursor, queues: list[str]) -> list[dict[str, object]]:
    return [
        {"queue": split_id(e.job_id)[1], "job_id": e.job_id, "state": e.state}
        | {"progress": e.progress, "at": e.at.isoformat()}
        for e in await cursor.read(engine, queues)
    ]


async def _events(
    engine: Engine, cursor: StreamCursor, queues: list[str], poll: float, max_seconds: float
) -> AsyncIterator[str]:
    refreshed = time.monotonic()

    async def frames() -> list[str]:
        nonlocal queues, refreshed
        if time.monotonic() - refreshed >= QUEUE_REFRESH_SECONDS:
            queues, refreshed = await engine.queue_names(), time.monotonic()
        found = await _read(engine, cursor, queues)
        return [sse("jobs", json.dumps({"events": found}), cursor.encode())] if found else []

    hello = sse("hello", json.dumps({"queues": queues}), cursor.encode())
    async for frame in poll_stream(hello, frames, poll, max_seconds):
        yield frame


router = APIRouter()
router.include_router(page)
router.include_router(api)
