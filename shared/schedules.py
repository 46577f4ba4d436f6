"""Schedules (job schedulers): what one is, and when it fires. Pure rules, no Redis.

A schedule submits a job of one type on a timetable: a cron expression read in an IANA time zone (parsed
and stepped by cronsim: jobq never parses cron itself), or every N seconds from an anchor. It may start
later, end, and stop after a number of firings. Times are epoch milliseconds, like every time Redis keeps.

`firing(schedule, now)` decides what a due schedule does now: which of its slots to submit (the catch-up
policy picks among the slots missed during an outage) and its next slot, or None when it is over. The
engine's scheduler (shared/scheduler.py) stores schedules and runs firings; docs/decisions.md says why
each rule is what it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from functools import cache
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, available_timezones

from cronsim import CronSim, CronSimError
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError

from shared.errors import ValidationError, validation_message
from shared.limits import utc_run_at
from shared.models import JobSpec

T = TypeVar("T", bound=BaseModel)

MAX_SCHEDULES_PER_OWNER = 100  # across every queue
MIN_EVERY = 1  # seconds
MAX_EVERY = 366 * 86400
MAX_CRON_LENGTH = 120
MAX_CATCH_UP = 100  # slots one firing of catch_up "all" submits; the rest follow at the next claim
MISFIRE_GRACE = 120_000  # ms: catch_up "none" still fires a slot this late (a cron tick may be a minute late)
MAX_LIMIT = 1_000_000_000


class CatchUp(StrEnum):
    """What a schedule does with the slots it missed (an outage, a paused queue)."""

    ONCE = "once"  # the latest missed slot fires once, then the timetable goes on (the default)
    ALL = "all"  # every missed slot fires, oldest first, MAX_CATCH_UP per firing
    NONE = "none"  # missed slots are skipped; a slot fires only within MISFIRE_GRACE of its time


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def zone(name: str) -> ZoneInfo:
    """The IANA zone `name`; ValueError when the zone database does not know it (checked by membership,
    so hostile text never reaches a file path)."""
    if name not in _zones() and name != "UTC":
        raise ValueError(f"unknown time zone {name[:64]!r} (an IANA name like Europe/Berlin)")
    return ZoneInfo(name)


class Timetable(BaseModel):
    """When a schedule fires: exactly one of `cron` (5 fields, or 6 with seconds first, read in `timezone`)
    and `every_seconds`; optionally from `start_at`, until `end_at`, at most `limit` times. A rule that
    spans fields raises our ValidationError naming the field (pydantic would name none)."""

    model_config = ConfigDict(extra="forbid")

    cron: str | None = Field(default=None, min_length=1, max_length=MAX_CRON_LENGTH)
    timezone: str = Field(default="UTC", min_length=1, max_length=64, description="An IANA zone name.")
    every_seconds: int | None = Field(default=None, ge=MIN_EVERY, le=MAX_EVERY)
    start_at: datetime | None = Field(default=None, strict=False)
    end_at: datetime | None = Field(default=None, strict=False)
    limit: int | None = Field(default=None, ge=1, le=MAX_LIMIT, description="Most firings; then it ends.")
    catch_up: CatchUp = Field(default=CatchUp.ONCE, strict=False)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        zone(value)
        return value

    @field_validator("cron")
    @classmethod
    def _parses(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            next(CronSim(value, datetime(2000, 1, 1, tzinfo=UTC)))
        except (CronSimError, StopIteration) as exc:
            raise ValueError(f"not a cron expression: {exc or 'it never fires'}") from None
        return value

    @field_validator("start_at", "end_at")
    @classmethod
    def _instant(cls, value: datetime | None) -> datetime | None:
        return None if value is None else utc_run_at(value)

    @model_validator(mode="after")
    def _one_timetable(self) -> Timetable:
        if (self.cron is None) == (self.every_seconds is None):
            raise ValidationError("give cron or every_seconds, not both", field="cron")
        if self.start_at and self.end_at and self.end_at <= self.start_at:
            raise ValidationError("end_at must be after start_at", field="end_at")
        return self

    def timetable(self) -> dict[str, Any]:
        """The timetable fields alone (of a schedule, or a request that holds more)."""
        return self.model_dump(include=set(Timetable.model_fields))


class ScheduleSpec(Timetable):
    """What the scheduler stores: the timetable and the job each slot submits (type, payload, owner and
    options; its run-at time and idempotency key come from the slot)."""

    job: JobSpec

    @field_validator("job")
    @classmethod
    def _no_time(cls, job: JobSpec) -> JobSpec:
        for name, value in (
            ("run_at", job.run_at),
            ("delay", job.delay),
            ("idempotency_key", job.idempotency_key),
        ):
            if value:
                raise ValidationError(f"a scheduled job takes its {name} from its slot", field=f"job.{name}")
        return job


def checked(cls: type[T], data: dict[str, Any]) -> T:
    """`cls` validated from `data`, pydantic's first error as our ValidationError naming its field."""
    try:
        return cls.model_validate(data)
    except PydanticValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or None
        raise ValidationError(validation_message(first), field=field) from None


