"""Billed Redis commands of one llm job, submitted and run by a consumer, with and without a cache hit,
counted on the Redis behind the gateway (INFO commandstats, inner script calls included; exact only on a
Redis no one else uses: tests/support/billing.py). Run with `-s` to see the figures docs/ai-jobs.md quotes.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from pydantic import BaseModel

from functions.consumer.runtime import ConsumerRuntime, build_runtime
from shared.consumer import ConsumerConfig
from shared.context import JobContext
from shared.models import JobSpec
from tests.support.ai_stack import ai_registry
from tests.support.api_fixtures import gateway_settings
from tests.support.billing import measure_billed
from tests.support.fake_llm import FakeLLM


class Empty(BaseModel):
    pass


async def _noop(payload: Empty, ctx: JobContext) -> None:
    return None


async def run_one(runtime: ConsumerRuntime, spec: JobSpec) -> str:
    job_id = (await runtime.engine.enqueue([spec])).results[0].job.id
    report = await runtime.consumer.drain()
    assert report.completed == 1, (report, await runtime.engine.get(job_id))
    return job_id


def llm_spec(content: str, owner: str) -> JobSpec:
    payload = {"messages": [{"role": "user", "content": content}]}
    return JobSpec(type="llm", queue="llm", payload=payload, owner=owner, timeout=300)


@pytest.mark.parametrize("gateway", ["redis"], indirect=True)
async def test_billed_commands_of_an_llm_job_with_and_without_a_cache_hit(
    gateway: Any, unique_name: str, fake_llm: FakeLLM
) -> None:
    registry = ai_registry()
    registry.job_type("noop", payload=Empty)(_noop)
    prefix = "b" + hashlib.sha1(unique_name.encode()).hexdigest()[:20]
    settings = gateway_settings(gateway, prefix, budget_cache_seconds=0)
    runtime = build_runtime(settings, registry=registry, config=ConsumerConfig(wait_due=0))
    try:
        # Warm up: scripts loaded, queues named, policies published.
        await run_one(runtime, JobSpec(type="noop", queue="noop", owner="alice", payload={}))
        await run_one(runtime, llm_spec("warm-up", "alice"))

        figures: dict[str, int] = {}
        for name in ("plain job", "llm job, cache miss", "llm job, cache hit"):
            readings = []
            for attempt in range(3):
                if name == "plain job":
                    spec = JobSpec(type="noop", queue="noop", owner="alice", payload={})
                else:  # a miss asks something new; a hit asks again what the miss asked
                    spec = llm_spec(f"question {attempt}", "alice")
                async with measure_billed(gateway.redis_url) as billed:
                    await run_one(runtime, spec)
                assert billed.count is not None
                readings.append(billed.count)
            figures[name] = min(readings)
        print("\nbilled commands per job (submit, claim, run, finish):", figures)
        assert fake_llm.count == 1 + 3  # the warm-up and the three misses; the hits asked nobody
        # A hit adds one GET to a plain job; a miss adds the GET, the budget HGET, the cache SET and the
        # usage hash's HMGET and HSET in the finish call (its PEXPIRE only on the owner's first of the day).
        assert figures["llm job, cache hit"] == figures["plain job"] + 1
        assert figures["llm job, cache miss"] == figures["llm job, cache hit"] + 4
        # The handlers' facilities count what they sent: GET + SET per miss (the warm-up and three), GET
        # per hit; a budget HGET per provider call (nothing cached: budget_cache_seconds=0, no budget set).
        assert runtime.consumer.cache.commands == 4 * 2 + 3
        assert runtime.consumer.usage.commands == 4
        # 100 jobs submitted in one call and run together: what a job costs when calls are shared.
        batch: dict[str, float] = {}
        for name, prefix_ in (("plain", None), ("llm miss", "batch"), ("llm hit", "batch")):
            if prefix_ is None:
                specs = [JobSpec(type="noop", queue="noop", owner="alice", payload={}) for _ in range(100)]
            else:
                specs = [llm_spec(f"{prefix_} {i}", "alice") for i in range(100)]
            async with measure_billed(gateway.redis_url) as billed:
                await runtime.engine.enqueue(specs)
                while (await runtime.consumer.drain()).completed:
                    pass
            assert billed.count is not None
            batch[name] = billed.count / 100
        print("billed commands per job, 100 submitted in one call:", batch)
        assert batch["llm hit"] < batch["llm miss"]
    finally:
        await runtime.redis.close()
