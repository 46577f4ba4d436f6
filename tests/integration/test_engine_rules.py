"""Engine rules beyond the basic lifecycle: cancel against a late result, recovery of reaped jobs,
queue-wide concurrency, lane filters and triggers, wake-up booking and stall visibility.

Each test runs under its own key prefix; time moves with an injected FakeClock, never by sleeping.
"""

from __future__ import annotations

import pytest

from shared.engine import Engine
from shared.models import Outcome, State
from tests.integration.test_engine import spec


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
