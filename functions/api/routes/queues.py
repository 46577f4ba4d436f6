"""/v1/queues (admin): counts and figures per queue, any queue's jobs, pause/resume, clean, retry-failed.

The dashboard reads its queues here too (docs/dashboard.md)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Query

from functions.api.deferred import api_router
from functions.api.deps import AdminUser, EngineDep, QueueName, ServicesDep
from functions.api.schemas import (
    MAX_LIST_LIMIT,
    QUEUE_CURSOR_PATTERN,
    JobPage,
    JobPublic,
    JobSummary,
    JobSummaryPage,
    QueueAction,
    QueueClean,
    QueueList,
    QueuePublic,
    QueueRetryFailed,
    QueueTotals,
)
from shared.models import NAME_PATTERN, State

router = api_router(prefix="/v1/queues", tags=["queues"])


@router.get("")
async def list_queues(_: AdminUser, engine: EngineDep) -> QueueList:
    """Every queue (counts per state, paused flag, totals, throughput per minute over the last hour, mean
    and p50/p95 run and wait times) and their totals. One Redis round trip."""
    queues = [QueuePublic.of(metrics) for metrics in await engine.metrics()]
    return QueueList(queues=queues, totals=QueueTotals.of(queues))


@router.get("/{queue}")
async def get_queue(queue: QueueName, _: AdminUser, engine: EngineDep) -> QueuePublic:
    """One queue, as in the list. One Redis round trip."""
    [metrics] = await engine.metrics([queue])
    return QueuePublic.of(metrics)


@router.get("/{queue}/jobs")
async def list_queue_jobs(
    queue: QueueName,
    _: AdminUser,
    engine: EngineDep,
    services: ServicesDep,
    state: State | None = None,
    type: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    owner: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
    cursor: Annotated[str | None, Query(pattern=QUEUE_CURSOR_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST_LIMIT)] = 50,
    view: Literal["full", "summary"] = "full",
) -> JobPage | JobSummaryPage:
    """Any queue's jobs by state (e.g. `failed`: the dead-letter set), type and owner (filtered in the
    listing script), in the engine's order: waiting in claim order, delayed next due first, the others
    newest first. A page may come back short when the filters are sparse; follow `cursor` until it is
    null. `view=summary` leaves out payloads, results and logs."""
    page = await engine.list_jobs(
        queue=queue, state=state, type=type, owner=owner, cursor=cursor, limit=limit
    )
    if view == "summary":
        return JobSummaryPage(jobs=[JobSummary.of(job) for job in page.jobs], cursor=page.cursor)
    registry = services.registry
    return JobPage(jobs=[JobPublic.of(job, registry) for job in page.jobs], cursor=page.cursor)


@router.post("/{queue}/pause")
async def pause_queue(queue: QueueName, _: AdminUser, engine: EngineDep) -> QueueAction:
    """Stop consumers from claiming this queue's jobs; submits are still accepted."""
    await engine.pause(queue)
    return QueueAction(queue=queue, paused=True)


@router.post("/{queue}/resume")
async def resume_queue(queue: QueueName, _: AdminUser, engine: EngineDep) -> QueueAction:
    await engine.resume(queue)
    return QueueAction(queue=queue, paused=False)


@router.post("/{queue}/clean")
async def clean_queue(queue: QueueName, body: QueueClean, _: AdminUser, engine: EngineDep) -> QueueAction:
    """Remove up to `limit` jobs in `state` that are older than `older_than_seconds`."""
    removed = await engine.clean(queue, body.state, older_than=body.older_than_seconds, limit=body.limit)
    return QueueAction(queue=queue, count=removed)


@router.post("/{queue}/retry-failed")
async def retry_failed(
    queue: QueueName, _: AdminUser, engine: EngineDep, body: QueueRetryFailed | None = None
) -> QueueAction:
    """Move the dead-letter set (failed jobs) back to waiting, up to `limit` jobs."""
    retried = await engine.retry_failed(queue, limit=(body or QueueRetryFailed()).limit)
    return QueueAction(queue=queue, count=retried)
