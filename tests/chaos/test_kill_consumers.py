"""SIGKILL consumer processes at random moments while jobs run, restart them, then check the books.

Short form: 500 jobs, 3 `jobq worker` processes, kills for ~10 s. JOBQ_CHAOS_LONG=1: 5,000 jobs, 4
workers, kills for ~60 s. Every accepted job must end terminal exactly once (its hash and exactly one state
index agree), every job's side effect is in the ledger at least once, a job ran more than once only if a
lease of it expired (so its attempt count rose), and no job is left active.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import redis

from shared.engine import Engine
from shared.keys import Keys
from shared.models import TERMINAL_STATES, JobSpec, State
from tests.chaos.chaos_jobs import LEASE_SECONDS
from tests.chaos.stack import LONG, GatewayProcess, PrivateRedis, settings_env

pytestmark = [pytest.mark.chaos, pytest.mark.realredis]

JOBS = 5_000 if LONG else 500
WORKERS = 4 if LONG else 3
KILL_SECONDS = 60.0 if LONG else 10.0
SETTLE_SECONDS = 240.0 if LONG else 60.0


def spec(rng: random.Random) -> JobSpec:
    work = {"ms": rng.randint(200, 1000)}  # the run outlasts the kill window
    return JobSpec(type="chaos_ledger", queue="chaos", payload=work, timeout=LEASE_SECONDS, max_attempts=20)


def spawn(env: dict[str, str]) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-c", "from infra.cli import app; app()", "worker", "--idle-max", "0.2"]
    command += ["--grace", "0"]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def index_members(client: redis.Redis, key: str) -> set[str]:
    kind = client.type(key)
    if kind == "zset":
        return set(client.zrange(key, 0, -1))
    if kind == "list":
        return set(client.lrange(key, 0, -1))
    if kind == "set":
        return set(client.smembers(key))
    return set()


async def test_sigkilled_consumers_lose_nothing_and_duplicate_only_expired_leases(
    chaos_engine: Engine, private_gateway: GatewayProcess, private_redis: PrivateRedis, chaos_prefix: str
) -> None:
    ledger_key = f"ledger:{chaos_prefix}"
    env = {
        **os.environ,
        **settings_env(private_gateway, chaos_prefix),
        "JOBQ_JOB_MODULES": json.dumps(["tests.chaos.chaos_jobs"]),
        "CHAOS_LEDGER_URL": private_redis.url,
        "CHAOS_LEDGER_KEY": ledger_key,
    }
    rng = random.Random(20261122)
    ids: list[str] = []
    for first in range(0, JOBS, 250):
        specs = [spec(rng) for _ in range(first, min(first + 250, JOBS))]
        ids += [result.job.id for result in (await chaos_engine.enqueue(specs)).results]
    assert len(set(ids)) == JOBS

    workers = [spawn(env) for _ in range(WORKERS)]
    kills = 0
    try:
        stop_killing = time.monotonic() + KILL_SECONDS
        while time.monotonic() < stop_killing:
            await asyncio.sleep(rng.uniform(0.2, 1.2))
            victim = rng.randrange(len(workers))
            workers[victim].send_signal(signal.SIGKILL)
            workers[victim].wait(timeout=10)
            kills += 1
            workers[victim] = spawn(env)
        deadline = time.monotonic() + SETTLE_SECONDS
        while True:
            stats = await chaos_engine.stats("chaos")
            done = stats.counts.get(State.COMPLETED, 0) + stats.counts.get(State.FAILED, 0)
            if done >= JOBS:
                break
            assert time.monotonic() < deadline, f"only {done} of {JOBS} terminal: {stats}"
            await asyncio.sleep(0.25)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=10)

    client = private_redis.client()
    keys = Keys(chaos_prefix)
    indexes = {key: index_members(client, key) for key in keys.queue_states("chaos")}
    ledger = {job_id: int(n) for job_id, n in client.hgetall(ledger_key).items()}
    client.close()
    duplicates = 0
    for job_id in ids:
        job = await chaos_engine.get(job_id)
        assert job.state in TERMINAL_STATES, (job_id, job.state)
        holding = [key for key, members in indexes.items() if job_id in members]
        assert holding == [keys.queue_state("chaos", job.state.value)], (job_id, job.state, holding)
        runs = ledger.get(job_id, 0)
        if job.state == State.COMPLETED:
            assert runs >= 1, (job_id, "completed without its side effect")
        assert runs <= job.attempts, (job_id, runs, job.attempts, "ran more often than it was claimed")
        duplicates += runs > 1
    active = [key for key in indexes if key.endswith(":active")]
    assert all(not indexes[key] for key in active), "jobs left active"
    print(
        f"\nchaos: {JOBS} jobs, {WORKERS} workers, {kills} SIGKILLs, {duplicates} re-run after lease expiry"
    )
