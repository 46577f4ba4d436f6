"""The retry rule (lib.lua `retry_delay_ms`), pinned by running real retries on Redis with an injected
clock and reading back the scheduled run-at time of each retry."""

from __future__ import annotations

import pytest

from shared.engine import Engine
from shared.models import Backoff, ErrorKind, JobError, Outcome, State
from tests.integration.test_engine import spec
from tests.support.engine_fixtures import EngineFactory, FakeClock

FLAKY = JobError(kind=ErrorKind.RETRYABLE, message="flaky")


async def retry_schedule(engine: Engine, clock: FakeClock, backoff: Backoff, attempts: int) -> list[float]:
    """Seconds from each failure to the retry it schedules, failing every attempt of one job."""
    [r] = (await engine.enqueue([spec(max_attempts=attempts, backoff=backoff)])).results
    delays = []
    for _ in range(attempts - 1):
        [c] = await engine.claim("echo", 1)
        [f] = await engine.finish([Outcome(job_id=r.job.id, token=c.token, status="failed", error=FLAKY)])
        assert f.state is State.DELAYED
        run_at = (await engine.get(r.job.id)).run_at
        assert run_at is not None
        delays.append(round(run_at.timestamp() - clock.now, 3))
        clock.now = run_at.timestamp()
    [c] = await engine.claim("echo", 1)
    [f] = await engine.finish([Outcome(job_id=r.job.id, token=c.token, status="failed", error=FLAKY)])
    assert f.state is State.FAILED  # the last attempt's failure dead-letters it
    return delays


@pytest.fixture
def clocked(engine_factory: EngineFactory, fake_clock: FakeClock) -> Engine:
    fake_clock.now = float(round(fake_clock.now))  # whole seconds: run-at times are exact in ms
    return engine_factory(clock=fake_clock)


async def test_exponential_grows_by_its_factor_up_to_the_cap(clocked: Engine, fake_clock: FakeClock) -> None:
    backoff = Backoff(delay=10, factor=3, max_delay=100, jitter=0)
    assert await retry_schedule(clocked, fake_clock, backoff, 6) == [10, 30, 90, 100, 100]


async def test_fixed_ignores_the_factor(clocked: Engine, fake_clock: FakeClock) -> None:
    backoff = Backoff(kind="fixed", delay=7, factor=3, max_delay=100, jitter=0)
    assert await retry_schedule(clocked, fake_clock, backoff, 4) == [7, 7, 7]


async def test_fixed_is_capped_too(clocked: Engine, fake_clock: FakeClock) -> None:
    backoff = Backoff(kind="fixed", delay=50, max_delay=20, jitter=0)
    assert await retry_schedule(clocked, fake_clock, backoff, 2) == [20]


async def test_jitter_spreads_within_its_bounds(clocked: Engine, fake_clock: FakeClock) -> None:
    # 100 jobs fail in one finish call at their 2nd attempt: base 10 * 2 = 20 s, jitter +-50%.
    backoff = Backoff(delay=10, factor=2, jitter=0.5)
    ids = [r.job.id for r in (await clocked.enqueue([spec(backoff=backoff)] * 100)).results]
    for _ in range(2):
        claimed = await clocked.claim("echo", 100)
        assert len(claimed) == 100
        await clocked.finish(
            [Outcome(job_id=c.job.id, token=c.token, status="failed", error=FLAKY) for c in claimed]
        )
        fake_clock.advance(30)  # past the first retries' 10 s +-50%
    fake_clock.advance(-30)
    delays = []
    for job_id in ids:
        job = await clocked.get(job_id)
        assert job.run_at is not None and job.attempts == 2
        delays.append(job.run_at.timestamp() - fake_clock.now)
    assert all(10 <= d < 30 for d in delays)
    assert min(delays) < 11 and max(delays) > 29  # the draws cover the whole range
    assert len({round(d, 3) for d in delays}) > 90


async def test_retry_after_replaces_the_backoff_and_permanent_dead_letters(
    clocked: Engine, fake_clock: FakeClock
) -> None:
    backoff = Backoff(delay=100, jitter=0)
    a, b = (r.job.id for r in (await clocked.enqueue([spec(backoff=backoff)] * 2)).results)
    ca, cb = await clocked.claim("echo", 2)
    permanent = JobError(kind=ErrorKind.PERMANENT, message="bad input")
    results = await clocked.finish(
        [
            Outcome(job_id=a, token=ca.token, status="retry", retry_after=3),
            Outcome(job_id=b, token=cb.token, status="failed", error=permanent),
        ]
    )
    assert [r.state for r in results] == [State.DELAYED, State.FAILED]
    run_at = (await clocked.get(a)).run_at
    assert run_at is not None and run_at.timestamp() == fake_clock.now + 3
