"""Schedules on real Redis through the gateway: each slot fires once however many consumers claim, catch-up
after an outage, end and limit, edits and deletes, owners apart, and the idle tick with schedules.

Time moves by an injected clock (the engine sends its reading to every script), never by sleeping.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.consumer.runtime import run_bounded
from shared.engine import Engine
from shared.errors import JobNotFoundError, ValidationError
from shared.models import ClaimedJob, JobSpec, Outcome, State
from shared.registry import Registry
from shared.schedules import MAX_CATCH_UP, CatchUp, ScheduleSpec
from tests.integration.test_engine_budget import billed, round_trips
from tests.support.consumer_fixtures import MakeRuntime, spec_for
from tests.support.engine_fixtures import EngineFactory, FakeClock

MINUTE = 60.0


def spec(owner: str = "alice", **timetable: Any) -> ScheduleSpec:
    timetable.setdefault("every_seconds", 60)
    job = JobSpec(type="tick", payload={"n": 1}, owner=owner)
    return ScheduleSpec(job=job, **timetable)


@pytest.fixture
def clock() -> FakeClock:
    # On a whole minute, so cron slots and `every` slots line up with the arithmetic below.
    return FakeClock(float(int(datetime(2026, 12, 7, 3, 0, tzinfo=UTC).timestamp())))


@pytest.fixture
def engine(engine_factory: EngineFactory, clock: FakeClock) -> Engine:
    return engine_factory(clock=clock)


async def complete(engine: Engine, claimed: list[ClaimedJob]) -> None:
    await engine.finish([Outcome(job_id=c.job.id, token=c.token, status="completed") for c in claimed])


async def jobs_of(engine: Engine) -> list[Any]:
    page = await engine.list_jobs(queue="tick", limit=1000)
    return page.jobs


async def test_a_slot_fires_once_with_three_consumers_racing(
    engine_factory: EngineFactory, clock: FakeClock
) -> None:
    consumers = [engine_factory(clock=clock) for _ in range(3)]
    schedule = await consumers[0].scheduler.create(spec())
    for slot in range(1, 4):
        clock.advance(MINUTE)
        took = await asyncio.gather(*(c.claim("tick", 10) for c in consumers))
        claimed = [job for part in took for job in part]
        assert len(claimed) == 1, f"slot {slot}: {len(claimed)} jobs"
        job = claimed[0].job
        assert job.idempotency_key == f"schedule:{schedule.id}:{round(clock.now * 1000)}"
        assert job.type == "tick" and job.owner == "alice" and job.payload == {"n": 1}
    stored = await consumers[0].scheduler.get(schedule.id)
    assert stored.fired == 3
    assert stored.next_slot == round((clock.now + MINUTE) * 1000)
    assert len(await jobs_of(consumers[0])) == 3


async def test_nothing_fires_before_the_slot(engine: Engine, clock: FakeClock) -> None:
    await engine.scheduler.create(spec())
    clock.advance(MINUTE - 1)
    assert await engine.claim("tick", 10) == []
    clock.advance(1)
    assert len(await engine.claim("tick", 10)) == 1


# Ten slots missed, the latest 30 s ago: "none" fires that one only because it is within the grace.
@pytest.mark.parametrize(("policy", "fired"), [(CatchUp.ONCE, 1), (CatchUp.ALL, 10), (CatchUp.NONE, 1)])
async def test_catch_up_after_an_outage(
    engine: Engine, clock: FakeClock, policy: CatchUp, fired: int
) -> None:
    schedule = await engine.scheduler.create(spec(catch_up=policy))
    clock.advance(10 * MINUTE + 30)
    claimed = await engine.claim("tick", 100)
    slots = sorted(int((c.job.idempotency_key or "").rsplit(":", 1)[1]) for c in claimed)
    assert len(slots) == fired
    assert slots[-1] == round((clock.now - 30) * 1000)  # the latest missed slot fires under every policy
    stored = await engine.scheduler.get(schedule.id)
    assert stored.fired == fired
    assert stored.next_slot == round((clock.now + 30) * 1000)  # the timetable goes on from now
    assert await engine.claim("tick", 100) == []  # nothing more until the next slot


async def test_catch_up_none_skips_a_slot_later_than_the_grace(engine: Engine, clock: FakeClock) -> None:
    schedule = await engine.scheduler.create(spec(catch_up=CatchUp.NONE, every_seconds=3600))
    clock.advance(3600 + 600)  # the slot is ten minutes late
    assert await engine.claim("tick", 10) == []
    stored = await engine.scheduler.get(schedule.id)
    assert stored.fired == 0 and stored.next_slot == round((clock.now + 3000) * 1000)


async def test_catch_up_all_is_bounded_per_firing(engine: Engine, clock: FakeClock) -> None:
    await engine.scheduler.create(spec(catch_up=CatchUp.ALL, every_seconds=1))
    clock.advance(MAX_CATCH_UP + 50)
    first = await engine.claim("tick", 1000)
    assert len(first) == MAX_CATCH_UP
    second = await engine.claim("tick", 1000)
    assert len(second) == 50  # the rest follow at the next claim, each slot once


async def test_limit_and_end_stop_a_schedule(engine: Engine, clock: FakeClock) -> None:
    limited = await engine.scheduler.create(spec(limit=2))
    start = datetime.fromtimestamp(clock.now, UTC)
    ended = await engine.scheduler.create(spec(every_seconds=120, end_at=start + timedelta(minutes=5)))
    for _ in range(8):
        clock.advance(MINUTE)
        await complete(engine, await engine.claim("tick", 10))
    fired = sorted((job.idempotency_key or "").split(":")[1] for job in await jobs_of(engine))
    assert fired == sorted([limited.id] * 2 + [ended.id] * 2)  # limited: minutes 1, 2; ended: 2, 4
    for schedule_id in (limited.id, ended.id):
        assert (await engine.scheduler.get(schedule_id)).next_slot is None
    # Over: the queue is no longer due for them (its jobs done, nothing else is due).
    assert await engine.due() == {}


async def test_cron_in_a_time_zone(engine: Engine, clock: FakeClock) -> None:
    # 04:00 in Berlin is 03:00 UTC in December: the schedule's first slot is a day after now.
    schedule = await engine.scheduler.create(
        spec(every_seconds=None, cron="0 4 * * *", timezone="Europe/Berlin")
    )
    assert schedule.next_slot == round((clock.now + 86400) * 1000)
    assert (await engine.due())["tick"] == clock.now + 86400


async def test_patch_changes_the_next_slot(engine: Engine, clock: FakeClock) -> None:
    schedule = await engine.scheduler.create(spec(every_seconds=3600))
    changed = await engine.scheduler.update(schedule.id, {"every_seconds": 60})
    assert changed.next_slot == round((clock.now + 60) * 1000)
    assert changed.version == schedule.version + 1
    assert (await engine.due())["tick"] == clock.now + 60
    clock.advance(MINUTE)
    assert len(await engine.claim("tick", 10)) == 1
    with pytest.raises(ValidationError) as invalid:
        await engine.scheduler.update(schedule.id, {"cron": "0 3 * * *"})  # both cron and every
    assert invalid.value.field == "cron"


async def test_delete_stops_a_schedule(engine: Engine, clock: FakeClock) -> None:
    schedule = await engine.scheduler.create(spec())
    await engine.scheduler.delete(schedule.id)
    clock.advance(10 * MINUTE)
    assert await engine.claim("tick", 10) == []
    assert await engine.due() == {}
    with pytest.raises(JobNotFoundError):
        await engine.scheduler.get(schedule.id)


async def test_owners_are_kept_apart(engine: Engine) -> None:
    mine = await engine.scheduler.create(spec(owner="alice"))
    theirs = await engine.scheduler.create(spec(owner="bob"))
    assert [s.id for s in await engine.scheduler.of_owner("alice")] == [mine.id]
    assert [s.id for s in await engine.scheduler.of_owner("bob")] == [theirs.id]
    for call in (
        engine.scheduler.get(theirs.id, owner="alice"),
        engine.scheduler.update(theirs.id, {"every_seconds": 5}, owner="alice"),
        engine.scheduler.delete(theirs.id, owner="alice"),
    ):
        with pytest.raises(JobNotFoundError):
            await call
    assert (await engine.scheduler.get(theirs.id)).version == theirs.version


async def test_an_owner_keeps_a_bounded_number_of_schedules(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("shared.scheduler.MAX_SCHEDULES_PER_OWNER", 3)
    for _ in range(3):
        await engine.scheduler.create(spec())
    with pytest.raises(ValidationError) as refused:
        await engine.scheduler.create(spec())
    assert refused.value.field == "owner"
    await engine.scheduler.create(spec(owner="bob"))  # another owner's count is its own


async def test_a_fired_job_runs_through_a_paused_queue_only_after_resume(
    engine: Engine, clock: FakeClock
) -> None:
    await engine.scheduler.create(spec())
    await engine.pause("tick")
    clock.advance(5 * MINUTE)
    assert await engine.due() == {}
    await engine.resume("tick")
    claimed = await engine.claim("tick", 10)
    assert len(claimed) == 1  # the default catch-up: the latest missed slot, once
    assert claimed[0].job.state is State.ACTIVE


# Billed commands are read from a real Redis server's INFO commandstats: real backend only.
@pytest.mark.parametrize("gateway", ["redis"], indirect=True)
async def test_idle_tick_with_ten_schedules_is_one_command(
    engine: Engine, clock: FakeClock, gateway: Any
) -> None:
    for minutes in range(1, 11):
        await engine.scheduler.create(spec(every_seconds=minutes * 60))
    await engine.due()  # reads the set of queues once (a tick trusts it for a while)
    assert await engine.due() == {"tick": clock.now + MINUTE}
    assert await round_trips(gateway, engine.due) == 1
    assert await billed(gateway.redis_url, engine.due, tries=20) == 1
    # Between firings the queue is not due: a tick claims nothing, so the tick stays one command.
    clock.advance(MINUTE)
    assert len(await engine.claim("tick", 10)) == 1
    assert await engine.due() == {"tick": clock.now + MINUTE}
    assert await billed(gateway.redis_url, engine.due, tries=20) == 1


# The consumer fires schedules in its normal run: no scheduler process, and a wake booked for the next.


async def test_a_consumer_run_fires_and_runs_what_falls_due(
    make_runtime: MakeRuntime, consumer_registry: Registry
) -> None:
    runtime = make_runtime()
    job = spec_for(consumer_registry, "echo", {"value": 7}, owner="alice")  # the type's timeout
    schedule = await runtime.engine.scheduler.create(ScheduleSpec(job=job, every_seconds=1, limit=2))
    report = await runtime.consumer.drain(20)  # waits for work due within `wait_due` (2 s)
    assert (report.claimed, report.completed, report.stopped) == (2, 2, "empty")
    stored = await runtime.engine.scheduler.get(schedule.id)
    assert (stored.fired, stored.next_slot) == (2, None)


async def test_a_run_between_firings_reports_the_next_slot_for_its_wake(
    make_runtime: MakeRuntime, consumer_registry: Registry
) -> None:
    runtime = make_runtime()
    job = spec_for(consumer_registry, "echo", {"value": 7}, owner="alice")
    schedule = await runtime.engine.scheduler.create(ScheduleSpec(job=job, every_seconds=3600))
    report = await runtime.consumer.drain(5)
    assert (report.claimed, report.stopped) == (0, "empty")
    assert report.next_due is not None and stored_ms(report.next_due) == schedule.next_slot


def stored_ms(seconds: float) -> int:
    return round(seconds * 1000)


async def test_an_unreadable_schedule_never_stops_a_claim(engine: Engine, clock: FakeClock) -> None:
    schedule = await engine.scheduler.create(spec())
    await engine.store.command("HSET", engine.keys.queue("tick").schedules(), schedule.id, '{"not": "one"}')
    await engine.enqueue([JobSpec(type="tick", owner="alice")])
    clock.advance(MINUTE)
    assert len(await engine.claim("tick", 10)) == 1  # the waiting job; the bad record is skipped


async def test_an_edit_racing_a_firing_loses_neither(engine_factory: EngineFactory, clock: FakeClock) -> None:
    consumers = [engine_factory(clock=clock) for _ in range(3)]
    schedule = await consumers[0].scheduler.create(spec())
    clock.advance(MINUTE)
    claims = asyncio.gather(*(c.claim("tick", 10) for c in consumers))
    took, changed = await asyncio.gather(claims, consumers[0].scheduler.update(schedule.id, {"limit": 5}))
    assert sum(len(part) for part in took) == 1  # the slot fired once (an edit of the limit keeps it)...
    stored = await consumers[0].scheduler.get(schedule.id)
    assert stored.limit == 5 and stored.version >= changed.version  # ...and the edit was kept
    assert stored.fired == len(await jobs_of(consumers[0]))


async def test_a_claim_with_no_room_left_fires_and_leaves_the_job_waiting(
    engine: Engine, clock: FakeClock
) -> None:
    await engine.enqueue([JobSpec(type="tick", owner="alice")])
    await engine.scheduler.create(spec())
    clock.advance(MINUTE)
    assert len(await engine.claim("tick", 1)) == 1  # the job that waited
    assert (await engine.due())["tick"] == clock.now  # the fired job waits: the queue stays due
    [fired] = await engine.claim("tick", 1)
    assert (fired.job.idempotency_key or "").startswith("schedule:")


async def test_a_schedule_whose_job_no_longer_fits_skips_its_slot_and_blocks_no_other(
    engine_factory: EngineFactory, clock: FakeClock
) -> None:
    big = await engine_factory(clock=clock).scheduler.create(spec(every_seconds=60))
    small = await engine_factory(clock=clock).scheduler.create(spec(every_seconds=60))
    # The deployment's payload limit shrank below the first schedule's payload.
    strict = engine_factory(clock=clock, max_payload_bytes=20)
    await strict.store.command(
        "HSET",
        strict.keys.queue("tick").schedules(),
        big.id,
        big.model_copy(
            update={"job": big.job.model_copy(update={"payload": {"n": "x" * 100}})}
        ).model_dump_json(),
    )
    clock.advance(MINUTE)
    [claimed] = await strict.claim("tick", 10)
    assert (claimed.job.idempotency_key or "").startswith(f"schedule:{small.id}:")
    skipped = await strict.scheduler.get(big.id)
    assert (skipped.fired, skipped.next_slot) == (0, round((clock.now + MINUTE) * 1000))


async def test_a_paused_schedule_fires_nothing_and_resumes_from_now(engine: Engine, clock: FakeClock) -> None:
    schedule = await engine.scheduler.create(spec())
    paused = await engine.scheduler.update(schedule.id, {}, paused=True)
    assert (paused.paused, paused.next_slot) == (True, None)
    clock.advance(10 * MINUTE + 30)
    assert await engine.due() == {}  # nothing to wake for
    assert await engine.claim("tick", 10) == []
    resumed = await engine.scheduler.update(schedule.id, {}, paused=False)
    assert resumed.next_slot == round((clock.now + 30) * 1000)  # slots missed while paused are skipped
    clock.advance(30)
    assert len(await engine.claim("tick", 10)) == 1


class Wakes:
    """A trigger that records the delayed wake-ups a bounded run asks for."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def fire(self, lane: str, *, delay: float = 0.0) -> None:
        self.delays.append(delay)


