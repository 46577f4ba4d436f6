"""The engine's schedules: stored per queue, fired by the consumers' claims, each slot once.

A schedule lives in its job's queue (its record in the queue's `schedules` hash, its next slot in
`schedule_times`, the earliest of those in the queue's meta 'ns'), so the queue's due time covers it:
between firings an idle deployment's tick is still its one read of the due keys. When a slot comes, the
queue is due; a consumer's claim (claim.lua) finds the schedule and returns its record; this module
works out the firing (shared/schedules.py: cron needs Python) and sends it (fire.lua; the engine then
claims the jobs it submitted), fenced by the record's version, so of any number of consumers racing
one slot only the first submits its job. Each job's idempotency_key field reads
`schedule:<id>:<slot ms>` (the slot it is for; no idempotency key is stored: the fence already keeps a
slot to one job).

Costs per operation are in docs/redis-schema.md.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError as PydanticValidationError

from shared.errors import InvalidTransitionError, JobNotFoundError, JobqError, ValidationError
from shared.ids import is_job_id, job_id, new_id, split_id
from shared.models import JobSpec
from shared.schedules import (
    MAX_SCHEDULES_PER_OWNER,
    Firing,
    Schedule,
    ScheduleSpec,
    Timetable,
    anchor_of,
    checked,
    firing,
    first_slot,
    slot_after_edit,
)
from shared.scriptcalls import FIRE, SCHEDULE, SCHEDULE_LIST, FireItem, SchedulePlan

if TYPE_CHECKING:
    from shared.engine import Engine, PlannedJob

log = logging.getLogger("jobq.schedules")

WRITE_TRIES = 3  # an edit that loses to a firing or another edit reads again, at most this often


class Scheduler:
    """Create, read, edit, delete and fire schedules (Engine.scheduler). A method on one schedule is a
    read and one script call; a listing is one read-only call per queue, sent at once."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # Firing calls this engine sent: a consumer that sees it change reads the due keys again, to
        # learn the next slots (and book a wake for them).
        self.fired = 0

    def _clock_ms(self) -> int:
        return self.engine._now_ms()

    async def create(self, spec: ScheduleSpec) -> Schedule:
        """Store a new schedule; its first slot is after now (and at or after its start). An owner keeps
        at most MAX_SCHEDULES_PER_OWNER schedules over every queue."""
        engine, now = self.engine, self._clock_ms()
        queue = engine._check_queue(spec.job.queue or spec.job.type, field="job.queue")
        _check_job(engine, spec.job)
        if await self.count(spec.job.owner) >= MAX_SCHEDULES_PER_OWNER:
            raise _over_cap()
        at = datetime.fromtimestamp(now / 1000, UTC)
        schedule = Schedule(
            **spec.model_dump(),
            id=job_id(new_id(now), queue),
            anchor=anchor_of(spec, now),
            created_at=at,
            updated_at=at,
        )
        schedule.next_slot = first_slot(schedule, now)
        await asyncio.gather(engine._ensure_policies([queue]), engine._name_queues([queue]))
        await self._write(schedule, version=0)
        return schedule

    async def get(self, schedule_id: str, *, owner: str | None = None) -> Schedule:
        """The schedule; JobNotFoundError when missing or (owner given) another owner's. One read."""
        if not is_job_id(schedule_id):
            raise _not_found()
        queue = split_id(schedule_id)[1]
        text = await self.engine.store.command("HGET", self.engine._qk(queue).schedules(), schedule_id)
        if text is None:
            raise _not_found()
        schedule = Schedule.model_validate_json(text)
        if owner is not None and schedule.job.owner != owner:
            raise _not_found()
        return schedule

    async def of_owner(self, owner: str) -> list[Schedule]:
        """An owner's schedules over every queue, oldest first: one read-only call per queue."""
        queues = await self.engine.queue_names()

        async def one(queue: str) -> list[Any]:
            qk = self.engine._qk(queue)
            keys = [qk.owner_schedules(owner), qk.schedules()]
            reply = await SCHEDULE_LIST.run(self.engine.store, keys, "-1", {"limit": MAX_SCHEDULES_PER_OWNER})
            return list(reply or [])

        found = [text for part in await asyncio.gather(*map(one, queues)) for text in part]
        return sorted((Schedule.model_validate_json(t) for t in found), key=lambda s: s.id)

    async def count(self, owner: str) -> int:
        """How many schedules an owner keeps over every queue: one pipelined read."""
        queues = await self.engine.queue_names()
        if not queues:
            return 0
        keys = [self.engine._qk(q).owner_schedules(owner) for q in queues]
        return sum(int(n) for n in await self.engine.store.pipeline([["ZCARD", k] for k in keys]))

    async def update(
        self,
        schedule_id: str,
        timetable: dict[str, Any],
        job: JobSpec | None = None,
        *,
        paused: bool | None = None,
        owner: str | None = None,
    ) -> Schedule:
        """Change a schedule's timetable fields (`timetable`, merged into what it has) and/or its job (a
        JobSpec of the same owner and queue), or pause or resume it (`paused`). A change of where its
        slots fall (cron, every, zone, start), or a resume, moves its next slot to the first one after
        now (and after the last slot fired: a slot never fires twice); a paused schedule has none; any
        other change keeps its next slot. Its count of firings stays. A change that loses a race with a
        firing is applied again on what the firing wrote."""
        for _ in range(WRITE_TRIES):
            current = await self.get(schedule_id, owner=owner)
            merged = checked(Timetable, {**current.timetable(), **timetable}).timetable()
            new_job = current.job if job is None else job
            if new_job.owner != current.job.owner or (new_job.queue or new_job.type) != current.queue:
                raise ValidationError("a schedule's job keeps its queue", field="job.type")
            if job is not None:
                _check_job(self.engine, new_job)
            now = self._clock_ms()
            changed = Schedule(**{**current.model_dump(), **merged, "job": new_job})
            if paused is not None:
                changed.paused = paused
            if "start_at" in timetable:
                changed.anchor = anchor_of(changed, round(current.created_at.timestamp() * 1000))
            changed.updated_at = datetime.fromtimestamp(now / 1000, UTC)
            changed.version = current.version + 1
            changed.next_slot = slot_after_edit(current, changed, now)
            try:
                await self._write(changed, version=current.version)
            except InvalidTransitionError:
                continue
            return changed
        raise InvalidTransitionError("the schedule kept changing; try again")

    async def delete(self, schedule_id: str, *, owner: str | None = None) -> None:
        """Delete a schedule: it fires no more (jobs it already submitted stay)."""
        for _ in range(WRITE_TRIES):
            current = await self.get(schedule_id, owner=owner)
            plan: SchedulePlan = {
                "op": "delete",
                "id": current.id,
                "v": current.version,
                "rec": "",
                "next": None,
                "cap": MAX_SCHEDULES_PER_OWNER,
            }
            try:
                await SCHEDULE.run(*self.engine._on(current.queue, [self._index(current)]), plan)
            except InvalidTransitionError:
                continue
            return
        raise InvalidTransitionError("the schedule kept changing; try again")

    def _index(self, schedule: Schedule) -> str:
        return self.engine._qk(schedule.queue).owner_schedules(schedule.job.owner)

    async def _write(self, schedule: Schedule, *, version: int) -> None:
        plan: SchedulePlan = {
            "op": "put",
            "id": schedule.id,
            "v": version,
            "rec": schedule.model_dump_json(),
            "next": schedule.next_slot,
            "cap": MAX_SCHEDULES_PER_OWNER,
        }
        try:
            await SCHEDULE.run(*self.engine._on(schedule.queue, [self._index(schedule)]), plan)
        except ValidationError as exc:  # over the cap within the queue (a create raced the count)
            raise _over_cap() from exc

    async def fire(self, queue: str, records: list[Any], now: int) -> None:
        """Fire the due schedules a claim returned (their records) at `now` (the claim's clock): their
        jobs submitted, their records and next slots written, in one call (fire.lua)."""
        engine = self.engine
        items: list[FireItem] = []
        planned: list[PlannedJob] = []
        for text in records:
            try:
                schedule = Schedule.model_validate_json(text or "")
            except PydanticValidationError:  # never stop a claim for one unreadable record
                log.error("schedule record in queue %s cannot be read; skipped", queue)
                continue
            step = firing(schedule, now)
            jobs: list[PlannedJob] = []
            try:
                for slot in step.slots:
                    spec = schedule.job.model_copy(
                        update={"idempotency_key": f"schedule:{schedule.id}:{slot}"}
                    )
                    index = len(planned) + len(jobs)
                    jobs.append(engine._plan_job(index, spec, f"jobs[{index}]."))
            except JobqError as exc:  # e.g. its payload outgrew a lowered size limit: its slot is skipped
                log.error("schedule %s cannot submit its job, slot skipped: %s", schedule.id, exc)
                step, jobs = Firing([], step.next_slot), []
            for job in jobs:
                job.idempotency = None  # the version fence makes a slot fire once: no key to keep
            positions = list(range(len(planned), len(planned) + len(jobs)))
            planned += jobs
            after = schedule.model_copy(
                update={
                    "fired": schedule.fired + len(step.slots),
                    "last_slot": step.slots[-1] if step.slots else schedule.last_slot,
                    "next_slot": step.next_slot,
                    "version": schedule.version + 1,
                }
            )
            items.append(
                {
                    "id": schedule.id,
                    "v": schedule.version,
                    "rec": after.model_dump_json(),
                    "next": step.next_slot,
                    "j": positions,
                }
            )
        keys, enqueue = engine._enqueue_call({queue: planned}, set())
        await FIRE.run(engine.store, keys, engine._now_arg(), {"f": items, "e": enqueue})
        self.fired += 1


def _check_job(engine: Engine, job: JobSpec) -> None:
    """What the engine checks on every submit (stored sizes, a lane for the timeout), named under `job.`."""
    try:
        engine._plan_job(0, job, "jobs[0].")
    except JobqError as exc:
        exc.field = "job." + (exc.field or "").removeprefix("jobs[0].")
        raise


def _not_found() -> JobNotFoundError:
    return JobNotFoundError("schedule not found")


def _over_cap() -> ValidationError:
    return ValidationError(
        f"an owner keeps at most {MAX_SCHEDULES_PER_OWNER} schedules; delete one first", field="owner"
    )
