"""Engine rules beyond the basic lifecycle: cancel against a late result, recovery of reaped jobs,
queue-wide concurrency, lane filters and triggers, wake-up booking and stall visibility.

Each test runs under its own key prefix; time moves with an injected FakeClock, never by sleeping.
"""

from __future__ import annotations

from typing import Any

import pytest

from shared.engine import Engine
from shared.errors import JobNotFoundError, ValidationError
from shared.ids import split_id
from shared.lanes import Lanes
from shared.models import ErrorKind, JobSpec, Lease, Outcome, QueueOptions, State
from tests.integration.test_engine import spec
from tests.support.engine_fixtures import EngineFactory, FakeClock


async def test_cancel_wins_over_a_late_completed_result(engine: Engine) -> None:
    await engine.enqueue([spec()])
    [c] = await engine.claim("echo", 1)
    await engine.cancel(c.job.id)
    [f] = await engine.finish([Outcome(job_id=c.job.id, token=c.token, status="completed", result="late")])
    assert (f.ok, f.state) == (True, State.CANCELLED)
    job = await engine.get(c.job.id)
    assert (job.state, job.result) == (State.CANCELLED, None)
    stats = await engine.stats("echo")
    assert (stats.completed_total, stats.cancelled_total, stats.counts[State.CANCELLED]) == (0, 1, 1)


async def test_a_reaped_job_recovers_at_once_ahead_of_its_level(
    engine_factory: EngineFactory, fake_clock: FakeClock
) -> None:
    engine = engine_factory(clock=fake_clock)
    a1, a2 = (r.job.id for r in (await engine.enqueue([spec(payload="a1"), spec(payload="a2")])).results)
    assert [c.job.id for c in await engine.claim("echo", 1, lease=10)] == [a1]
    fake_clock.advance(1)
    assert [c.job.id for c in await engine.claim("echo", 1, lease=10)] == [a2]
    await engine.enqueue(
        [spec(payload="w"), spec(payload="high", priority=0), spec(payload="low", priority=8)]
    )
    fake_clock.advance(10)
    # Both leases ran out: no backoff (the default would delay them ~1 s), ahead of "w", FIFO, but
    # still behind the higher priority.
    claimed = await engine.claim("echo", 10)
    assert [c.job.payload for c in claimed] == ["high", "a1", "a2", "w", "low"]
    reaped = claimed[1].job
    assert (reaped.attempts, reaped.errors[-1].kind, reaped.errors[-1].attempt) == (
        2,
        ErrorKind.LEASE_EXPIRED,
        1,
    )
    assert (await engine.stats("echo")).retried_total == 2


async def test_released_jobs_wait_at_the_front_in_the_order_handed_back(engine: Engine) -> None:
    x, y, z = (r.job.id for r in (await engine.enqueue([spec(payload=i) for i in range(3)])).results)
    cx, cy = await engine.claim("echo", 2)
    await engine.release([Lease(job_id=y, token=cy.token)])
    await engine.release([Lease(job_id=x, token=cx.token)])
    assert [c.job.id for c in await engine.claim("echo", 3)] == [y, x, z]


async def test_oldest_waiting_age_sees_behind_a_recovered_job(
    engine_factory: EngineFactory, fake_clock: FakeClock
) -> None:
    # A rate limit of one claim per hour lets a claim reap without taking the recovered job.
    engine = engine_factory(clock=fake_clock, queue_options=lambda q: QueueOptions(rate_limit=(1, 3600)))
    fake_clock.now = 1_800_000_000.0  # the start of a window
    await engine.enqueue([spec(payload="a")])
    await engine.claim("echo", 1, lease=10)
    await engine.enqueue([spec(payload="w")])
    fake_clock.advance(200)
    assert await engine.claim("echo", 1) == []  # reaps "a" to the front; the window's claim is used
    stats = await engine.stats("echo")
    assert stats.counts[State.WAITING] == 2
    assert stats.oldest_waiting_age == pytest.approx(200)  # "w", not the just-recovered "a"


