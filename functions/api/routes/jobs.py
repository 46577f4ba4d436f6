"""/v1/jobs: submit (one or a batch), read, list, cancel and retry the caller's own jobs."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import BackgroundTasks, Header, Query, Response

from functions.api.auth import Principal
from functions.api.deferred import api_router
from functions.api.deps import (
    CurrentUser,
    EngineDep,
    ServicesDep,
    job_id_or_404,
    owner_scope,
    require,
    sees,
    visible_job,
)
from functions.api.schemas import (
    CURSOR_PATTERN,
    MAX_LIST_LIMIT,
    OWNER_PATTERN,
    JobBatchCreate,
    JobBatchItem,
    JobBatchResult,
    JobCreate,
    JobPage,
    JobPublic,
)
from functions.api.services import Services
from shared.codec import dumps
from shared.errors import (
    ForbiddenError,
    InvalidTransitionError,
    JobNotFoundError,
    JobqError,
    PayloadTooLargeError,
    ValidationError,
)
from shared.limits import CALLBACK_TIMEOUT, MAX_FLOW_DEPTH, MAX_FLOW_NODES, MAX_METADATA_BYTES
from shared.models import NAME_PATTERN, TAG_PATTERN, EnqueueReply, JobSpec, State, debounce_conflict
from shared.priorities import priority_value
from shared.triggers import Trigger

log = logging.getLogger("jobq.api")

router = api_router(prefix="/v1/jobs", tags=["jobs"])

SINGLE_ITEM = "jobs[0]."
IdempotencyHeader = Annotated[str | None, Header(alias="Idempotency-Key", min_length=1, max_length=255)]


@router.post("", status_code=201, responses={200: {"model": JobPublic, "description": "Idempotent repeat"}})
async def submit_job(
    body: JobCreate,
    user: CurrentUser,
    services: ServicesDep,
    response: Response,
    background: BackgroundTasks,
    idempotency_key: IdempotencyHeader = None,
) -> JobPublic:
    """Submit one job. 201 when created; 200 with the existing job when the idempotency key repeats."""
    if idempotency_key is not None:
        if body.idempotency_key not in (None, idempotency_key):
            raise ValidationError(
                "Idempotency-Key header and body idempotency_key differ", field="idempotency_key"
            )
        body = body.model_copy(update={"idempotency_key": idempotency_key})
    spec = flow_spec(body, user, services)
    await services.limiter.check(user)
    reply = await submit_one(services, spec)
    result = reply.results[0]
    if result.created:
        response.headers["Location"] = f"/v1/jobs/{result.job.id}"
    else:
        response.status_code = 200
    if reply.trigger:
        background.add_task(fire_trigger, services.trigger, reply.triggers)
    return JobPublic.of(result.job, services.registry)


@router.post(
    "/batch", status_code=201, responses={200: {"model": JobBatchResult, "description": "Nothing new"}}
)
async def submit_batch(
    body: JobBatchCreate,
    user: CurrentUser,
    services: ServicesDep,
    response: Response,
    background: BackgroundTasks,
) -> JobBatchResult:
    """Submit up to `max_batch` jobs in one Redis command: all are validated, then all or none enqueued."""
    if len(body.jobs) > services.settings.max_batch:
        raise PayloadTooLargeError(f"at most {services.settings.max_batch} jobs per batch", field="jobs")
    specs = []
    for index, item in enumerate(body.jobs):
        try:
            specs.append(flow_spec(item, user, services))
        except ValidationError as exc:
            raise type(exc)(exc.message, field=f"jobs[{index}].{exc.field or 'body'}") from exc
    await services.limiter.check(user)
    reply = await services.engine.enqueue(specs)
    if not any(result.created for result in reply.results):
        response.status_code = 200
    if reply.trigger:
        background.add_task(fire_trigger, services.trigger, reply.triggers)
    registry = services.registry
    roots, at = [], 0  # the engine answers for every job, each tree in preorder: its root first
    for spec in specs:
        roots.append(reply.results[at])
        at += spec.flow_size()
    return JobBatchResult(
        results=[
            JobBatchItem(index=index, created=result.created, job=JobPublic.of(result.job, registry))
            for index, result in enumerate(roots)
        ]
    )


@router.get("")
async def list_jobs(
    user: CurrentUser,
    engine: EngineDep,
    services: ServicesDep,
    state: State | None = None,
    type: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    tag: Annotated[str | None, Query(pattern=TAG_PATTERN)] = None,
    cursor: Annotated[str | None, Query(pattern=CURSOR_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST_LIMIT)] = 50,
    owner: Annotated[str | None, Query(min_length=1, max_length=128, pattern=OWNER_PATTERN)] = None,
) -> JobPage:
    """The caller's jobs, newest first; pass the returned cursor back for the next page.

    `owner` (admins only) lists another owner's jobs; a user may name only itself. A tag-narrowed browser
    token lists its tag's jobs."""
    if owner is not None and owner != user.owner and not user.admin:
        raise ForbiddenError("only admin credentials may list another owner's jobs", field="owner")
    if user.tag is not None:
        if tag not in (None, user.tag):
            raise ForbiddenError("this token sees only its own tag's jobs", field="tag")
        tag = user.tag
    page = await engine.list_jobs(
        owner=owner or user.owner, state=state, type=type, tag=tag, cursor=cursor, limit=limit
    )
    return JobPage(jobs=[JobPublic.of(job, services.registry) for job in page.jobs], cursor=page.cursor)


