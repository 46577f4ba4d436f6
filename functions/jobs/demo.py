"""`echo` and `sleep`: job types for demos, tests and benchmarks."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, RootModel

from shared.context import JobContext
from shared.registry import job_type

PROGRESS_STEPS = 10


class EchoPayload(RootModel[Any]):
    """Any JSON value."""


class SleepPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seconds: float = Field(ge=0, le=10, description="How long to sleep: at most 10 s (its timeout is 12 s).")


@job_type("echo", payload=EchoPayload, timeout=5)
async def echo(payload: EchoPayload, ctx: JobContext) -> Any:
    return payload.root


# Timeouts stay short: a drain claims a type only when its timeout fits the run's remaining budget
# (a pushed run has about 20 s).
@job_type("sleep", payload=SleepPayload, timeout=12)
async def sleep(payload: SleepPayload, ctx: JobContext) -> dict[str, float]:
    """Sleep in steps, reporting progress after each; stop early once cancelled."""
    step = payload.seconds / PROGRESS_STEPS
    for done in range(1, PROGRESS_STEPS + 1):
        if step > 0:
            try:
                await asyncio.wait_for(ctx.wait_cancelled(), timeout=step)
            except TimeoutError:
                pass
            else:
                break
        await ctx.progress(done * 100 // PROGRESS_STEPS)
    return {"slept": payload.seconds}