async def test_a_bounded_run_books_a_wake_for_a_slot_before_the_next_tick(
    make_runtime: MakeRuntime, consumer_registry: Registry
) -> None:
    runtime = make_runtime(wait_due=0.0)  # a Lambda-like run: it waits for nothing
    wakes = Wakes()
    runtime.trigger = wakes
    job = spec_for(consumer_registry, "echo", {"value": 7}, owner="alice")
    schedule = await runtime.engine.scheduler.create(ScheduleSpec(job=job, every_seconds=20))
    report = await run_bounded(runtime, 5)
    assert report.next_due is not None and stored_ms(report.next_due) == schedule.next_slot
    assert len(wakes.delays) == 1 and 0 < wakes.delays[0] <= 20  # before the 60 s tick: a wake is booked
    await run_bounded(runtime, 5)
    assert len(wakes.delays) == 1  # the same slot's wake is pending: not booked twice


async def test_an_idle_consumer_run_with_ten_schedules_is_one_read(
    make_runtime: MakeRuntime, consumer_registry: Registry, gateway: Any
) -> None:
    runtime = make_runtime(wait_due=0.0)
    job = spec_for(consumer_registry, "echo", {"value": 7}, owner="alice")
    for hours in range(1, 11):
        await runtime.engine.scheduler.create(ScheduleSpec(job=job, every_seconds=hours * 3600))
    await runtime.consumer.drain(5)  # reads the set of queues once
    before = gateway.command_count()
    report = await runtime.consumer.drain(5)
    reads = 1 if gateway.backend != "cluster" else len(await runtime.engine.tick_queues())
    assert (
        gateway.command_count() - before == reads
    )  # one MGET of the due keys (a GET per queue on a cluster)
    assert (report.claims, report.claimed) == (0, 0)