@router.get("/{job_id}")
async def get_job(job_id: str, user: CurrentUser, services: ServicesDep) -> JobPublic:
    """A job with its state, progress, result, errors and recent log lines. Another user's job is 404."""
    job = await services.engine.get(job_id_or_404(job_id), owner=owner_scope(user))
    if not sees(user, job):
        raise JobNotFoundError("job not found")
    return JobPublic.of(job, services.registry)


@router.delete("/{job_id}", responses={202: {"model": JobPublic, "description": "Cancellation requested"}})
async def cancel_job(
    job_id: str, user: CurrentUser, services: ServicesDep, response: Response, background: BackgroundTasks
) -> JobPublic:
    """Cancel: 200 when the job is cancelled (now, or already), 202 when its running consumer has been
    asked to stop, 409 when it already completed or failed (nothing changes)."""
    require(user, "cancel")
    job_id = await visible_job(user, services.engine, job_id)
    job = await services.engine.cancel(job_id, owner=owner_scope(user))
    if job.state in (State.COMPLETED, State.FAILED):
        raise InvalidTransitionError(f"the job already {job.state.value}; there is nothing to cancel")
    if job.state is not State.CANCELLED:
        response.status_code = 202
    elif services.registry.notifies(job):  # its delivery job waits: ask a consumer to run it now
        lane = services.settings.lane_set.lane_for(CALLBACK_TIMEOUT)
        if lane is not None:
            background.add_task(fire_trigger, services.trigger, [lane])
    return JobPublic.of(job, services.registry)


@router.post("/{job_id}/retry")
async def retry_job(job_id: str, user: CurrentUser, services: ServicesDep) -> JobPublic:
    """Run a failed or cancelled job again (attempts reset, history kept); 409 in any other state."""
    require(user, "submit")
    job_id = await visible_job(user, services.engine, job_id)
    job = await services.engine.retry(job_id, owner=owner_scope(user))
    return JobPublic.of(job, services.registry)


async def submit_one(services: Services, spec: JobSpec) -> EnqueueReply:
    """Enqueue one job (with its flow, if any); the engine names a batch item ("jobs[0].metadata"), and
    this body has one, so its errors name the field within the body."""
    try:
        return await services.engine.enqueue([spec])
    except JobqError as exc:
        if exc.field is not None and exc.field.startswith(SINGLE_ITEM):
            exc.field = exc.field.removeprefix(SINGLE_ITEM)
        raise


def flow_spec(body: JobCreate, user: Principal, services: Services) -> JobSpec:
    """`job_spec` of a body and of each of its flow children (every node the caller's own), refused,
    naming the field, past MAX_FLOW_NODES jobs or MAX_FLOW_DEPTH levels before any is built further."""
    count = 0

    def build(node: JobCreate, where: str, depth: int) -> JobSpec:
        nonlocal count
        count += 1
        if count > MAX_FLOW_NODES:
            raise ValidationError(f"a flow holds at most {MAX_FLOW_NODES} jobs", field="children")
        if depth == MAX_FLOW_DEPTH and node.children:
            raise ValidationError(f"a flow nests at most {MAX_FLOW_DEPTH} levels", field=where + "children")
        try:
            spec = job_spec(node, user, services)
        except JobqError as exc:
            exc.field = where + (exc.field or "body") if where else exc.field
            raise
        children = [
            build(child, f"{where}children[{k}].", depth + 1) for k, child in enumerate(node.children)
        ]
        flow = {"children": children, "on_failure": node.on_failure, "depends_on": node.depends_on}
        return spec.model_copy(update=flow)

    return build(body, "", 0)


def job_spec(body: JobCreate, user: Principal, services: Services) -> JobSpec:
    """The job type's spec for a request body, refused before the submit counts against the caller's rate
    when it is too large or its timeout fits no consumer lane (it would starve). A tag-narrowed browser
    token's jobs carry its tag, so it sees what it submits."""
    require(user, "submit")
    if user.tag is not None and user.tag not in body.tags:
        body = body.model_copy(update={"tags": [*body.tags, user.tag]})
    job_type = services.registry.get(body.type)
    scheduled = body.delay_seconds is not None or body.run_at is not None
    conflict = debounce_conflict(
        singleton_key=body.singleton_key, scheduled=scheduled, idempotency_key=body.idempotency_key
    )
    if body.debounce is not None and conflict:
        raise ValidationError(conflict, field="debounce")
    spec = job_type.spec(
        body.payload,
        owner=user.owner,
        priority=None if body.priority is None else priority_value(body.priority),  # already a level
        run_at=body.run_at,
        delay=body.delay_seconds or 0.0,
        max_attempts=body.max_attempts,
        backoff=body.backoff,
        timeout=body.timeout_seconds,
        idempotency_key=body.idempotency_key,
        metadata=body.metadata,
        tags=body.tags,
        singleton_key=body.singleton_key,
        debounce=body.debounce,
        callback_url=body.callback_url,
    )
    if len(dumps(spec.payload).encode()) > services.settings.max_payload_bytes:
        raise PayloadTooLargeError(
            f"payload exceeds {services.settings.max_payload_bytes} bytes", field="payload"
        )
    if len(dumps(spec.metadata).encode()) > MAX_METADATA_BYTES:
        raise PayloadTooLargeError(f"metadata exceeds {MAX_METADATA_BYTES} bytes", field="metadata")
    services.settings.lane_set.check(spec.timeout, field="timeout_seconds")
    return spec


async def fire_trigger(trigger: Trigger, lanes: list[str]) -> None:
    """Ask each lane with new work for a consumer run; a failure only delays work until the next tick."""
    for lane in lanes:
        try:
            await trigger.fire(lane)
        except Exception:
            log.exception("push trigger failed; the next scheduled run will pick the work up")