async def test_concurrency_caps_active_jobs_across_consumers(
    engine_factory: EngineFactory, fake_clock: FakeClock
) -> None:
    def limited(queue: str) -> QueueOptions:
        return QueueOptions(concurrency=2)

    one = engine_factory(clock=fake_clock, queue_options=limited)
    other = engine_factory(clock=fake_clock, queue_options=limited)
    await one.enqueue([spec(payload=i) for i in range(5)])
    first = await one.claim("echo", 5, lease=60)
    assert [c.job.payload for c in first] == [0, 1]
    assert await other.claim("echo", 5) == []
    # At its limit the queue is due only at its earliest lease deadline, a new submit included.
    await one.enqueue([spec(payload=5)])
    assert (await one.due())["echo"] == pytest.approx(fake_clock.now + 60)
    await one.finish([Outcome(job_id=first[0].job.id, token=first[0].token, status="completed")])
    assert (await one.due())["echo"] == pytest.approx(fake_clock.now)  # a slot is free
    assert [c.job.payload for c in await other.claim("echo", 5, lease=60)] == [2]
    assert (await one.due())["echo"] == pytest.approx(fake_clock.now + 60)
    fake_clock.advance(60)  # both leases run out: reaped, and their slots are taken again at once
    again = await other.claim("echo", 5)
    assert sorted(c.job.payload for c in again) == [1, 2]
    assert (await one.stats("echo")).counts[State.ACTIVE] == 2


def timed(timeout: float, payload: Any = None) -> JobSpec:
    return spec(timeout=timeout, payload=timeout if payload is None else payload)


async def test_max_timeout_takes_only_fitting_jobs_and_leaves_the_rest_in_place(engine: Engine) -> None:
    await engine.enqueue([timed(t) for t in (10, 600, 20, 700, 30)])
    waiting = engine.keys.queue("echo").state("waiting")
    before = await engine.store.command("ZRANGE", waiting, 0, -1, "WITHSCORES")
    claimed = await engine.claim("echo", 5, max_timeout=45)
    assert [c.job.payload for c in claimed] == [10, 20, 30]
    after = await engine.store.command("ZRANGE", waiting, 0, -1, "WITHSCORES")
    long_ids = {split_id(c.job.id)[0] for c in claimed}
    assert after == [entry for entry in before if entry[0] not in long_ids]  # same scores, same order
    assert [c.job.payload for c in await engine.claim("echo", 5)] == [600, 700]


async def test_max_timeout_scan_is_bounded(engine: Engine) -> None:
    await engine.enqueue([timed(600, i) for i in range(120)] + [timed(10, "short")])
    assert await engine.claim("echo", 1, max_timeout=45) == []  # 101 inspected, all too long
    assert (await engine.stats("echo")).counts[State.WAITING] == 121
    assert [c.job.payload for c in await engine.claim("echo", 30, max_timeout=45)] == ["short"]


async def test_lane_defaults_the_timeout_filter(engine: Engine) -> None:
    await engine.enqueue([timed(300), timed(45), timed(46)])
    assert [c.job.payload for c in await engine.claim("echo", 5, lane="standard")] == [45]
    assert [c.job.payload for c in await engine.claim("echo", 5, lane="long")] == [300, 46]
    with pytest.raises(ValidationError) as unknown:
        await engine.claim("echo", 5, lane="nope")
    assert unknown.value.field == "lane"
    with pytest.raises(ValidationError):
        await engine.claim("echo", 5, max_timeout=0)


async def test_triggers_are_per_lane(engine_factory: EngineFactory) -> None:
    engine = engine_factory(lanes=Lanes.of({"fast": 5, "slow": 100}))
    first = await engine.enqueue([timed(5)])
    assert (first.triggers, first.trigger) == (["fast"], True)
    both = await engine.enqueue([timed(1), timed(50), timed(60)])
    assert (both.triggers, both.trigger) == (["slow"], True)
    quiet = await engine.enqueue([timed(2), timed(99)])
    assert (quiet.triggers, quiet.trigger) == ([], False)
    assert len(await engine.claim("echo", 10, lane="fast")) == 3  # clears only the fast flag
    assert (await engine.enqueue([timed(1), timed(99)])).triggers == ["fast"]
    await engine.claim("echo", 1, lane="fast")
    assert (await engine.enqueue([timed(99)])).triggers == []
    await engine.claim("echo", 1)  # a worker serving every lane clears every flag
    assert sorted((await engine.enqueue([timed(99), timed(1)])).triggers) == ["fast", "slow"]
    with pytest.raises(ValidationError) as too_long:
        await engine.enqueue([timed(1), timed(101)])
    assert too_long.value.field == "jobs[1].timeout"


