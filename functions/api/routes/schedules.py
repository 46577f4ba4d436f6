"""/v1/schedules: create, list, read, change and delete schedules (job schedulers). A key manages its own
owner's schedules, admin credentials any owner's; another owner's schedule is a 404."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query, Response

from functions.api.auth import Principal
from functions.api.deferred import api_router
from functions.api.deps import CurrentUser, ServicesDep, owner_scope
from functions.api.routes.jobs import job_spec
from functions.api.schemas import (
    OWNER_PATTERN,
    JobCreate,
    ScheduleCreate,
    ScheduleList,
    SchedulePublic,
    ScheduleUpdate,
)
from functions.api.services import Services
from shared.errors import ForbiddenError, JobqError, ValidationError
from shared.models import JobSpec
from shared.schedules import ScheduleSpec, checked

router = api_router(prefix="/v1/schedules", tags=["schedules"])


@router.post("", status_code=201)
async def create_schedule(
    body: ScheduleCreate, user: CurrentUser, services: ServicesDep, response: Response
) -> SchedulePublic:
    """A new schedule; its first run is its first slot after now (at or after start_at). The job is
    validated against its type now, as a submit would be. An owner keeps at most 100 schedules."""
    owner = _owner(user, body.owner)
    spec = checked(ScheduleSpec, {**body.timetable(), "job": _job(body.job, user, services, owner)})
    await services.limiter.check(user)
    schedule = await services.engine.scheduler.create(spec)
    response.headers["Location"] = f"/v1/schedules/{schedule.id}"
    return SchedulePublic.of(schedule, services.registry)


@router.get("")
async def list_schedules(
    user: CurrentUser,
    services: ServicesDep,
    owner: Annotated[str | None, Query(min_length=1, max_length=128, pattern=OWNER_PATTERN)] = None,
) -> ScheduleList:
    """The caller's schedules, oldest first (`owner`: admins list another owner's)."""
    schedules = await services.engine.scheduler.of_owner(_owner(user, owner))
    return ScheduleList(schedules=[SchedulePublic.of(s, services.registry) for s in schedules])


@router.get("/{schedule_id}")
async def get_schedule(schedule_id: str, user: CurrentUser, services: ServicesDep) -> SchedulePublic:
    schedule = await services.engine.scheduler.get(schedule_id, owner=owner_scope(user))
    return SchedulePublic.of(schedule, services.registry)


@router.patch("/{schedule_id}")
async def update_schedule(
    schedule_id: str, body: ScheduleUpdate, user: CurrentUser, services: ServicesDep
) -> SchedulePublic:
    """Change the fields given. A new timetable (cron, every_seconds, timezone, start_at) moves the next
    run to its first slot after now (a slot already fired never fires again); `paused` pauses or resumes
    (resumed, it goes on from now: slots missed while paused are skipped); the count of runs stays."""
    scheduler = services.engine.scheduler
    current = await scheduler.get(schedule_id, owner=owner_scope(user))
    job = None if body.job is None else _job(body.job, user, services, current.job.owner)
    timetable = body.model_dump(exclude_unset=True, exclude={"job", "paused"})
    changed = await scheduler.update(schedule_id, timetable, job, paused=body.paused, owner=owner_scope(user))
    return SchedulePublic.of(changed, services.registry)


@router.delete("/{schedule_id}", status_code=204)
async def delete_schedule(schedule_id: str, user: CurrentUser, services: ServicesDep) -> Response:
    """Delete: no more runs (jobs already submitted stay)."""
    await services.engine.scheduler.delete(schedule_id, owner=owner_scope(user))
    return Response(status_code=204)


def _owner(user: Principal, owner: str | None) -> str:
    if owner is not None and owner != user.owner and not user.admin:
        raise ForbiddenError("only admin credentials may act for another owner", field="owner")
    return owner or user.owner


def _job(body: JobCreate, user: Principal, services: Services, owner: str) -> JobSpec:
    """The job a schedule submits, checked as a submit is (its fields named under `job.`)."""
    for name in ("run_at", "delay_seconds", "idempotency_key"):
        if getattr(body, name) is not None:
            raise ValidationError(f"a scheduled job takes its {name} from its slot", field=f"job.{name}")
    try:
        spec = job_spec(body, user, services)
    except JobqError as exc:
        exc.field = f"job.{exc.field}" if exc.field else "job"
        raise
    return spec.model_copy(update={"owner": owner})
