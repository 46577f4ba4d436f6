"""The timetable rules of shared/schedules.py: slots in a time zone across DST, catch-up, end and limit."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.errors import ValidationError
from shared.models import JobSpec
from shared.schedules import (
    MAX_CATCH_UP,
    MISFIRE_GRACE,
    CatchUp,
    Schedule,
    ScheduleSpec,
    anchor_of,
    checked,
    firing,
    first_slot,
)

BERLIN = ZoneInfo("Europe/Berlin")


def ms(at: datetime) -> int:
    return round(at.timestamp() * 1000)


def schedule(now: datetime, **timetable: Any) -> Schedule:
    spec = ScheduleSpec(job=JobSpec(type="tick", owner="o"), **timetable)
    made = Schedule(
        **spec.model_dump(), id="x", anchor=anchor_of(spec, ms(now)), created_at=now, updated_at=now
    )
    made.next_slot = first_slot(made, ms(now))
    return made


def berlin(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=BERLIN)


def test_a_time_skipped_by_the_spring_change_runs_at_the_first_valid_minute() -> None:
    s = schedule(berlin(2026, 3, 28, 12), cron="30 2 * * *", timezone="Europe/Berlin")
    s.next_slot = first_slot(s, ms(berlin(2026, 3, 28, 12)))
    assert s.next_slot == ms(berlin(2026, 3, 29, 3, 0))  # 02:30 does not exist that night


def test_a_daily_time_repeated_in_autumn_runs_once() -> None:
    s = schedule(berlin(2026, 10, 24, 12), cron="30 2 * * *", timezone="Europe/Berlin")
    first = s.next_slot
    assert first is not None
    s.next_slot, s.fired, s.last_slot = first, 0, None
    following = firing(s, first).next_slot
    assert following is not None and following - first == 25 * 3600 * 1000  # the next night, a 25-hour day


def test_cron_reads_its_zone() -> None:
    s = schedule(datetime(2026, 7, 1, 12, tzinfo=UTC), cron="0 3 * * *", timezone="Europe/Berlin")
    assert s.next_slot == ms(datetime(2026, 7, 2, 1, tzinfo=UTC))  # 03:00 summer time is 01:00 UTC


def test_every_counts_from_its_start() -> None:
    start = datetime(2027, 1, 1, tzinfo=UTC)
    s = schedule(datetime(2026, 1, 1, tzinfo=UTC), every_seconds=3600, start_at=start)
    assert s.next_slot == ms(start)  # the start itself is the first slot


@pytest.mark.parametrize(
    ("policy", "fired"), [(CatchUp.ONCE, 1), (CatchUp.ALL, MAX_CATCH_UP), (CatchUp.NONE, 0)]
)
def test_catch_up_after_a_long_outage(policy: CatchUp, fired: int) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    s = schedule(now, every_seconds=3600, catch_up=policy)
    late = ms(now) + 3600_000 * 200 + MISFIRE_GRACE + 1  # 200 slots missed, the latest beyond the grace
    step = firing(s, late)
    assert len(step.slots) == fired
    if policy is CatchUp.ALL:
        assert step.slots[0] == s.next_slot and step.next_slot == step.slots[-1] + 3600_000  # still due
    else:
        assert step.next_slot is not None and step.next_slot > late


def test_end_and_limit_end_a_schedule() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    limited = schedule(now, every_seconds=60, limit=1)
    step = firing(limited, ms(now) + 60_000)
    assert (len(step.slots), step.next_slot) == (1, None)
    ended = schedule(now, every_seconds=60, end_at=datetime(2026, 1, 1, 0, 1, 30, tzinfo=UTC))
    step = firing(ended, ms(now) + 60_000)
    assert (len(step.slots), step.next_slot) == (1, None)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"cron": "0 3 * *"}, "cron"),
        ({"cron": "0 3 * * *", "timezone": "Europe/Nowhere"}, "timezone"),
        ({"cron": "0 3 * * *", "every_seconds": 5}, "cron"),
        ({}, "cron"),
        ({"every_seconds": 0}, "every_seconds"),
        (
            {"every_seconds": 5, "start_at": "2027-01-02T00:00:00Z", "end_at": "2027-01-01T00:00:00Z"},
            "end_at",
        ),
        ({"every_seconds": 5, "job": {"type": "t", "delay": 5}}, "job.delay"),
    ],
)
def test_a_bad_timetable_names_its_field(data: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as refused:
        checked(ScheduleSpec, {"job": {"type": "t"}, **data})
    assert refused.value.field == field


@given(
    every=st.integers(min_value=1, max_value=86400),
    outage=st.integers(min_value=0, max_value=10**9),
    policy=st.sampled_from(list(CatchUp)),
    limit=st.none() | st.integers(min_value=1, max_value=500),
)
def test_a_firing_never_fires_ahead_twice_or_past_its_limit(
    every: int, outage: int, policy: CatchUp, limit: int | None
) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    s = schedule(now, every_seconds=every, catch_up=policy, limit=limit)
    assert s.next_slot is not None
    at = s.next_slot + outage
    step = firing(s, at)
    assert all(s.next_slot <= slot <= at for slot in step.slots)  # nothing before its slot, nothing ahead
    assert step.slots == sorted(set(step.slots))  # each slot once, oldest first
    assert len(step.slots) <= (MAX_CATCH_UP if policy is CatchUp.ALL else 1)
    if limit is not None:
        assert len(step.slots) <= limit
    if step.next_slot is not None and step.slots:
        assert step.next_slot > step.slots[-1]  # the next slot never repeats one fired
    if policy is not CatchUp.ALL and step.next_slot is not None:
        assert step.next_slot > at  # once and none go on from now
