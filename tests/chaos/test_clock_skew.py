"""Clock skew between consumers never lets two of them hold one job.

With the production setting (no injected clock) Redis's clock decides every lease, so the consumers' own
clocks cannot matter. With injected clocks (each engine sends its own "now"), a consumer whose clock runs
far ahead may believe a lease expired and take the job over; fencing must then refuse every later write of
the first holder, so at any moment only one lease token can change the job.
"""

from __future__ import annotations

import time

import pytest

from shared.engine import Engine
from shared.models import JobSpec, Outcome, State
from tests.chaos.stack import GatewayProcess

pytestmark = [pytest.mark.chaos, pytest.mark.realredis]


class SkewedClock:
    def __init__(self, base: float, skew: float) -> None:
        self.base, self.skew = base, skew

    def __call__(self) -> float:
        return self.base + self.skew


async def test_redis_clock_decides_so_skewed_consumers_never_share(chaos_engine: Engine) -> None:
    first, second = chaos_engine, Engine(chaos_engine.store.redis, prefix=chaos_engine.keys.prefix)
    await first.enqueue([JobSpec(type="skew", queue="skew", timeout=5)])
    held = await first.claim("skew", 10)
    assert len(held) == 1
    assert await second.claim("skew", 10) == []  # whatever the second machine's clock says


@pytest.mark.parametrize("skew", [-3600.0, -1.0, 1.0, 20.0, 3600.0])
async def test_injected_skew_gives_at_most_one_live_holder(
    private_gateway: GatewayProcess, chaos_engine: Engine, skew: float
) -> None:
    now = time.time()
    redis, prefix = chaos_engine.store.redis, chaos_engine.keys.prefix
    honest = Engine(redis, prefix=prefix, clock=SkewedClock(now, 0.0))
    skewed = Engine(redis, prefix=prefix, clock=SkewedClock(now, skew))
    job = (await honest.enqueue([JobSpec(type="skew", queue="skew", timeout=5)])).results[0].job
    first = await honest.claim("skew", 1)
    assert [c.job.id for c in first] == [job.id]
    second = await skewed.claim("skew", 1)
    lease = 5 + chaos_engine.lease_margin
    if skew < lease:  # a clock inside the lease takes nothing, and the holder keeps the job
        assert second == []
    stale = Outcome(job_id=job.id, token=first[0].token, status="completed")
    first_ok = (await honest.finish([stale]))[0].ok
    second_ok = (
        bool(second)
        and (await skewed.finish([Outcome(job_id=job.id, token=second[0].token, status="completed")]))[0].ok
    )
    assert not (first_ok and second_ok), "two consumers both finished one job"
    final = await chaos_engine.get(job.id)
    stats = await chaos_engine.stats("skew")
    if first_ok or second_ok:
        assert (final.state, stats.completed_total) == (State.COMPLETED, 1)
    else:  # the skewed clock expired the lease without taking the job: it waits for its retry, not lost
        assert skew >= lease and final.state in {State.WAITING, State.DELAYED}, final.state
    if skew < lease:
        assert first_ok
