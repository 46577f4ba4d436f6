"""Fixtures for the consumer tests.

- `probe`: what the test job types report back (calls, starts, running peaks) and gates they wait on.
- `consumer_registry`: a fresh Registry of test-only job types wired to `probe` (never the built-in types).
- `consumer_settings`: settings on the REST gateway under a key prefix unique to the test.
- `make_runtime`: `make_runtime(**config)` -> a ConsumerRuntime (engine + consumer) on those settings.
- `submit`: `await submit("type", payload, n=1, **spec)` -> the job ids, enqueued in one engine call.
- `wait_for`: poll an async predicate until true or a deadline (no fixed sleeps as synchronisation).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import BaseModel

from functions.consumer.runtime import ConsumerRuntime, build_runtime
from shared.consumer import ConsumerConfig
from shared.context import JobContext
from shared.engine import Engine
from shared.errors import PermanentJobError, RetryJobError
from shared.models import Backoff, JobSpec, Lease, Outcome, ProgressUpdate, QueueOptions
from shared.registry import Registry
from shared.settings import Settings
from tests.support.api_fixtures import gateway_settings

FAST_BACKOFF = Backoff(kind="fixed", delay=0.05, jitter=0)


@dataclass
class Probe:
    calls: Counter[str] = field(default_factory=Counter)  # job id -> handler calls
    order: list[str] = field(default_factory=list)  # queue of each handler start, in start order
    started: asyncio.Event = field(default_factory=asyncio.Event)
    gate: asyncio.Event = field(default_factory=asyncio.Event)  # `wait`/`progress` handlers block on it
    running: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    peak: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))


class Empty(BaseModel):
    pass


class Value(BaseModel):
    value: Any = None
    fail_times: int = 0  # flaky: fail this many attempts first
    after: float = 0.0  # retry_after: the delay asked for
    seconds: float = 0.0


def build_registry(probe: Probe) -> Registry:
    """Test types, with short timeouts: a drain claims only what fits in its budget (timeout + 2 s)."""
    registry = Registry()
    reg = registry.job_type

    def track(ctx: JobContext, queue: str) -> None:
        probe.calls[ctx.job_id] += 1
        probe.order.append(queue)
        probe.started.set()

    @reg("noop", payload=Empty, concurrency=200, timeout=5)
    async def noop(payload: Empty, ctx: JobContext) -> None:
        return None

    @reg("echo", payload=Value, backoff=FAST_BACKOFF, timeout=5)
    async def echo(payload: Value, ctx: JobContext) -> Any:
        track(ctx, "echo")
        return payload.value

    @reg("flaky", payload=Value, max_attempts=3, backoff=FAST_BACKOFF, timeout=5)
    async def flaky(payload: Value, ctx: JobContext) -> Any:
        track(ctx, "flaky")
        if ctx.attempt <= payload.fail_times:
            raise ConnectionError(f"attempt {ctx.attempt} failed")
        return {"attempt": ctx.attempt}

    @reg("permanent", payload=Value, max_attempts=5, backoff=FAST_BACKOFF, timeout=5)
    async def permanent(payload: Value, ctx: JobContext) -> None:
        track(ctx, "permanent")
        raise PermanentJobError("this input can never work")

    @reg("later", payload=Value, max_attempts=3, backoff=FAST_BACKOFF, timeout=5)
    async def later(payload: Value, ctx: JobContext) -> Any:
        track(ctx, "later")
        if ctx.attempt == 1:
            raise RetryJobError("upstream busy", after=payload.after)
        return "second time lucky"

    @reg("slow", payload=Value, timeout=0.3, max_attempts=1)
    async def slow(payload: Value, ctx: JobContext) -> None:
        track(ctx, "slow")
        await asyncio.sleep(payload.seconds)

    @reg("wait", payload=Value, queue="gated", concurrency=1, timeout=8)
    async def wait(payload: Value, ctx: JobContext) -> str:
        track(ctx, "wait")
        await probe.gate.wait()
        return "released"

    @reg("gated_other", payload=Value, queue="gated", concurrency=2, timeout=8)
    async def gated_other(payload: Value, ctx: JobContext) -> None:
        track(ctx, "gated_other")

    @reg("stubborn", payload=Value, concurrency=5, timeout=8, max_attempts=3)
    async def stubborn(payload: Value, ctx: JobContext) -> None:
        track(ctx, "stubborn")
        await asyncio.sleep(60)  # ignores the shutdown: interrupted after the grace

    @reg("progress", payload=Value, timeout=8)
    async def progress(payload: Value, ctx: JobContext) -> str:
        track(ctx, "progress")
        await ctx.progress(50)
        await ctx.log("halfway there")
        gate = asyncio.create_task(probe.gate.wait())
        cancelled = asyncio.create_task(ctx.wait_cancelled())
        await asyncio.wait([gate, cancelled], return_when=asyncio.FIRST_COMPLETED)
        gate.cancel()
        cancelled.cancel()
        if ctx.cancelled:
            return "stopped early"
        await ctx.progress(100)
        return "done"

    @reg("limited", payload=Value, concurrency=2, timeout=5)
    async def limited(payload: Value, ctx: JobContext) -> None:
        track(ctx, "limited")
        probe.running["limited"] += 1
        probe.peak["limited"] = max(probe.peak["limited"], probe.running["limited"])
        await asyncio.sleep(0.05)
        probe.running["limited"] -= 1

    @reg("rated", payload=Value, timeout=5, options=QueueOptions(rate_limit=(2, 60.0)))
    async def rated(payload: Value, ctx: JobContext) -> None:
        track(ctx, "rated")

    for queue in ("busy", "quiet"):

        async def fair(payload: Value, ctx: JobContext, queue: str = queue) -> None:
            track(ctx, queue)

        reg(queue, payload=Value, concurrency=10, timeout=5)(fair)

    @reg("holder", payload=Value, concurrency=4, timeout=8)
    async def holder(payload: Value, ctx: JobContext) -> str:
        track(ctx, "holder")
        await probe.gate.wait()  # a slow job: runs until the test opens the gate
        return "held"

    @reg("deaf", payload=Value, timeout=8)
    async def deaf(payload: Value, ctx: JobContext) -> str:
        track(ctx, "deaf")
        await probe.gate.wait()  # never looks at ctx.cancelled
        return "finished anyway"

    @reg("nan", payload=Value, timeout=5, max_attempts=3)
    async def nan(payload: Value, ctx: JobContext) -> float:
        track(ctx, "nan")
        return float("nan")

    @reg("blocking", payload=Value, timeout=0.3, max_attempts=1)
    def blocking(payload: Value, ctx: JobContext) -> str:
        track_sync(ctx, "blocking")
        ctx.log("in a worker thread")
        time.sleep(payload.seconds)  # the job's own blocking work, in a worker thread
        return "slept"

    @reg("bounded", payload=Value, concurrency=5, timeout=8, options=QueueOptions(concurrency=2))
    async def bounded(payload: Value, ctx: JobContext) -> None:
        track(ctx, "bounded")
        await asyncio.sleep(payload.seconds)

    @reg(
        "retry1s", payload=Value, timeout=5, max_attempts=2, backoff=Backoff(kind="fixed", delay=1, jitter=0)
    )
    async def retry1s(payload: Value, ctx: JobContext) -> int:
        track(ctx, "retry1s")
        if ctx.attempt == 1:
            raise ConnectionError("first attempt fails")
        return ctx.attempt

    def track_sync(ctx: JobContext, queue: str) -> None:
        probe.calls[ctx.job_id] += 1
        probe.order.append(queue)

    # Queue "napq" can hold two jobs at once but "nap" runs one at a time.
    @reg("nap", payload=Value, queue="napq", concurrency=1, timeout=1)
    async def nap(payload: Value, ctx: JobContext) -> None:
        track(ctx, "nap")
        await asyncio.sleep(payload.seconds)

    @reg("nap_other", payload=Value, queue="napq", concurrency=1, timeout=1)
    async def nap_other(payload: Value, ctx: JobContext) -> None:
        track(ctx, "nap_other")

    @reg("self_cancel", payload=Value, timeout=5, max_attempts=1)
    async def self_cancel(payload: Value, ctx: JobContext) -> None:
        track(ctx, "self_cancel")
        raise asyncio.CancelledError  # e.g. a library that leaks a cancellation of its own task

    @reg("long", payload=Value, timeout=5)
    async def long(payload: Value, ctx: JobContext) -> None:
        track(ctx, "long")

    return registry


@pytest.fixture
def probe() -> Probe:
    return Probe()


@pytest.fixture
def consumer_registry(probe: Probe) -> Registry:
    return build_registry(probe)


def prefix_for(name: str) -> str:
    return "c" + hashlib.sha1(name.encode()).hexdigest()[:20]


@pytest.fixture
def consumer_settings(gateway: Any, unique_name: str) -> Settings:
    return gateway_settings(gateway, prefix_for(unique_name))


MakeRuntime = Callable[..., ConsumerRuntime]


@pytest.fixture
async def make_runtime(
    consumer_settings: Settings, consumer_registry: Registry
) -> AsyncIterator[MakeRuntime]:
    made: list[ConsumerRuntime] = []

    def make(*, heartbeat: float = 0.1, grace: float = 5.0, **config: Any) -> ConsumerRuntime:
        settings = ConsumerConfig(heartbeat_interval=heartbeat, grace=grace, **config)
        runtime = build_runtime(consumer_settings, registry=consumer_registry, config=settings)
        made.append(runtime)
        return runtime

    yield make
    for runtime in made:
        await runtime.redis.close()


Submit = Callable[..., Awaitable[list[str]]]


def spec_for(registry: Registry, type_name: str, payload: Any, **overrides: Any) -> JobSpec:
    """A JobSpec with the type's defaults, as the API builds one."""
    job_type = registry.get(type_name)
    values: dict[str, Any] = {
        "type": type_name,
        "payload": payload,
        "queue": job_type.queue,
        "max_attempts": job_type.max_attempts,
        "backoff": job_type.backoff,
        "timeout": job_type.timeout,
        "priority": job_type.priority,
    }
    return JobSpec(**{**values, **overrides})


