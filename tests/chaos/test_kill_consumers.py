"""SIGKILL and SIGSTOP consumer processes at random moments while jobs run, then check the books.

Short form: 500 jobs, 3 `jobq worker` processes, faults for ~10 s. JOBQ_CHAOS_LONG=1: 5,000 jobs, 4
workers, faults for ~60 s. A fault is a SIGKILL (the worker is restarted at once) or, now and then, a
SIGSTOP that lasts longer than any lease the worker can hold; a replacement starts meanwhile and the frozen
worker is resumed (SIGCONT) later, still holding jobs whose leases expired and were reaped by others.

The books:
- every accepted job ends terminal exactly once: its hash and exactly one state index agree, nothing is
  left active, and the queue's completed/failed counters equal the terminal indexes (a second completion
  of one job would count twice);
- a completed job's result is its latest attempt's (a resumed worker's stale outcome never lands) and the
  side effect that stands in the ledger is that attempt's; each attempt ran at most once, so a job ran at
  most `attempts` times;
- a side effect written after its job completed comes from an older attempt than the completing one (the
  attempt number is a usable fencing token); the ledger's fence refuses it;
- the resumed workers did hold stale jobs (the scenario happened): some of their outcomes were refused;
- recovery: once the faults stop, every job is terminal within one lease plus a bounded slack.
"""

from __future__ import annotations

import ast
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from shared.consumer import ConsumerConfig
from shared.engine import Engine
from shared.ids import split_id
from shared.keys import Keys
from shared.models import TERMINAL_STATES, Job, JobSpec, State
from tests.chaos.chaos_jobs import LEASE_SECONDS
from tests.chaos.stack import LONG, GatewayProcess, PrivateRedis, settings_env

pytestmark = [pytest.mark.chaos, pytest.mark.realredis]

JOBS = 5_000 if LONG else 500
WORKERS = 4 if LONG else 3
FAULT_SECONDS = 60.0 if LONG else 10.0
# The workers' lease margin (JOBQ_LEASE_MARGIN): a claim's lease is the job's timeout plus it. A heartbeat
# (every HEARTBEAT s) extends a lease running out to the job's remaining time plus at least the next two
# beats, so the longest a lease can outlive the fault that orphaned it is:
MARGIN = 2.0
HEARTBEAT = ConsumerConfig().heartbeat_interval
LEASE = LEASE_SECONDS + HEARTBEAT + max(MARGIN, 2 * HEARTBEAT + 1.0)
STOP_SECONDS = LEASE + 6.0  # past its leases, their reaping (next claim round) and the jobs' re-runs (< 2 s)
STOP_EVERY = 8.0 if LONG else 4.0  # seconds of faults between two SIGSTOPs (the first at once)
START_SECONDS = 60.0  # for the first workers to claim (imports take seconds on a loaded machine)
# After the last fault: the last orphaned lease runs out (LEASE), then one claim round reaps it and its job
# runs (< 2 s: a 1 s handler, a 50 ms outcome flush, the workers' idle poll of at most 0.2 s), while a
# killed worker's replacement starts (~1-2 s of imports). 10 s holds that several times over. The long form
# also drains a backlog (up to ~1,500 jobs at ~60 jobs/s) that the faults left behind.
RECOVERY_SLACK = 45.0 if LONG else 10.0
RECOVERY_BOUND = LEASE + RECOVERY_SLACK


def spec(rng: random.Random) -> JobSpec:
    work = {"ms": rng.randint(200, 1000)}  # the run outlasts the pause between faults
    return JobSpec(type="chaos_ledger", queue="chaos", payload=work, timeout=LEASE_SECONDS, max_attempts=20)


@dataclass
class WorkerProcess:
    """One `jobq worker`; its stdout (the final stats line) goes to a file, never to a pipe it could fill."""

    env: dict[str, str]
    logs: Path
    process: subprocess.Popen[bytes] = field(init=False)
    started: float = field(init=False)
    resume_at: float | None = None  # monotonic; set while SIGSTOPped
    claimed: bool = False

    def __post_init__(self) -> None:
        command = [sys.executable, "-c", "from infra.cli import app; app()", "worker", "--idle-max", "0.2"]
        command += ["--grace", "0"]
        self.stdout_path = self.logs.with_suffix(".out")
        with self.stdout_path.open("wb") as out, self.logs.with_suffix(".err").open("wb") as err:
            self.process = subprocess.Popen(command, env=self.env, stdout=out, stderr=err)
        self.started = time.monotonic()

    def working(self) -> bool:
        """It has claimed a job (its DEBUG log says so): worth a fault, unlike one still importing."""
        if not self.claimed:
            self.claimed = b'"job claimed"' in self.logs.with_suffix(".err").read_bytes()
        return self.claimed

    def stats(self) -> dict[str, int]:
        """The counts `jobq worker` prints when it stops ({} if it never got that far)."""
        for line in self.stdout_path.read_text().splitlines():
            if line.startswith("worker stopped: "):
                return dict(ast.literal_eval(line.removeprefix("worker stopped: ")))
        return {}


