"""Job types registered in the global registry when imported (JOBQ_JOB_MODULES) by tests of the consumer's
real entry points (Lambda handler, `jobq worker`); named `consumer_*` so they never clash with others."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pydantic import BaseModel

from shared.context import JobContext
from shared.registry import job_type


class ConsumerEcho(BaseModel):
    message: str


class ConsumerNap(BaseModel):
    seconds: float
    started_marker: str | None = None  # a file created when the handler starts: a test's sync point


@job_type("consumer_echo", payload=ConsumerEcho, timeout=10)
async def consumer_echo(payload: ConsumerEcho, ctx: JobContext) -> str:
    return payload.message


@job_type("consumer_nap", payload=ConsumerNap, timeout=20)
async def consumer_nap(payload: ConsumerNap, ctx: JobContext) -> str:
    await ctx.log("napping")
    if payload.started_marker:
        await asyncio.to_thread(Path(payload.started_marker).touch)
    await asyncio.sleep(payload.seconds)
    return "rested"
