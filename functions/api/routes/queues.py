"""/v1/queues (admin): counts and figures per queue, any queue's jobs, pause/resume, clean, retry-failed."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from functions.api.deps import AdminUser, EngineDep, QueueName, ServicesDep
from functions.api.schemas import (
    CURSOR_PATTERN,
    MAX_LIST_LIMIT,
    JobPage,
    JobPublic,
    QueueAction,
    QueueClean,
    QueueList,
    QueuePublic,
    QueueRetryFailed,
)
from shared.models import NAME_PATTERN, State

router = APIRouter(prefix="/v1/queues", tags=["queues"])


@router.get("")
async def list_queues(_: AdminUser, engine: EngineDep) -> QueueList:
    """Every queue with counts per state, paused flag, throughput totals and mean run and wait times."""
    return QueueList(queues=[QueuePublic.of(stats) for stats in await engine.stats_all()])


@router.get("/{queue}")
async def get_queue(queue: QueueName, _: AdminUser, engine: EngineDep) -> QueuePublic:
    return QueuePublic.of(await engine.stats(queue))


@router.get("/{queue}/jobs")
async def list_queue_jobs(
    queue: QueueName,
    _: AdminUser,
    engine: EngineDep,
    services: ServicesDep,
    state: State | None = None,
    type: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    cursor: Annotated[str | None, Query(pattern=CURSOR_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST_LIMIT)] = 50,
) -> JobPage:
    """Any queue's jobs, newest first, by state (e.g. `failed`: the dead-letter set)."""
    page = await engine.list_jobs(queue=queue, state=state, type=type, cursor=cursor, limit=limit)
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