def index_members(client: redis.Redis, key: str) -> set[str]:
    kind = client.type(key)
    if kind == "zset":
        return set(client.zrange(key, 0, -1))
    if kind == "list":
        return set(client.lrange(key, 0, -1))
    if kind == "set":
        return set(client.smembers(key))
    return set()


@dataclass
class Write:
    attempt: int
    at_ms: int
    accepted: bool


def read_ledger(
    client: redis.Redis, key: str
) -> tuple[dict[str, int], dict[str, int], dict[str, list[Write]]]:
    runs = {str(job_id): int(n) for job_id, n in client.hgetall(key).items()}
    standing = {str(job_id): int(a) for job_id, a in client.hgetall(f"{key}:fence").items()}
    writes: dict[str, list[Write]] = {}
    for entry in client.lrange(f"{key}:writes", 0, -1):
        job_id, attempt, at_ms, accepted = str(entry).split()
        writes.setdefault(job_id, []).append(Write(int(attempt), int(at_ms), accepted == "1"))
    return runs, standing, writes


def finished_ms(job: Job) -> int:
    assert job.finished_at is not None, (job.id, "terminal without finished_at")
    return round(job.finished_at.timestamp() * 1000)


@pytest.mark.timeout(900 if LONG else 240)
async def test_killed_and_frozen_consumers_lose_nothing_and_complete_each_job_once(
    chaos_engine: Engine,
    private_gateway: GatewayProcess,
    private_redis: PrivateRedis,
    chaos_prefix: str,
    tmp_path: Path,
) -> None:
    ledger_key = f"ledger:{chaos_prefix}"
    env = {
        **os.environ,
        **settings_env(private_gateway, chaos_prefix),
        "JOBQ_JOB_MODULES": json.dumps(["tests.chaos.chaos_jobs"]),
        "CHAOS_LEDGER_URL": private_redis.url,
        "CHAOS_LEDGER_KEY": ledger_key,
        "JOBQ_LOG_LEVEL": "DEBUG",  # a "job claimed" line tells a working worker from one still starting
        "JOBQ_LEASE_MARGIN": str(MARGIN),
    }
    rng = random.Random(20261122)
    ids: list[str] = []
    for first in range(0, JOBS, 250):
        specs = [spec(rng) for _ in range(first, min(first + 250, JOBS))]
        ids += [result.job.id for result in (await chaos_engine.enqueue(specs)).results]
    assert len(set(ids)) == JOBS

    spawned = 0

    def spawn() -> WorkerProcess:
        nonlocal spawned
        spawned += 1
        return WorkerProcess(env, tmp_path / f"worker-{spawned}")

    running = [spawn() for _ in range(WORKERS)]
    frozen: list[WorkerProcess] = []
    resumed: list[WorkerProcess] = []

    def resume_due() -> None:
        for worker in [w for w in frozen if w.resume_at is not None and time.monotonic() >= w.resume_at]:
            worker.process.send_signal(signal.SIGCONT)
            worker.resume_at = None
            frozen.remove(worker)
            resumed.append(worker)

    kills = stops = 0
    try:
        started = time.monotonic() + START_SECONDS
        while not all(w.working() for w in running):  # a worker starts in 1-5 s (imports)
            assert time.monotonic() < started, "workers did not start claiming"
            await asyncio.sleep(0.1)
        began = time.monotonic()
        faults_end = began + FAULT_SECONDS
        next_stop = last_fault = began
        while time.monotonic() < faults_end:
            await asyncio.sleep(rng.uniform(0.2, 1.2))  # the workload: random moments between faults
            resume_due()
            now = time.monotonic()
            working = [i for i, w in enumerate(running) if w.working()]  # a fault on a starting one is moot
            if not working:
                continue
            victim = rng.choice(working)
            if now >= next_stop:  # freeze it past its leases; a replacement takes its place
                running[victim].process.send_signal(signal.SIGSTOP)
                running[victim].resume_at = now + STOP_SECONDS
                frozen.append(running[victim])
                stops += 1
                next_stop = now + STOP_EVERY
            else:
                running[victim].process.send_signal(signal.SIGKILL)
                running[victim].process.wait(timeout=10)
                kills += 1
            last_fault = now
            running[victim] = spawn()
        faults_stopped = last_fault
        deadline = faults_stopped + RECOVERY_BOUND
        recovered: float | None = None
        while recovered is None or frozen:  # all terminal, and every frozen worker resumed
            resume_due()
            if recovered is None:
                stats = await chaos_engine.stats("chaos")
                done = stats.counts.get(State.COMPLETED, 0) + stats.counts.get(State.FAILED, 0)
                if done >= JOBS:
                    recovered = time.monotonic() - faults_stopped
            late = f"only {done} of {JOBS} terminal {RECOVERY_BOUND:.0f} s after the last fault: {stats}"
            assert time.monotonic() < deadline, late
            await asyncio.sleep(0.25)
        # Stop everyone gracefully (nothing is left to run) so no stale write lands after the books are read.
        for worker in running + resumed:
            worker.process.send_signal(signal.SIGTERM)
        for worker in running + resumed:
            worker.process.wait(timeout=20)
    finally:
        for worker in running + frozen + resumed:
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGKILL)
                worker.process.send_signal(signal.SIGCONT)
                worker.process.wait(timeout=10)

    client = private_redis.client()
    keys = Keys(chaos_prefix)
    indexes = {key: index_members(client, key) for key in keys.queue("chaos").block()[1:7]}
    runs, standing, writes = read_ledger(client, ledger_key)
    client.close()
    totals = await chaos_engine.stats("chaos")
    reran = stale = stale_after_completion = 0
    states: dict[State, int] = {}
    for job_id in ids:
        job = await chaos_engine.get(job_id)
        assert job.state in TERMINAL_STATES, (job_id, job.state)
        states[job.state] = states.get(job.state, 0) + 1
        holding = [key for key, members in indexes.items() if split_id(job_id)[0] in members]
        assert holding == [keys.queue("chaos").state(job.state.value)], (job_id, job.state, holding)
        mine = writes.get(job_id, [])
        assert runs.get(job_id, 0) == len(mine), (job_id, "ledger count and write log disagree")
        attempts = [w.attempt for w in mine]
        assert len(set(attempts)) == len(attempts), (job_id, attempts, "one attempt ran twice")
        assert all(1 <= a <= job.attempts for a in attempts), (job_id, attempts, job.attempts)
        assert len(mine) <= job.attempts, (job_id, len(mine), job.attempts, "ran more often than claimed")
        if job.state == State.COMPLETED:
            assert job.result == {"attempt": job.attempts}, (job_id, job.result, job.attempts, "stale result")
            assert standing.get(job_id) == job.attempts, (job_id, standing.get(job_id), "stale side effect")
            for write in mine:
                if write.at_ms > finished_ms(job):  # a stale worker, resumed after the job completed
                    stale_after_completion += 1
                    assert write.attempt < job.attempts, (job_id, write, job.attempts)
                    assert not write.accepted, (job_id, write, "a stale side effect overwrote the result's")
        stale += sum(1 for w in mine if w.attempt < job.attempts)
        reran += len(mine) > 1
    active = [key for key in indexes if key.endswith(":active")]
    assert all(not indexes[key] for key in active), "jobs left active"
    completed, failed = states.get(State.COMPLETED, 0), states.get(State.FAILED, 0)
    assert (totals.completed_total, totals.failed_total) == (completed, failed), (totals, states)
    refused = sum(worker.stats().get("lost", 0) for worker in resumed)
    assert stops >= 1 and len(resumed) == stops, (stops, len(resumed))
    assert refused >= 1, "no resumed worker held a reaped job: the SIGSTOP scenario did not happen"
    assert recovered is not None and recovered <= RECOVERY_BOUND
    print(
        f"\nchaos: {JOBS} jobs, {WORKERS} workers, {kills} SIGKILLs, "
        f"{stops} SIGSTOPs of {STOP_SECONDS:.0f} s; "
        f"{reran} re-run after lease expiry, {stale} stale runs ({stale_after_completion} after their job "
        f"completed, all fenced), {refused} stale outcomes refused; recovered {recovered:.1f} s after the "
        f"last fault (bound {RECOVERY_BOUND:.0f} s = lease {LEASE:.0f} s + {RECOVERY_SLACK:.0f} s)"
    )