@pytest.fixture
def submit(make_runtime: MakeRuntime, consumer_registry: Registry) -> Submit:
    runtimes: list[ConsumerRuntime] = []

    async def enqueue(type_name: str, payload: Any = None, *, n: int = 1, **overrides: Any) -> list[str]:
        if not runtimes:
            runtimes.append(make_runtime())
        engine = runtimes[0].engine
        specs = [spec_for(consumer_registry, type_name, payload or {}, **overrides) for _ in range(n)]
        reply = await engine.enqueue(specs)
        return [result.job.id for result in reply.results]

    return enqueue


async def poll(predicate: Callable[[], Awaitable[bool]], within: float = 10.0, every: float = 0.02) -> None:
    """Wait until `await predicate()` is true; fail the test when the deadline passes first."""
    deadline = time.monotonic() + within
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(every)


@pytest.fixture
def wait_for() -> Callable[..., Awaitable[None]]:
    return poll


async def warm_scripts(engine: Engine, job_id: str) -> None:
    """Load every script a drain uses, so a budget test does not count the one-off NOSCRIPT round trip.
    Uses a stale token on a real job id: nothing changes."""
    stale = Lease(job_id=job_id, token="warm-up")
    await engine.due()  # and the list of queues a tick reads
    await engine.claim("warmup", 1)
    await engine.extend([stale], 1)
    await engine.report([ProgressUpdate(job_id=job_id, token=stale.token, progress=1)])
    await engine.release([stale])
    await engine.finish([Outcome(job_id=job_id, token=stale.token, status="completed")])
