"""jobq's side of the comparison: the same workload through the REST gateway, in this process.

Chain: engine/consumer -> upstash-redis SDK -> HTTP -> `jobq gateway` -> counting proxy -> private Redis.
The proxy sees exactly what the gateway forwards, so its count (PING, MULTI and EXEC left out: Upstash
bills neither the health check nor the transaction wrapper, only its entries) is the bill. INFO
commandstats on the same server gives the server-side figure, Lua's inner calls included.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import redis
from pydantic import BaseModel, SecretStr

from bench.compare import free_port, process_rate, server_commands, used_memory
from bench.proxy import ProxyProcess
from functions.consumer.runtime import ConsumerRuntime, build_runtime
from shared.consumer import ConsumerConfig
from shared.consumer.worker import Worker
from shared.context import JobContext
from shared.models import JobSpec
from shared.registry import Registry
from shared.runner import run as run_loop
from shared.settings import Settings

TYPE = "bench_noop"
BATCH = 100
CONCURRENCY = 10
PROCESS_PASSES = 3  # processing is timed this many times; the median pass is the figure


class NoopPayload(BaseModel):
    body: str
    n: int


class Starts:
    """Handler start times by payload number, and a count of handler calls."""

    def __init__(self) -> None:
        self.at: dict[int, float] = {}
        self.calls = 0
        self.expected = 0
        self.all_started = asyncio.Event()

    def expect(self, n: int) -> None:
        self.at.clear()
        self.calls, self.expected = 0, n
        self.all_started.clear()


def registry_for(starts: Starts) -> Registry:
    registry = Registry()

    @registry.job_type(TYPE, payload=NoopPayload, timeout=30, concurrency=CONCURRENCY)
    async def noop(payload: NoopPayload, ctx: JobContext) -> None:
        starts.at[payload.n] = time.perf_counter()
        starts.calls += 1
        if starts.calls >= starts.expected:
            starts.all_started.set()

    return registry


def spec(i: int) -> JobSpec:
    return JobSpec(type=TYPE, payload={"body": "x" * 170, "n": i})


@contextlib.contextmanager
def gateway(upstream_port: int) -> Iterator[tuple[str, str]]:
    port, token = free_port(), secrets.token_hex(16)
    # JOBQ_BENCH_GATEWAY: another gateway command (e.g. a real Upstash-compatible proxy) to compare with
    jobq = os.environ.get("JOBQ_BENCH_GATEWAY", str(Path(sys.executable).with_name("jobq"))).split()
    command = [*jobq, "gateway", "--port", str(port), "--token", token]
    command += ["--redis-url", f"redis://127.0.0.1:{upstream_port}/0"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.HTTPError):
                auth = {"Authorization": f"Bearer {token}"}
                if httpx.post(url, json=["PING"], headers=auth, timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("jobq gateway did not start")
            time.sleep(0.05)
        yield url, token
    finally:
        process.terminate()
        process.wait(timeout=10)


class Meter:
    """Billed commands (at the proxy behind the gateway), server commands and memory, per phase."""

    def __init__(self, proxy: ProxyProcess, direct: redis.Redis) -> None:
        self.proxy, self.direct = proxy, direct

    def billed(self) -> int:
        return self.proxy.billed()

    def snapshot(self) -> tuple[int, int, int]:
        return self.billed(), server_commands(self.direct), used_memory(self.direct)


def runtime(url: str, token: str, registry: Registry) -> ConsumerRuntime:
    settings = Settings(
        JOBQ_REDIS_REST_URL=url,  # read by alias only
        JOBQ_REDIS_REST_TOKEN=SecretStr(token),
        key_prefix="bench",
    )
    config = ConsumerConfig(batch_size=BATCH, concurrency=CONCURRENCY)
    return build_runtime(settings, registry=registry, config=config)


def percentiles(samples: list[float]) -> list[float]:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return [cuts[49] * 1000, cuts[98] * 1000]


async def workload(url: str, token: str, meter: Meter, jobs: int, idle: float) -> dict[str, Any]:
    starts = Starts()
    registry = registry_for(starts)
    figures: dict[str, Any] = {}
    marks: dict[str, tuple[int, int, int]] = {}

    rt = runtime(url, token, registry)
    marks["start"] = meter.snapshot()
    clock = time.perf_counter()
    for i in range(jobs):
        await rt.engine.enqueue([spec(i)])
    figures["enqueue_single_s"] = time.perf_counter() - clock
    marks["enqueued_single"] = meter.snapshot()
    starts.expect(jobs)
    clock = time.perf_counter()
    while starts.calls < jobs:
        await rt.consumer.drain()
    figures["process_s"] = time.perf_counter() - clock
    marks["processed"] = meter.snapshot()
    # More processing passes (jobs enqueued in batches, not counted in the cost figures): the rate is
    # the median pass, as for bullmq-py, because this machine's speed moves between passes.
    runs = [figures["process_s"]]
    for _ in range(PROCESS_PASSES - 1):
        for first in range(0, jobs, BATCH):
            await rt.engine.enqueue([spec(i) for i in range(first, min(first + BATCH, jobs))])
        starts.expect(jobs)
        clock = time.perf_counter()
        while starts.calls < jobs:
            await rt.consumer.drain()
        runs.append(time.perf_counter() - clock)
    figures["process_runs_s"] = runs
    await rt.redis.close()

    meter.direct.flushall()
    rt = runtime(url, token, registry)
    marks["reset_e2e"] = meter.snapshot()
    starts.expect(jobs)
    worker = Worker(rt.consumer, idle_min=0.05, idle_max=0.2)
    running = asyncio.ensure_future(worker.run())
    clock = time.perf_counter()
    for first in range(0, jobs, BATCH):
        await rt.engine.enqueue([spec(i) for i in range(first, min(first + BATCH, jobs))])
    figures["enqueue_bulk_s"] = time.perf_counter() - clock
    await asyncio.wait_for(starts.all_started.wait(), 600)
    worker.stop()  # graceful: every started job finishes before run() returns
    stats = await running
    figures["e2e_s"] = time.perf_counter() - clock
    figures["e2e_completed"] = stats.completed
    marks["e2e_done"] = meter.snapshot()
    await rt.redis.close()

    meter.direct.flushall()
    rt = runtime(url, token, registry)
    figures["latency_push_ms"] = await push_latency(rt, starts, samples=max(20, min(200, jobs // 50)))
    figures["latency_tick_ms"], figures["tick_s"] = await tick_latency(rt, starts, samples=20)
    await rt.redis.close()

    meter.direct.flushall()
    rt = runtime(url, token, registry)
    worker = Worker(rt.consumer)  # `jobq worker` defaults: adaptive idle backoff 0.5 s .. 30 s
    running = asyncio.ensure_future(worker.run())
    await asyncio.sleep(1)
    marks["idle_start"] = meter.snapshot()
    await asyncio.sleep(idle)
    marks["idle_end"] = meter.snapshot()
    worker.stop()
    await running
    await rt.redis.close()
    return {"figures": figures, "marks": marks}


async def push_latency(rt: ConsumerRuntime, starts: Starts, samples: int) -> list[float]:
    """Submit, then run the consumer at once (what the local push trigger does): submit-to-start."""
    waits = []
    for i in range(samples):
        starts.expect(1)
        clock = time.perf_counter()
        await rt.engine.enqueue([spec(i)])
        await rt.consumer.drain()
        waits.append(starts.at[i] - clock)
    return percentiles(waits)


async def tick_latency(rt: ConsumerRuntime, starts: Starts, samples: int) -> tuple[list[float], float]:
    """No push: a drain every `tick` seconds, submits at random moments in between."""
    tick = 1.0
    rng = random.Random(7)
    submitted: dict[int, float] = {}
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            await rt.consumer.drain()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), tick)

    starts.expect(samples)
    task = asyncio.ensure_future(ticker())
    for i in range(samples):
        await asyncio.sleep(rng.uniform(0, tick))
        submitted[i] = time.perf_counter()
        await rt.engine.enqueue([spec(i)])
    await asyncio.wait_for(starts.all_started.wait(), 30)
    stop.set()
    await task
    return percentiles([starts.at[i] - submitted[i] for i in range(samples)]), tick


def run(redis_port: int, jobs: int, idle: float) -> dict[str, Any]:
    direct = redis.Redis(port=redis_port)
    direct.flushall()
    with ProxyProcess(redis_port) as proxy, gateway(proxy.port) as (url, token):
        # The event loop `jobq worker` runs on (uvloop when installed), since the phases stand for it.
        result = run_loop(workload(url, token, Meter(proxy, direct), jobs, idle))
    direct.flushall()
    direct.close()
    f, m = result["figures"], result["marks"]

    def delta(first: str, last: str, unit: int) -> int:
        return m[last][unit] - m[first][unit]

    notes = []
    if os.environ.get("JOBQ_BENCH_GATEWAY"):
        notes.append(
            f"jobq ran through {os.environ['JOBQ_BENCH_GATEWAY']!r} (JOBQ_BENCH_GATEWAY), not `jobq gateway`"
            " (commands counted behind it are the same; HTTP overhead and throughput are that gateway's)"
        )
    if f["e2e_completed"] != jobs:
        notes.append(f"jobq end-to-end run completed {f['e2e_completed']} of {jobs} jobs")
    notes.append(
        f"jobq submit-to-start with the scheduled tick only was measured with a {f['tick_s']:g} s tick; "
        "with the one-minute cron of a deployment expect p50 about 30 s and p99 about 60 s"
    )
    notes.append(
        "jobq idle is `jobq worker`'s adaptive poll (0.5 s doubling to 30 s, one command per poll); "
        "a deployment on the scheduled tick costs one command per tick (43,200 per month at one a minute)"
    )
    return {
        "queue": "jobq",
        "transport": "HTTP (REST gateway)",
        "enqueue_single_per_s": jobs / f["enqueue_single_s"],
        "enqueue_bulk_per_s": jobs / f["enqueue_bulk_s"],
        "process_per_s": process_rate(f, jobs),
        "process_runs_s": f["process_runs_s"],
        "e2e_s": f["e2e_s"],
        "commands_per_job_single": delta("start", "processed", 0) / jobs,
        "commands_per_job_bulk": delta("reset_e2e", "e2e_done", 0) / jobs,
        "server_commands_per_job_single": delta("start", "processed", 1) / jobs,
        "server_commands_per_job_bulk": delta("reset_e2e", "e2e_done", 1) / jobs,
        "idle_commands_per_min": delta("idle_start", "idle_end", 0) * 60 / idle,
        "server_idle_commands_per_min": delta("idle_start", "idle_end", 1) * 60 / idle,
        "bytes_per_waiting_job": delta("start", "enqueued_single", 2) / jobs,
        "bytes_per_completed_job": delta("start", "processed", 2) / jobs,
        "latency_push_ms": f["latency_push_ms"],
        "latency_tick_ms": f["latency_tick_ms"],
        "notes": notes,
    }