async def test_an_idempotent_repeat_asks_for_no_run(engine: Engine) -> None:
    assert (await engine.enqueue([spec(idempotency_key="k")])).triggers == ["long"]  # timeout 300
    await engine.claim("echo", 1)
    assert (await engine.enqueue([spec(idempotency_key="k")])).triggers == []


async def test_book_wake_keeps_the_earliest_pending_wake_per_lane(
    engine_factory: EngineFactory, fake_clock: FakeClock
) -> None:
    engine = engine_factory(clock=fake_clock)
    now = fake_clock.now
    assert await engine.book_wake("standard", now + 60) is True
    assert await engine.book_wake("standard", now + 90) is False  # an earlier one is pending
    assert await engine.book_wake("standard", now + 60) is False
    assert await engine.book_wake("standard", now + 30) is True  # earlier: publish, and record it
    assert await engine.book_wake("standard", now + 45) is False
    assert await engine.book_wake("long", now + 45) is True  # lanes are independent
    fake_clock.advance(31)  # the pending wake is past (published or lost): forgotten
    assert await engine.book_wake("standard", now + 100) is True
    with pytest.raises(ValidationError):
        await engine.book_wake("nope", now)


async def test_stats_show_the_last_claim_and_why_a_queue_looks_stalled(
    engine_factory: EngineFactory, fake_clock: FakeClock
) -> None:
    engine = engine_factory(clock=fake_clock)
    fake_clock.now = float(round(fake_clock.now))
    await engine.enqueue([spec(timeout=600)])
    fresh = await engine.stats("echo")
    assert (fresh.last_claim_at, fresh.stalled) == (None, None)
    fake_clock.advance(300)
    never = (await engine.stats("echo")).stalled
    assert never == (
        "1 job waiting, oldest 5m; no consumer has ever claimed from this queue: "
        "is a consumer running for its lane?"
    )
    # A consumer of the short lane finds the queue due (and records it) but cannot take the job.
    assert await engine.claim("echo", 1, lane="standard") == []
    polled = await engine.stats("echo")
    assert polled.last_claim_at is not None and polled.last_claim_at.timestamp() == fake_clock.now
    assert polled.stalled is None
    fake_clock.advance(420)
    assert (await engine.stats("echo")).stalled == (
        "1 job waiting, oldest 12m; no consumer has claimed from this queue for 7m: "
        "is a consumer running for its lane?"
    )
    await engine.pause("echo")
    assert (await engine.stats("echo")).stalled is None  # paused on purpose
    await engine.resume("echo")
    await engine.claim("echo", 1)
    assert (await engine.stats("echo")).stalled is None


async def test_every_process_applies_the_policy_in_redis(
    engine_factory: EngineFactory, fake_clock: FakeClock
) -> None:
    """The registry's engine writes the queue's policy; an engine with no view of it applies the same."""
    registry_view = engine_factory(
        clock=fake_clock,
        queue_options=lambda q: QueueOptions(rate_limit=(1, 3600), keep_cancelled_seconds=60),
    )
    await registry_view.enqueue([spec(payload=i) for i in range(3)])
    other = engine_factory(clock=fake_clock)  # no queue options of its own: what is stored applies
    assert len(await other.claim("echo", 3)) == 1  # the rate limit, one claim per hour
    waiting = (await other.list_jobs(queue="echo", state=State.WAITING)).jobs[0]
    cancelled = await other.cancel(waiting.id)  # an instance that never enqueued to the queue
    assert cancelled.state == State.CANCELLED
    fake_clock.advance(61)
    [kept] = (await other.list_jobs(queue="echo", state=State.WAITING)).jobs
    await other.cancel(kept.id)  # a cancel applies the retention: the first one is past its 60 s
    with pytest.raises(JobNotFoundError):
        await other.get(waiting.id)  # the queue's cancelled retention, not the default day
    assert (await other.get(kept.id)).state == State.CANCELLED


