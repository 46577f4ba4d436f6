"""The engine's contract, through the REST gateway with the real SDK, on both backends.

Each test runs under its own key prefix (the `engine` fixture), so nothing is ever flushed.
Time-dependent tests inject a FakeClock (sent to the scripts as "now") instead of sleeping.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError as PydanticValidationError

from shared.engine import Engine
from shared.errors import (
    IdempotencyConflictError,
    InvalidTransitionError,
    JobNotFoundError,
    PayloadTooLargeError,
    ValidationError,
)
from shared.models import (
    Backoff,
    ErrorKind,
    JobError,
    JobSpec,
    Lease,
    Outcome,
    ProgressUpdate,
    QueueOptions,
    State,
)
from tests.support.engine_fixtures import EngineFactory, FakeClock

NO_JITTER = Backoff(delay=10, factor=2, jitter=0)


def spec(**kw: object) -> JobSpec:
    values: dict[str, object] = {"type": "echo", "payload": {"n": 1}, "owner": "alice"}
    values.update(kw)
    return JobSpec.model_validate(values)


async def test_lifecycle_submit_claim_complete(engine: Engine) -> None:
    reply = await engine.enqueue([spec(payload={"hello": "world"}, metadata={"m": 1}, tags=["project:42"])])
    [result] = reply.results
    assert result.created and result.job.state is State.WAITING and result.job.queue == "echo"
    assert await engine.get(result.job.id) == result.job

    [claimed] = await engine.claim("echo", 10)
    job = claimed.job
    assert (job.id, job.state, job.attempts, job.payload) == (
        result.job.id,
        State.ACTIVE,
        1,
        {"hello": "world"},
    )
    assert claimed.lease_until > datetime.now(UTC) + timedelta(seconds=300)  # timeout 300 + margin
    assert await engine.claim("echo", 10) == []

    [done] = await engine.finish(
        [Outcome(job_id=job.id, token=claimed.token, status="completed", result=[1])]
    )
    assert (done.ok, done.state) == (True, State.COMPLETED)
    final = await engine.get(job.id, owner="alice")
    assert (final.state, final.result, final.progress, final.metadata, final.tags) == (
        State.COMPLETED,
        [1],
        100,
        {"m": 1},
        ["project:42"],
    )
    assert final.started_at is not None and final.finished_at is not None
    with pytest.raises(JobNotFoundError):
        await engine.get(job.id, owner="mallory")


async def test_priority_order_strict_between_levels_fifo_within(engine: Engine) -> None:
    specs = [spec(payload=i, priority=p) for i, p in enumerate([5, 8, 0, 5, 3, 0, 8, 5])]
    await engine.enqueue(specs)
    claimed = await engine.claim("echo", 8)
    assert [c.job.payload for c in claimed] == [2, 5, 4, 0, 3, 7, 1, 6]


async def test_delayed_job_waits_for_its_time(engine_factory: EngineFactory, fake_clock: FakeClock) -> None:
    engine = engine_factory(clock=fake_clock)
    [r] = (await engine.enqueue([spec(delay=60)])).results
    assert r.job.state is State.DELAYED
    at = datetime.fromtimestamp(fake_clock.now + 120, UTC)
    [r2] = (await engine.enqueue([spec(run_at=at)])).results
    assert r2.job.state is State.DELAYED
    assert await engine.claim("echo", 10) == []
    assert (await engine.due())["echo"] == pytest.approx(fake_clock.now + 60, abs=0.01)
    fake_clock.advance(61)
    assert [c.job.id for c in await engine.claim("echo", 10)] == [r.job.id]
    fake_clock.advance(60)
    assert [c.job.id for c in await engine.claim("echo", 10)] == [r2.job.id]


async def test_idempotency_key_repeat_conflict_and_scope(engine: Engine) -> None:
    first = (await engine.enqueue([spec(idempotency_key="k")])).results[0]
    again = (await engine.enqueue([spec(idempotency_key="k")])).results[0]
    assert first.created and not again.created and again.job.id == first.job.id
    with pytest.raises(IdempotencyConflictError):
        await engine.enqueue([spec(idempotency_key="k", payload={"n": 2}), spec()])
    # All or nothing: the batch with the conflict wrote nothing.
    assert (await engine.stats("echo")).counts[State.WAITING] == 1
    other = (await engine.enqueue([spec(idempotency_key="k", owner="bob")])).results[0]
    assert other.created and other.job.id != first.job.id


async def test_stale_token_changes_nothing_and_resend_is_idempotent(engine: Engine) -> None:
    await engine.enqueue([spec()])
    [c] = await engine.claim("echo", 1)
    stale = Outcome(job_id=c.job.id, token="1.0000000000000000" + "9", status="completed")
    assert (await engine.finish([stale]))[0].ok is False
    assert (await engine.get(c.job.id)).state is State.ACTIVE
    outcome = Outcome(job_id=c.job.id, token=c.token, status="completed", result="r")
    assert (await engine.finish([outcome]))[0].ok is True
    assert (await engine.finish([outcome]))[0] == (await engine.finish([outcome]))[0]
    stats = await engine.stats("echo")
    assert (stats.completed_total, stats.counts[State.COMPLETED]) == (1, 1)
    assert (await engine.extend([Lease(job_id=c.job.id, token=c.token)], 60))[0].ok is False


async def test_retryable_failures_back_off_then_dead_letter(
    engine_factory: EngineFactory, fake_clock: FakeClock
) -> None:
    engine = engine_factory(clock=fake_clock)
    [r] = (await engine.enqueue([spec(max_attempts=3, backoff=NO_JITTER)])).results
    error = JobError(kind=ErrorKind.RETRYABLE, message="flaky")
    for attempt, delay in ((1, 10), (2, 20)):
        [c] = await engine.claim("echo", 1)
        assert c.job.attempts == attempt
        [f] = await engine.finish([Outcome(job_id=r.job.id, token=c.token, status="failed", error=error)])
        assert f.state is State.DELAYED
        job = await engine.get(r.job.id)
        assert job.run_at == datetime.fromtimestamp(round((fake_clock.now + delay) * 1000) / 1000, UTC)
        fake_clock.advance(delay - 1)
        assert await engine.claim("echo", 1) == []
        fake_clock.advance(1)
    [c] = await engine.claim("echo", 1)
    [f] = await engine.finish([Outcome(job_id=r.job.id, token=c.token, status="failed", error=error)])
    assert f.state is State.FAILED
    job = await engine.get(r.job.id)
    assert (job.attempts, [e.attempt for e in job.errors], job.error) == (3, [1, 2, 3], job.errors[-1])
    stats = await engine.stats("echo")
    assert (stats.failed_total, stats.retried_total, stats.counts[State.FAILED]) == (1, 2, 1)


async def test_permanent_error_and_retry_after(engine_factory: EngineFactory, fake_clock: FakeClock) -> None:
    engine = engine_factory(clock=fake_clock)
    a, b = (r.job.id for r in (await engine.enqueue([spec(payload=1), spec(payload=2)])).results)
    ca, cb = await engine.claim("echo", 2)
    permanent = JobError(kind=ErrorKind.PERMANENT, message="bad input")
    finished = await engine.finish(
        [
            Outcome(job_id=a, token=ca.token, status="failed", error=permanent),
            Outcome(job_id=b, token=cb.token, status="retry", retry_after=5),
        ]
    )
    assert [f.state for f in finished] == [State.FAILED, State.DELAYED]
    fake_clock.advance(5)
    [again] = await engine.claim("echo", 5)
    assert (again.job.id, again.job.attempts) == (b, 2)


async def test_expired_lease_is_reaped_as_a_failed_attempt(
    engine_factory: EngineFactory, fake_clock: FakeClock
) -> None:
    engine = engine_factory(clock=fake_clock)
    [r] = (await engine.enqueue([spec(max_attempts=2, backoff=Backoff(delay=0, jitter=0))])).results
    [first] = await engine.claim("echo", 1, lease=10)
    fake_clock.advance(11)
    [second] = await engine.claim("echo", 1, lease=10)
    assert second.job.attempts == 2 and second.token != first.token
    assert second.job.errors[-1].kind is ErrorKind.LEASE_EXPIRED
    late = Outcome(job_id=r.job.id, token=first.token, status="completed")
    assert (await engine.finish([late]))[0].ok is False
    fake_clock.advance(11)
    assert await engine.claim("echo", 1) == []
    job = await engine.get(r.job.id)
    assert (job.state, job.attempts) == (State.FAILED, 2)


async def test_extend_report_and_cancel_of_a_running_job(
    engine_factory: EngineFactory, fake_clock: FakeClock
) -> None:
    engine = engine_factory(clock=fake_clock)
    await engine.enqueue([spec()])
    [c] = await engine.claim("echo", 1, lease=10)
    lease = Lease(job_id=c.job.id, token=c.token)
    fake_clock.advance(8)
    assert (await engine.extend([lease], 30))[0].ok
    fake_clock.advance(20)
    assert await engine.claim("echo", 1) == []  # not reaped: the lease was extended
    update = ProgressUpdate(job_id=c.job.id, token=c.token, progress=40, logs=["a", "b"])
    assert (await engine.report([update]))[0].ok
    job = await engine.get(c.job.id)
    assert (job.progress, job.logs) == (40, ["a", "b"])

    assert (await engine.cancel(c.job.id, owner="alice")).cancel_requested
    [status] = await engine.report([ProgressUpdate(job_id=c.job.id, token=c.token, logs=["c"])])
    assert status.ok and status.cancel_requested
    assert (await engine.extend([lease], 30))[0].cancel_requested
    error = JobError(kind=ErrorKind.RETRYABLE, message="stopped")
    [f] = await engine.finish([Outcome(job_id=c.job.id, token=c.token, status="failed", error=error)])
    assert f.state is State.CANCELLED
    assert (await engine.get(c.job.id)).logs == ["a", "b", "c"]


async def test_cancel_retry_and_their_guards(engine: Engine) -> None:
    a, b = (r.job.id for r in (await engine.enqueue([spec(), spec(delay=3600)])).results)
    with pytest.raises(JobNotFoundError):
        await engine.cancel(a, owner="mallory")
    assert (await engine.cancel(a)).state is State.CANCELLED
    assert (await engine.cancel(b)).state is State.CANCELLED
    assert (await engine.cancel(b)).state is State.CANCELLED  # terminal: unchanged
    retried = await engine.retry(a, owner="alice")
    assert (retried.state, retried.attempts) == (State.WAITING, 0)
    with pytest.raises(InvalidTransitionError):
        await engine.retry(a)
    stats = await engine.stats("echo")
    assert (stats.counts[State.WAITING], stats.counts[State.CANCELLED], stats.cancelled_total) == (1, 1, 2)


async def test_release_hands_back_without_counting_an_attempt(engine: Engine) -> None:
    ids = [r.job.id for r in (await engine.enqueue([spec(payload=i) for i in range(3)])).results]
    claimed = await engine.claim("echo", 2)
    results = await engine.release([Lease(job_id=c.job.id, token=c.token) for c in claimed])
    assert [(r.ok, r.state) for r in results] == [(True, State.WAITING)] * 2
    again = await engine.claim("echo", 3)
    assert [c.job.id for c in again] == ids  # back at the front, in order
    assert [c.job.attempts for c in again] == [1, 1, 1]
    assert (await engine.release([Lease(job_id=ids[0], token=claimed[0].token)]))[0].ok is False


async def test_pause_resume_and_due_index(engine: Engine) -> None:
    assert "echo" not in await engine.due()
    await engine.enqueue([spec()])
    assert "echo" in await engine.due()
    await engine.pause("echo")
    assert "echo" not in await engine.due()
    assert await engine.claim("echo", 5) == []
    assert (await engine.stats("echo")).paused
    await engine.enqueue([spec()])
    assert "echo" not in await engine.due()
    await engine.resume("echo")
    claimed = await engine.claim("echo", 5)
    assert len(claimed) == 2
    await engine.finish([Outcome(job_id=c.job.id, token=c.token, status="completed") for c in claimed])
    await engine.claim("echo", 5)  # recomputes the due time: nothing left
    assert "echo" not in await engine.due()


async def test_trigger_is_coalesced_until_a_claim(engine: Engine) -> None:
    assert (await engine.enqueue([spec()])).trigger is True
    assert (await engine.enqueue([spec()])).trigger is False
    await engine.claim("echo", 10)
    assert (await engine.enqueue([spec()])).trigger is True


async def test_rate_limit_at_claim(engine_factory: EngineFactory, fake_clock: FakeClock) -> None:
    engine = engine_factory(clock=fake_clock, queue_options=lambda q: QueueOptions(rate_limit=(2, 60)))
    fake_clock.now = 1_800_000_000.0  # the start of a 60 s window
    await engine.enqueue([spec(payload=i) for i in range(5)])
    assert len(await engine.claim("echo", 5)) == 2
    assert await engine.claim("echo", 5) == []
    assert (await engine.due())["echo"] == pytest.approx(fake_clock.now + 60)
    fake_clock.advance(60)
    assert len(await engine.claim("echo", 5)) == 2


async def test_retention_by_count_and_age(
    engine_factory: EngineFactory, gateway: object, fake_clock: FakeClock
) -> None:
    options = QueueOptions(keep_completed_count=2, keep_completed_seconds=3600)
    engine = engine_factory(queue_options=lambda q: options, clock=fake_clock)
    ids = [r.job.id for r in (await engine.enqueue([spec(payload=i) for i in range(5)])).results]
    claimed = await engine.claim("echo", 5)
    await engine.finish([Outcome(job_id=c.job.id, token=c.token, status="completed") for c in claimed])
    assert (await engine.stats("echo")).counts[State.COMPLETED] == 2
    kept = [job.id for job in (await engine.list_jobs(queue="echo", state=State.COMPLETED)).jobs]
    assert sorted(kept) == sorted(ids[3:])
    with pytest.raises(JobNotFoundError):
        await engine.get(ids[0])
    fake_clock.advance(3601)  # past the age limit: the next finish of the queue trims both
    [late] = (await engine.enqueue([spec(payload="late")])).results
    [claimed_late] = await engine.claim("echo", 1)
    await engine.finish([Outcome(job_id=claimed_late.job.id, token=claimed_late.token, status="completed")])
    kept = [job.id for job in (await engine.list_jobs(queue="echo", state=State.COMPLETED)).jobs]
    assert kept == [late.job.id]


async def test_list_jobs_newest_first_with_cursor_and_filters(engine: Engine) -> None:
    ids = [r.job.id for r in (await engine.enqueue([spec(payload=i) for i in range(5)])).results]
    await engine.enqueue([spec(owner="bob")])
    extra = await engine.enqueue([spec(type="other", tags=["project:7"])])
    newest_first = [extra.results[0].job.id, *ids[::-1]]
    page = await engine.list_jobs(owner="alice", limit=2)
    assert [j.id for j in page.jobs] == newest_first[:2] and page.cursor
    rest = await engine.list_jobs(owner="alice", limit=10, cursor=page.cursor)
    assert [j.id for j in rest.jobs] == newest_first[2:] and rest.cursor is None
    await engine.claim("echo", 1)
    active = await engine.list_jobs(owner="alice", state=State.ACTIVE)
    assert [j.id for j in active.jobs] == [ids[0]]
    assert len((await engine.list_jobs(owner="alice", type="other")).jobs) == 1
    assert len((await engine.list_jobs(owner="alice", tag="project:7")).jobs) == 1
    assert (await engine.list_jobs(owner="bob", tag="project:7")).jobs == []  # tag listings are per owner
    queue_page = await engine.list_jobs(queue="echo", limit=3)
    assert len(queue_page.jobs) == 3 and queue_page.cursor
    more = await engine.list_jobs(queue="echo", limit=10, cursor=queue_page.cursor)
    assert len(queue_page.jobs) + len(more.jobs) == 6
    with pytest.raises(ValidationError):
        await engine.list_jobs(owner="alice", cursor="../../x")
    with pytest.raises(ValidationError):
        await engine.list_jobs()
    with pytest.raises(ValidationError):
        await engine.list_jobs(tag="project:7")


async def test_metrics_counts_histograms_throughput_and_events(engine: Engine) -> None:
    await engine.enqueue([spec(payload=i) for i in range(4)])
    claimed = await engine.claim("echo", 3)
    error = JobError(kind=ErrorKind.PERMANENT, message="no")
    await engine.finish(
        [Outcome(job_id=c.job.id, token=c.token, status="completed") for c in claimed[:2]]
        + [Outcome(job_id=claimed[2].job.id, token=claimed[2].token, status="failed", error=error)]
    )
    [m] = [m for m in await engine.metrics() if m.queue == "echo"]
    assert m.counts == {
        State.WAITING: 1,
        State.DELAYED: 0,
        State.ACTIVE: 0,
        State.COMPLETED: 2,
        State.FAILED: 1,
        State.CANCELLED: 0,
        State.WAITING_CHILDREN: 0,
    }
    assert (m.completed_total, m.failed_total, sum(m.run_buckets), sum(m.wait_buckets)) == (2, 1, 3, 3)
    assert (m.throughput[-1].completed, m.throughput[-1].failed, len(m.throughput)) == (2, 1, 60)
    assert m.oldest_waiting_age is not None and m.oldest_waiting_age >= 0
    assert [s.queue for s in await engine.stats_all()] == ["echo"]

    events = await engine.events("echo")
    assert [e.state for e in events].count(State.WAITING) == 4
    assert {e.state for e in events} == {State.WAITING, State.ACTIVE, State.COMPLETED, State.FAILED}
    assert await engine.events("echo", after=events[-1].id) == []


async def test_events_since_reads_every_queue_in_one_command(engine: Engine, gateway: Any) -> None:
    await engine.enqueue([spec(payload=1)])
    await engine.enqueue([spec(type="other", queue="other", payload=2)])
    assert await engine.queue_names() == ["echo", "other"]
    start = {"echo": "0-0", "other": "0-0", "quiet": "0-0"}
    before = gateway.command_count()
    first = await engine.events_since(start)
    # One XREAD; on a cluster, whose XREAD needs one slot, one read per queue.
    assert gateway.command_count() - before == (3 if engine.cluster else 1)
    assert [e.state for e in first["echo"]] == [State.WAITING]
    assert [e.state for e in first["other"]] == [State.WAITING]
    assert first["quiet"] == []
    # Resuming after the last ids returns only what came since, as `events` does queue by queue.
    [claimed] = await engine.claim("other", 1)
    after = {"echo": first["echo"][-1].id, "other": first["other"][-1].id}
    later = await engine.events_since(after)
    assert later["echo"] == []
    assert [(e.job_id, e.state) for e in later["other"]] == [(claimed.job.id, State.ACTIVE)]
    assert later["other"] == await engine.events("other", after=after["other"])
    with pytest.raises(ValidationError):
        await engine.events_since({"echo": "not-an-id"})
    with pytest.raises(ValidationError):
        await engine.events_since({"bad queue!": "0-0"})


async def test_clean_retry_failed_and_obliterate(engine: Engine) -> None:
    await engine.enqueue([spec(payload=i) for i in range(3)])
    claimed = await engine.claim("echo", 3)
    error = JobError(kind=ErrorKind.PERMANENT, message="no")
    await engine.finish(
        [Outcome(job_id=c.job.id, token=c.token, status="failed", error=error) for c in claimed]
    )
    assert await engine.retry_failed("echo", limit=2) == 2
    assert await engine.retry_failed("echo") == 1
    claimed = await engine.claim("echo", 3)
    await engine.finish([Outcome(job_id=c.job.id, token=c.token, status="completed") for c in claimed])
    assert await engine.clean("echo", State.COMPLETED, older_than=3600) == 0
    assert await engine.clean("echo", State.COMPLETED, older_than=0, limit=2) == 2
    with pytest.raises(ValidationError):
        await engine.clean("echo", State.WAITING, older_than=0)
    await engine.enqueue([spec()])
    await engine.obliterate("echo")
    assert (await engine.stats("echo")).counts[State.WAITING] == 0
    assert await engine.stats_all() == []


@pytest.mark.parametrize("hostile", ["../../etc/passwd", "x" * 5000, "jobq:due", "", "01ABC"])
async def test_hostile_ids_are_not_found_without_touching_redis(engine: Engine, hostile: str) -> None:
    for call in (engine.get, engine.cancel, engine.retry):
        with pytest.raises(JobNotFoundError):
            await call(hostile)


async def test_validation_at_the_edge(engine: Engine) -> None:
    small = Engine(engine.store.redis, prefix=engine.keys.prefix, max_payload_bytes=100)
    with pytest.raises(PayloadTooLargeError) as too_large:
        await small.enqueue([spec(), spec(payload="x" * 200)])
    assert too_large.value.field == "jobs[1].payload"
    with pytest.raises(ValidationError) as batch:
        await engine.enqueue([spec()] * 1001)
    assert batch.value.field == "jobs"
    with pytest.raises(PydanticValidationError):  # a spec is validated whole; the engine trusts it
        spec(queue="bad name")
    with pytest.raises(ValidationError):
        await engine.claim("bad name", 1)
    with pytest.raises(ValidationError):
        await engine.claim("echo", 0)
    assert (await engine.stats("echo")).counts[State.WAITING] == 0


async def test_finish_and_claim_is_both_in_one_round_trip(
    engine_factory: EngineFactory, gateway: Any
) -> None:
    """A refill: the outcomes are recorded first, so the claim sees the slot they freed (a limit of 1)."""
    engine = engine_factory(queue_options=lambda q: QueueOptions(concurrency=1))
    await engine.enqueue([spec(payload={"n": i}) for i in range(3)])
    [first] = await engine.claim("echo", 3)
    stale = Outcome(job_id=first.job.id, token="1.stale", status="completed")
    finished, claimed = await engine.finish_and_claim([stale], "echo", 3)  # also loads the script
    assert [(r.ok, r.state) for r in finished] == [(False, State.ACTIVE)] and claimed == []  # at the limit
    done = Outcome(job_id=first.job.id, token=first.token, status="completed", result={"ok": True})
    gateway.reset_commands()
    finished, claimed = await engine.finish_and_claim([done], "echo", 3)
    assert gateway.command_count() == 1
    assert [(r.ok, r.state) for r in finished] == [(True, State.COMPLETED)]
    assert [c.job.payload for c in claimed] == [{"n": 1}]  # the slot the outcome freed
    assert (await engine.get(first.job.id)).result == {"ok": True}
