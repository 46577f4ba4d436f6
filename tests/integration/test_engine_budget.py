"""Command budget of the engine: round trips (the gateway's counter) and billed commands (Redis's own
INFO commandstats, inner script calls included, on the real-Redis backend).

Scripts are warmed first: the very first call of a script on a fresh server costs one more round trip
(EVALSHA answers NOSCRIPT, then EVAL loads it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from shared.engine import Engine
from shared.models import JobSpec, Outcome, QueueOptions
from tests.support.billing import measure_billed

PAYLOAD = {"data": "x" * 188}  # about 200 bytes of JSON


def specs(n: int) -> list[JobSpec]:
    return [JobSpec(type="echo", payload=PAYLOAD, owner="alice") for _ in range(n)]


async def round_trips(gateway: Any, call: Callable[[], Awaitable[Any]]) -> int:
    gateway.reset_commands()
    await call()
    return int(gateway.command_count())


async def warm(engine: Engine) -> None:
    """Load every script the budget tests use into the server's script cache, and publish the policies of
    the queues they use (an engine's first call on a queue writes its policy first: one more round trip
    per queue and process)."""
    await engine.enqueue(specs(1))
    await engine.publish_policies(["empty"])
    await engine.claim(
        "empty", 1
    )  # on a cluster "empty" may live on another master, with its own script cache
    claimed = await engine.claim("echo", 10)
    await engine.finish([Outcome(job_id=c.job.id, token=c.token, status="completed") for c in claimed])
    await engine.stats("echo")
    await engine.due()


async def test_round_trips_per_operation(engine: Engine, gateway: Any) -> None:
    await warm(engine)
    assert await round_trips(gateway, lambda: engine.enqueue(specs(1))) == 1
    assert await round_trips(gateway, lambda: engine.enqueue(specs(500))) == 1
    claimed: list[Any] = []

    async def claim() -> None:
        claimed.extend(await engine.claim("echo", 100))

    assert await round_trips(gateway, claim) == 1
    assert len(claimed) == 100
    outcomes = [Outcome(job_id=c.job.id, token=c.token, status="completed") for c in claimed]
    assert await round_trips(gateway, lambda: engine.finish(outcomes)) == 1
    assert await round_trips(gateway, lambda: engine.get(claimed[0].job.id)) == 1
    assert await round_trips(gateway, lambda: engine.stats("echo")) == 1
    # One MGET of the due keys (the list of queues read once by warm); on a cluster one GET per queue.
    assert await round_trips(gateway, engine.due) == 1
    assert await round_trips(gateway, lambda: engine.claim("empty", 100)) == 1


async def test_lifecycle_round_trips_per_job_at_batch_100(engine: Engine, gateway: Any) -> None:
    await warm(engine)
    gateway.reset_commands()
    for _ in range(3):
        await engine.enqueue(specs(100))
        claimed = await engine.claim("echo", 100)
        await engine.finish([Outcome(job_id=c.job.id, token=c.token, status="completed") for c in claimed])
    assert gateway.command_count() / 300 <= 1.05


async def billed(redis_url: str, call: Callable[[], Awaitable[Any]], tries: int = 3) -> int:
    """Billed commands of `call`: the fewest over a few tries, since INFO commandstats is server-wide and
    another client of the same Redis can only add to a reading, never take away."""
    readings = []
    for _ in range(tries):
        async with measure_billed(redis_url) as measured:
            await call()
        assert measured.count is not None
        readings.append(measured.count)
    return min(readings)


# Billed commands are read from a real Redis server's INFO commandstats: real backend only.
@pytest.mark.parametrize("gateway", ["redis"], indirect=True)
async def test_billed_commands_per_job_and_idle_due(engine: Engine, gateway: Any) -> None:
    await warm(engine)

    async def lifecycle() -> None:
        await engine.enqueue(specs(100))
        claimed = await engine.claim("echo", 100)
        assert len(claimed) == 100
        await engine.finish([Outcome(job_id=c.job.id, token=c.token, status="completed") for c in claimed])

    per_job = await billed(gateway.redis_url, lifecycle) / 100
    assert per_job <= 0.3, f"{per_job} billed commands per job"
    assert await billed(gateway.redis_url, engine.due) == 1
    assert await billed(gateway.redis_url, lambda: engine.claim("empty", 100)) == 3  # EVALSHA, TIME, HMGET


async def billed_steps(engine: Engine, redis_url: str, tries: int = 5, **claim: Any) -> dict[str, int]:
    """Billed commands of enqueue, claim and finish of 100 jobs: the fewest of a few lifecycles."""
    readings: dict[str, list[int]] = {"enqueue": [], "claim": [], "finish": []}
    for _ in range(tries):
        claimed: list[Any] = []
        async with measure_billed(redis_url) as enqueue:
            await engine.enqueue(specs(100))
        async with measure_billed(redis_url) as claiming:
            claimed = await engine.claim("echo", 100, **claim)
        assert len(claimed) == 100
        outcomes = [Outcome(job_id=c.job.id, token=c.token, status="completed") for c in claimed]
        async with measure_billed(redis_url) as finish:
            await engine.finish(outcomes)
        for step, measured in (("enqueue", enqueue), ("claim", claiming), ("finish", finish)):
            assert measured.count is not None
            readings[step].append(measured.count)
    return {step: min(counts) for step, counts in readings.items()}


# The figures of docs/redis-schema.md ("Commands per job"), exact: a change must be deliberate.
@pytest.mark.parametrize("gateway", ["redis"], indirect=True)
async def test_billed_commands_per_step_are_pinned(engine: Engine, gateway: Any) -> None:
    await warm(engine)
    # The enqueue finds the queue still due (its last claim took exactly what it asked for, so it could not
    # tell waiting ran out): no due write. From an idle queue it is 8 (docs/redis-schema.md's table).
    assert await billed_steps(engine, gateway.redis_url) == {"enqueue": 7, "claim": 10, "finish": 11}
    # A lane filter that skips nothing costs nothing more (no re-ZADD).
    filtered = await billed_steps(engine, gateway.redis_url, max_timeout=300, lane="long")
    assert filtered["claim"] == 10


@pytest.mark.parametrize("gateway", ["redis"], indirect=True)
async def test_a_concurrency_limit_costs_one_read(engine_factory: Any, gateway: Any) -> None:
    engine = engine_factory(queue_options=lambda q: QueueOptions(concurrency=1000))
    await warm(engine)
    steps = await billed_steps(engine, gateway.redis_url)
    assert (steps["enqueue"], steps["claim"]) == (9, 11)  # ZCARD of the active set in each
