"""The chaos suite's job type, loaded by `jobq worker` through JOBQ_JOB_MODULES: each run records its side
effect in a ledger on the private Redis, written directly, outside jobq, in one script call:

- `{key}` (hash): job id -> how many runs wrote their side effect (stale runs included);
- `{key}:writes` (list): one "job_id attempt redis_ms accepted" entry per write, on the Redis clock, the
  same clock jobq's scripts stamp `finished_at` with, so a write can be placed before or after completion;
- `{key}:fence` (hash): job id -> the attempt whose side effect stands. A write is accepted only when its
  attempt is at least the one recorded (the attempt number is the fencing token jobq hands a handler), so a
  worker resumed after its lease was reaped cannot overwrite the effect of a newer attempt.

The handler returns its attempt number, so the job's result says which claim completed it.
"""

from __future__ import annotations

import asyncio
import os

import redis.asyncio as aioredis
from pydantic import BaseModel

from shared.context import JobContext
from shared.registry import job_type

LEASE_SECONDS = 2.0  # the job timeout; a claim's lease is this plus the engine's lease margin

_WRITE = """
local t = redis.call('TIME')
local at = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local attempt = tonumber(ARGV[2])
local standing = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
local accepted = 0
if attempt >= standing then
  redis.call('HSET', KEYS[2], ARGV[1], attempt)
  accepted = 1
end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('RPUSH', KEYS[3], ARGV[1] .. ' ' .. attempt .. ' ' .. at .. ' ' .. accepted)
return accepted
"""

_ledger: aioredis.Redis | None = None


class Work(BaseModel):
    ms: int = 0


@job_type("chaos_ledger", payload=Work, timeout=LEASE_SECONDS, max_attempts=20)
async def chaos_ledger(payload: Work, ctx: JobContext) -> dict[str, int]:
    global _ledger
    if _ledger is None:
        _ledger = aioredis.from_url(os.environ["CHAOS_LEDGER_URL"])
    await asyncio.sleep(payload.ms / 1000)
    key = os.environ["CHAOS_LEDGER_KEY"]
    keys = [key, f"{key}:fence", f"{key}:writes"]
    await _ledger.eval(_WRITE, len(keys), *keys, ctx.job_id, ctx.attempt)
    return {"attempt": ctx.attempt}
