"""Durable steps and sleeps on real Redis through the REST gateway: recorded once, fenced, bounded, and a
sleep that frees its slot. The job types are in tests/integration/steps_jobs.py."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from functions.consumer.runtime import ConsumerRuntime, build_runtime, run_bounded
from shared.consumer import ConsumerConfig
from shared.context import JobContext, Sleep
from shared.engine import Engine
from shared.errors import PayloadTooLargeError, StepLimitError
from shared.limits import MAX_STEP_BYTES, MAX_STEPS, MAX_STEPS_BYTES
from shared.models import ClaimedJob, ErrorKind, Job, JobSpec, Lease, Outcome, State
from shared.settings import Settings
from shared.triggers import Trigger
from tests.integration.steps_jobs import PIPELINE_TIMEOUT, build_registry, ledger_lines
from tests.support.api_fixtures import gateway_settings
from tests.support.consumer_fixtures import poll, prefix_for
from tests.support.engine_fixtures import EngineFactory, FakeClock

ROOT = Path(__file__).parents[2]
Runtimes = Callable[..., ConsumerRuntime]


@pytest.fixture
def steps_settings(gateway: Any, unique_name: str) -> Settings:
    return gateway_settings(gateway, prefix_for(unique_name), lease_margin=1.0)


@pytest.fixture
async def runtimes(steps_settings: Settings) -> AsyncIterator[Runtimes]:
    made: list[ConsumerRuntime] = []

    def make(trigger: Trigger | None = None, **config: Any) -> ConsumerRuntime:
        registry, settings = build_registry(), ConsumerConfig(**config)
        runtime = build_runtime(steps_settings, registry=registry, config=settings, trigger=trigger)
        made.append(runtime)
        return runtime

    yield make
    for runtime in made:
        await runtime.redis.close()


async def submit(runtime: ConsumerRuntime, type_name: str, ledger: Path, **payload: Any) -> str:
    spec = runtime.registry.get(type_name).spec({"ledger": str(ledger), **payload}, owner="alice")
    return (await runtime.engine.enqueue([spec])).results[0].job.id


async def drain_until(runtime: ConsumerRuntime, job_id: str, state: State, within: float = 20.0) -> None:
    async def reached() -> bool:
        await runtime.consumer.drain(5)
        return (await runtime.engine.get(job_id)).state == state

    await poll(reached, within=within)


async def test_steps_survive_a_killed_consumer_and_are_not_run_again(
    runtimes: Runtimes, steps_settings: Settings, tmp_path: Path
) -> None:
    runtime = runtimes()
    ledger = tmp_path / "ledger"
    job_id = await submit(runtime, "pipeline", ledger, block=True)
    values = {
        "env": "test",
        "JOBQ_REDIS_REST_URL": steps_settings.redis_rest_url,
        "JOBQ_REDIS_REST_TOKEN": steps_settings.redis_rest_token.get_secret_value(),
        "key_prefix": steps_settings.key_prefix,
        "lease_margin": steps_settings.lease_margin,
        "redis_cluster": steps_settings.redis_cluster,
    }
    env = {**os.environ, "STEPS_BLOCK": "1"}
    consumer = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "tests.integration.steps_jobs", json.dumps(values)],
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
    )
    try:
        await poll(lambda: _async(ledger_lines(ledger) == ["generate", "test", "blocked"]), within=60)
        job = await runtime.engine.get(job_id)
        assert job.state == State.ACTIVE and list(job.steps) == ["generate", "test"]
        consumer.send_signal(signal.SIGKILL)
    finally:
        if consumer.returncode is None:
            consumer.kill()
        await asyncio.wait_for(consumer.wait(), 10)
    # The lease runs out (timeout + 1 s margin); a claim reaps the job and the retry skips both steps.
    await drain_until(runtime, job_id, State.COMPLETED, within=PIPELINE_TIMEOUT + 20)
    job = await runtime.engine.get(job_id)
    assert ledger_lines(ledger) == ["generate", "test", "blocked", "pull_request"]
    assert job.result == ["generate done", "test done", "pull_request done"]
    assert job.steps == {
        "generate": "generate done",
        "test": "test done",
        "pull_request": "pull_request done",
    }
    assert job.attempts == 2 and job.errors[-1].kind == ErrorKind.LEASE_EXPIRED


async def _async(value: bool) -> bool:
    return value


async def test_a_failed_attempt_resumes_after_its_recorded_steps(runtimes: Runtimes, tmp_path: Path) -> None:
    runtime = runtimes()
    ledger = tmp_path / "ledger"
    job_id = await submit(runtime, "pipeline", ledger, fail_first=True)
    await drain_until(runtime, job_id, State.COMPLETED)
    assert ledger_lines(ledger) == ["generate", "test", "pull_request"]
    job = await runtime.engine.get(job_id)
    assert job.attempts == 2 and len(job.steps) == 3


async def test_a_sleep_frees_its_slot_and_resumes_without_an_attempt(
    runtimes: Runtimes, tmp_path: Path
) -> None:
    runtime = runtimes()
    ledger = tmp_path / "ledger"
    sleeper = await submit(runtime, "one_at_a_time", ledger, sleep=1.0)
    other = await submit(runtime, "one_at_a_time", ledger)
    await drain_until(runtime, sleeper, State.COMPLETED)
    # The other job ran whole while the first one slept, though only one may run at a time.
    assert ledger_lines(ledger) == [
        f"before-{sleeper}",
        f"before-{other}",
        f"after-{other}",
        f"after-{sleeper}",
    ]
    job = await runtime.engine.get(sleeper)
    assert job.attempts == 1  # the sleep gave its attempt back
    assert list(job.steps) == ["before", "sleep:1"]
    woke = job.steps["sleep:1"] / 1000
    done = await runtime.engine.get(other)
    assert done.finished_at is not None and done.finished_at.timestamp() < woke
    assert job.started_at is not None and job.started_at.timestamp() >= woke


async def test_a_sleeping_job_is_delayed_until_its_wake_time(runtimes: Runtimes, tmp_path: Path) -> None:
    runtime = runtimes()
    job_id = await submit(runtime, "pipeline", tmp_path / "ledger", sleep=60.0)
    report = await runtime.consumer.drain(5)
    assert (report.claimed, report.slept, report.retried) == (1, 1, 0)
    job = await runtime.engine.get(job_id)
    assert job.state == State.DELAYED and job.attempts == 0
    assert job.run_at is not None and job.run_at.timestamp() * 1000 == job.steps["sleep:1"]
    due = await runtime.engine.due()
    assert due[job.queue] == job.steps["sleep:1"] / 1000  # the due index wakes a consumer then
    cancelled = await runtime.engine.cancel(job_id)
    assert cancelled.state == State.CANCELLED


class Fired:
    """A trigger that keeps what it was asked to fire (the Lambda wake-up a bounded run books)."""

    def __init__(self) -> None:
        self.fired: list[tuple[str, float]] = []

    async def fire(self, lane: str, *, delay: float = 0.0) -> None:
        self.fired.append((lane, delay))


async def test_a_bounded_run_books_a_wake_up_for_a_sleeping_job(runtimes: Runtimes, tmp_path: Path) -> None:
    trigger = Fired()
    runtime = runtimes(trigger=trigger)
    job_id = await submit(runtime, "pipeline", tmp_path / "ledger", sleep=20.0)
    report = await run_bounded(runtime, 10)  # a Lambda run: it ends, nothing waits for the sleep
    assert (report.claimed, report.slept) == (1, 1)
    job = await runtime.engine.get(job_id)
    assert job.state == State.DELAYED and job.run_at is not None
    [(lane, delay)] = trigger.fired
    assert lane == runtime.lane
    assert delay == pytest.approx(job.run_at.timestamp() - time.time(), abs=1.0)


async def claim_one(engine: Engine, queue: str, **kwargs: Any) -> ClaimedJob:
    [claimed] = await engine.claim(queue, 1, **kwargs)
    return claimed


async def test_a_stale_token_cannot_record_a_step(
    engine_factory: EngineFactory, fake_clock: FakeClock
) -> None:
    engine = engine_factory(clock=fake_clock)
    await engine.enqueue([JobSpec(type="t", queue="steps", max_attempts=3)])
    first = await claim_one(engine, "steps", lease=1.0)
    old = Lease(job_id=first.job.id, token=first.token)
    assert await engine.step(old, "a", '"one"')
    assert await engine.step(old, "a", '"again"')  # a re-sent step: recorded once, unchanged
    fake_clock.advance(2)  # the lease ran out: the next claim reaps and re-claims the job
    second = await claim_one(engine, "steps")
    assert second.job.steps == {"a": "one"}  # the claim brings the recorded steps
    assert not await engine.step(old, "b", '"stale"')
    assert await engine.step(Lease(job_id=first.job.id, token=second.token), "b", '{"n":2}')
    await engine.finish([Outcome(job_id=first.job.id, token=second.token, status="completed")])
    assert not await engine.step(Lease(job_id=first.job.id, token=second.token), "c", "3")  # not active
    assert (await engine.get(first.job.id)).steps == {"a": "one", "b": {"n": 2}}


async def test_step_limits_are_kept_by_the_script(engine: Engine) -> None:
    await engine.enqueue([JobSpec(type="t", queue="limits")])
    claimed = await claim_one(engine, "limits")
    lease = Lease(job_id=claimed.job.id, token=claimed.token)
    big = json.dumps("x" * (MAX_STEP_BYTES - 100))
    fit = MAX_STEPS_BYTES // (len(big) + 10)
    for i in range(fit):
        assert await engine.step(lease, f"big{i}", big)
    with pytest.raises(PayloadTooLargeError, match="bytes"):
        await engine.step(lease, "one too many bytes", big)

    await engine.enqueue([JobSpec(type="t", queue="limits")])
    claimed = await claim_one(engine, "limits")
    lease = Lease(job_id=claimed.job.id, token=claimed.token)
    for i in range(MAX_STEPS):
        assert await engine.step(lease, f"s{i}", "1")
    with pytest.raises(PayloadTooLargeError, match="steps"):
        await engine.step(lease, "one too many", "1")
    assert len((await engine.get(claimed.job.id)).steps) == MAX_STEPS


async def test_an_oversized_step_result_fails_the_job_naming_the_step(
    runtimes: Runtimes, tmp_path: Path
) -> None:
    runtime = runtimes()
    job_id = await submit(runtime, "pipeline", tmp_path / "ledger", big=MAX_STEP_BYTES + 1)
    await drain_until(runtime, job_id, State.FAILED)
    job = await runtime.engine.get(job_id)
    assert job.attempts == 1 and job.error is not None and job.error.kind == ErrorKind.PERMANENT
    assert "step 'big'" in job.error.message and str(MAX_STEP_BYTES) in job.error.message
    assert list(job.steps) == ["generate", "test"]


async def test_context_steps_without_an_engine() -> None:
    """The rules the context keeps itself: names, JSON results, the count, a sleep as a step."""
    job = Job(id="x", queue="q", type="t", owner="o", state=State.ACTIVE, created_at=datetime.now(UTC))
    ctx = JobContext(ClaimedJob(job=job, token="1.a", lease_until=datetime.now(UTC)))
    calls: list[int] = []

    async def work(n: int) -> int:
        calls.append(n)
        return n * 2

    assert await ctx.step("double", work, 21) == 42
    assert await ctx.step("double", work, 99) == 42 and calls == [21]
    with pytest.raises(StepLimitError, match="'nan'"):
        await ctx.step("nan", lambda: float("nan"))
    for bad in ("", "x" * 101, "tab\there", "\ud800"):
        with pytest.raises(ValueError, match="step name"):
            await ctx.step(bad, work, 1)
    with pytest.raises(Sleep) as slept:
        await ctx.sleep(5)
    assert (slept.value.step, slept.value.seconds) == ("sleep:1", 5.0)
    ctx.steps["sleep:2"] = 0  # as if recorded: the next unnamed sleep returns at once
    await ctx.sleep(5)
    timed = JobContext(ClaimedJob(job=job, token="1.a", lease_until=datetime.now(UTC)), wall=lambda: 1000.0)
    with pytest.raises(Sleep) as until:
        await timed.sleep_until(1010.5, name="wake")
    assert (until.value.step, until.value.seconds) == ("wake", 10.5)
    with pytest.raises(Sleep) as past:
        await timed.sleep_until(datetime.fromtimestamp(900, UTC))
    assert (past.value.step, past.value.seconds) == ("sleep:1", 0.0)
    for i in range(MAX_STEPS - len(ctx.steps)):
        await ctx.step(f"n{i}", lambda: None)
    with pytest.raises(StepLimitError, match=str(MAX_STEPS)):
        await ctx.step("too many", lambda: None)