async def test_an_engine_speaking_for_its_queues_publishes_them_before_its_first_call(
    engine_factory: EngineFactory, fake_clock: FakeClock
) -> None:
    limited = engine_factory(
        clock=fake_clock, queue_options=lambda q: QueueOptions(concurrency=1), queues=["echo"]
    )
    plain = engine_factory(clock=fake_clock)
    await plain.enqueue([spec(payload=i) for i in range(3)])
    assert [c.job.payload for c in await limited.claim("echo", 3)] == [0]  # published, then applied
    assert await plain.claim("echo", 3) == []  # at the queue's limit, for every engine


def per_owner(limit: int) -> Any:
    return lambda queue: QueueOptions(owner_concurrency=limit)


async def test_a_limit_per_owner_holds_across_consumers_and_frees_on_finish_and_reap(
    engine_factory: EngineFactory, fake_clock: FakeClock
) -> None:
    one = engine_factory(clock=fake_clock, queue_options=per_owner(2))
    other = engine_factory(clock=fake_clock, queue_options=per_owner(2))
    await one.enqueue([spec(owner="alice", payload=f"a{i}") for i in range(4)])
    await one.enqueue([spec(owner="bob", payload="b0")])
    first = await one.claim("echo", 10, lease=60)
    assert sorted(c.job.payload for c in first) == ["a0", "a1", "b0"]  # alice's two, then bob's
    assert await other.claim("echo", 10) == []  # alice is at her limit everywhere
    done = next(c for c in first if c.job.payload == "a0")
    await other.finish([Outcome(job_id=done.job.id, token=done.token, status="completed")])
    assert [c.job.payload for c in await other.claim("echo", 10, lease=60)] == ["a2"]
    fake_clock.advance(61)  # every lease runs out: reaped, their owners' slots are free again
    again = await one.claim("echo", 10, lease=60)
    assert sorted(c.job.payload for c in again) == ["a1", "a2", "b0"]  # the reaped come first; a3 waits
    assert (await one.stats("echo")).counts[State.WAITING] == 1


async def test_one_owners_backlog_does_not_delay_anothers_first_job(
    engine_factory: EngineFactory, fake_clock: FakeClock
) -> None:
    """Fair share (BullMQ Pro's groups): a newcomer's job lands beside the jobs being claimed now."""
    engine = engine_factory(clock=fake_clock, queue_options=per_owner(100))
    await engine.enqueue([spec(owner="big", payload=i) for i in range(200)])
    taken = await engine.claim("echo", 50)
    await engine.enqueue([spec(owner="small", payload="first")])
    nxt = await engine.claim("echo", 3)
    assert [c.job.payload for c in nxt][:2] == [50, "first"]  # not behind big's 150 other waiting jobs
    await engine.finish([Outcome(job_id=c.job.id, token=c.token, status="completed") for c in taken + nxt])


async def test_a_queue_whose_waiting_owners_are_all_at_their_limit_is_not_due_until_a_finish(
    engine_factory: EngineFactory, fake_clock: FakeClock
) -> None:
    engine = engine_factory(clock=fake_clock, queue_options=per_owner(1))
    await engine.enqueue([spec(owner="alice", payload=i) for i in range(3)])
    [running] = await engine.claim("echo", 5, lease=60)
    assert await engine.claim("echo", 5) == []
    assert (await engine.due())["echo"] == pytest.approx(fake_clock.now + 60)  # only the lease to reap
    await engine.finish([Outcome(job_id=running.job.id, token=running.token, status="completed")])
    assert (await engine.due())["echo"] == pytest.approx(fake_clock.now)
    assert [c.job.payload for c in await engine.claim("echo", 5)] == [1]
