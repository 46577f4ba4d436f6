"""Job types with durable steps for tests/integration/test_steps.py, and a consumer process to SIGKILL.

Every step's function appends a line `<step> <pid>` to a ledger file named in the payload, so a test can
tell how often each step really ran and in which process. `python -m tests.integration.steps_jobs
<settings JSON>` runs one consumer drain on those settings (the job blocks after its second step when
`block` is set in its payload and STEPS_BLOCK=1 is in the environment: the process to kill).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr

from functions.consumer.runtime import build_runtime
from shared.consumer import ConsumerConfig
from shared.context import JobContext
from shared.models import Backoff, QueueOptions
from shared.registry import Registry
from shared.settings import Settings

PIPELINE_TIMEOUT = 2.0  # s: with a lease margin of 1 s, a killed consumer's lease ends 3 s after its claim


class Pipeline(BaseModel):
    ledger: str
    block: bool = False  # stop after the second step (when STEPS_BLOCK=1)
    fail_first: bool = False  # the first attempt fails after the second step
    sleep: float = 0.0  # ctx.sleep between the second and third step
    big: int = 0  # bytes of the second step's result


def ran(ledger: str, step: str) -> str:
    with Path(ledger).open("a") as out:
        out.write(f"{step} {os.getpid()}\n")
    return f"{step} done"


async def ran_async(ledger: str, step: str) -> str:
    await asyncio.sleep(0)
    return ran(ledger, step)


def ledger_lines(ledger: Path) -> list[str]:
    """The steps that ran, in order (without the process ids)."""
    if not ledger.exists():
        return []
    return [line.split()[0] for line in ledger.read_text().splitlines()]


def build_registry() -> Registry:
    registry = Registry()
    fixed = Backoff(kind="fixed", delay=0.05, jitter=0)

    @registry.job_type("pipeline", payload=Pipeline, timeout=PIPELINE_TIMEOUT, max_attempts=5, backoff=fixed)
    async def pipeline(payload: Pipeline, ctx: JobContext) -> list[Any]:
        generated = await ctx.step("generate", ran, payload.ledger, "generate")
        tested = await ctx.step("test", ran_async, payload.ledger, "test")
        if payload.big:
            await ctx.step("big", lambda: "x" * payload.big)
        if payload.block and os.environ.get("STEPS_BLOCK") == "1":
            ran(payload.ledger, "blocked")
            await asyncio.Event().wait()  # until the test kills this process
        if payload.fail_first and ctx.attempt == 1:
            raise ConnectionError("the first attempt fails after two steps")
        if payload.sleep:
            await ctx.sleep(payload.sleep)
        opened = await ctx.step("pull_request", ran, payload.ledger, "pull_request")
        return [generated, tested, opened]

    # One at a time, in this process and across every consumer: a sleeping job must free its slot.
    @registry.job_type(
        "one_at_a_time",
        payload=Pipeline,
        queue="single",
        concurrency=1,
        timeout=PIPELINE_TIMEOUT,
        options=QueueOptions(concurrency=1),
    )
    async def one_at_a_time(payload: Pipeline, ctx: JobContext) -> str:
        await ctx.step("before", ran, payload.ledger, f"before-{ctx.job_id}")
        if payload.sleep:
            await ctx.sleep(payload.sleep)
        return ran(payload.ledger, f"after-{ctx.job_id}")

    return registry


async def main(values: dict[str, Any]) -> None:
    values["JOBQ_REDIS_REST_TOKEN"] = SecretStr(values["JOBQ_REDIS_REST_TOKEN"])
    runtime = build_runtime(Settings(**values), registry=build_registry(), config=ConsumerConfig())
    try:
        await runtime.consumer.drain(60)
    finally:
        await runtime.redis.close()


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
