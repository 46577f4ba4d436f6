"""The chaos suite's job type, loaded by `jobq worker` through JOBQ_JOB_MODULES: each run records its side
effect in a ledger keyed by job id (a hash on the private Redis, written directly, outside jobq)."""

from __future__ import annotations

import asyncio
import os

import redis.asyncio as aioredis
from pydantic import BaseModel

from shared.context import JobContext
from shared.registry import job_type

LEASE_SECONDS = 2.0  # the job timeout: a killed consumer's job is reclaimable soon after

_ledger: aioredis.Redis | None = None


class Work(BaseModel):
    ms: int = 0


@job_type("chaos_ledger", payload=Work, timeout=LEASE_SECONDS, max_attempts=20)
async def chaos_ledger(payload: Work, ctx: JobContext) -> int:
    global _ledger
    if _ledger is None:
        _ledger = aioredis.from_url(os.environ["CHAOS_LEDGER_URL"])
    await asyncio.sleep(payload.ms / 1000)
    return int(await _ledger.hincrby(os.environ["CHAOS_LEDGER_KEY"], ctx.job_id, 1))