class Schedule(ScheduleSpec):
    """A stored schedule: the spec, where it is in its timetable, and a version every write bumps (a
    write that read an older version is refused, so a firing and an edit never undo each other)."""

    id: str
    paused: bool = False  # a paused schedule has no next slot; resumed, it goes on from then
    anchor: int  # ms: where `every` counts from (start_at, else the creation time)
    fired: int = 0
    last_slot: int | None = None  # ms of the last slot fired
    next_slot: int | None = None  # ms; None: over (end or limit reached)
    created_at: datetime
    updated_at: datetime
    version: int = 1

    @property
    def queue(self) -> str:
        return self.job.queue or self.job.type


def _ms(at: datetime) -> int:
    return round(at.timestamp() * 1000)


def _cron(schedule: Timetable, at_ms: int, reverse: bool = False) -> int | None:
    """The cron slot strictly after (reverse: strictly before) `at_ms`, in the schedule's zone."""
    assert schedule.cron is not None
    base = datetime.fromtimestamp(at_ms / 1000, zone(schedule.timezone))
    try:
        return _ms(next(CronSim(schedule.cron, base, reverse=reverse)))
    except (StopIteration, CronSimError, OverflowError, ValueError):  # no such slot within cronsim's range
        return None


def slot_after(schedule: Schedule, at_ms: int) -> int | None:
    """The first slot strictly after `at_ms`, never before the start (None: none)."""
    at_ms = max(at_ms, schedule.anchor - 1)
    if schedule.every_seconds is None:
        return _cron(schedule, at_ms)
    period = schedule.every_seconds * 1000
    return schedule.anchor + ((at_ms - schedule.anchor) // period + 1) * period


def slot_at_or_before(schedule: Schedule, at_ms: int) -> int | None:
    """The last slot at or before `at_ms` (None: none since the start)."""
    if at_ms < schedule.anchor:
        return None
    if schedule.every_seconds is None:
        found = _cron(schedule, at_ms + 1, reverse=True)
        return found if found is not None and found >= schedule.anchor else None
    period = schedule.every_seconds * 1000
    return schedule.anchor + (at_ms - schedule.anchor) // period * period


@dataclass(frozen=True)
class Firing:
    slots: list[int]  # ms of the slots to submit a job for, oldest first
    next_slot: int | None  # the schedule's next slot after this firing; None: it is over


def firing(schedule: Schedule, now_ms: int) -> Firing:
    """What a schedule whose next slot has come does at `now_ms`, by its catch-up policy, its end and
    its limit. A slot on time fires under every policy."""
    due = schedule.next_slot
    if due is None or due > now_ms:
        return Firing([], due)
    if schedule.catch_up is CatchUp.ALL:
        slots = [due]
        while len(slots) < MAX_CATCH_UP:
            following = slot_after(schedule, slots[-1])
            if following is None or following > now_ms:
                break
            slots.append(following)
        following = slot_after(schedule, slots[-1])
    else:
        latest = slot_at_or_before(schedule, now_ms) or due
        late = now_ms - latest
        slots = [] if schedule.catch_up is CatchUp.NONE and late > MISFIRE_GRACE else [max(latest, due)]
        following = slot_after(schedule, now_ms)
    end = None if schedule.end_at is None else _ms(schedule.end_at)
    if end is not None:
        slots = [slot for slot in slots if slot <= end]
    if schedule.limit is not None:
        slots = slots[: max(0, schedule.limit - schedule.fired)]
        if schedule.fired + len(slots) >= schedule.limit:
            following = None
    if following is not None and end is not None and following > end:
        following = None
    return Firing(slots, following)


def first_slot(schedule: Schedule, now_ms: int) -> int | None:
    """The next slot of a new or edited schedule: after now (and after its last slot fired), not past
    its end, None when its limit is reached."""
    if schedule.limit is not None and schedule.fired >= schedule.limit:
        return None
    after = max(now_ms, schedule.last_slot if schedule.last_slot is not None else now_ms)
    slot = slot_after(schedule, after)
    if slot is not None and schedule.end_at is not None and slot > _ms(schedule.end_at):
        return None
    return slot


TIMING = ("cron", "every_seconds", "timezone", "start_at")  # the fields that decide where slots fall


def slot_after_edit(before: Schedule, after: Schedule, now_ms: int) -> int | None:
    """The next slot of an edited schedule: none while paused; where its slots fall changed (or it was
    paused or over), the first slot after now; otherwise the one it had (a slot due but not yet fired
    still fires), unless the end or the limit now stops it."""
    if after.paused:
        return None
    moved = any(getattr(before, name) != getattr(after, name) for name in TIMING)
    if moved or before.next_slot is None:
        return first_slot(after, now_ms)
    if after.limit is not None and after.fired >= after.limit:
        return None
    if after.end_at is not None and before.next_slot > _ms(after.end_at):
        return None
    return before.next_slot


def anchor_of(spec: Timetable, now_ms: int) -> int:
    """Where `every` counts from: the start, else the creation (a new schedule first fires one interval
    after its creation)."""
    return _ms(spec.start_at) if spec.start_at is not None else now_ms
