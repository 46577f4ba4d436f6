"""The continuous consumer runtime on real Redis through the REST gateway: slots, timing, fences, limits."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from functions.consumer.runtime import run_bounded
from shared.consumer.worker import Worker
from shared.models import ErrorKind, Lease, State
from tests.support.consumer_fixtures import MakeRuntime, Probe, Submit
from tests.support.gateway_fixtures import real_redis_url

Poll = Callable[..., Awaitable[None]]


async def test_quick_jobs_finish_while_slow_ones_run(
    make_runtime: MakeRuntime, submit: Submit, probe: Probe, wait_for: Poll
) -> None:
    slow = await submit("holder", n=2)
    quick = await submit("echo", {"value": 1}, n=5)
    runtime = make_runtime()
    drain = asyncio.create_task(runtime.consumer.drain(30))

    async def quick_done() -> bool:
        return all([(await runtime.engine.get(i)).state == State.COMPLETED for i in quick])

    await wait_for(quick_done, within=10)  # while both slow jobs still hold their slots
    assert all([(await runtime.engine.get(i)).state == State.ACTIVE for i in slow])
    probe.gate.set()
    report = await asyncio.wait_for(drain, 10)
    assert (report.completed, report.claimed) == (7, 7)


async def test_a_freed_slot_is_refilled_without_waiting_for_the_others(
    make_runtime: MakeRuntime, submit: Submit, probe: Probe, wait_for: Poll
) -> None:
    # "limited" runs 2 at a time: six jobs go through two slots, each refilled as it frees, while a
    # slow job of another queue runs the whole time.
    [slow] = await submit("holder")
    await submit("limited", n=6)
    runtime = make_runtime()
    drain = asyncio.create_task(runtime.consumer.drain(30))
    await wait_for(lambda: _count(probe, "limited", 6), within=10)
    assert probe.peak["limited"] == 2
    assert (await runtime.engine.get(slow)).state == State.ACTIVE
    probe.gate.set()
    await asyncio.wait_for(drain, 10)


async def _count(probe: Probe, queue: str, n: int) -> bool:
    return probe.order.count(queue) >= n and probe.running[queue] == 0


async def test_a_retry_runs_when_due_not_at_the_next_poll(
    make_runtime: MakeRuntime, submit: Submit, wait_for: Poll
) -> None:
    # A worker whose idle poll is a minute (as the production tick): the 1 s backoff must still hold.
    [job_id] = await submit("retry1s")
    runtime = make_runtime()
    worker = Worker(runtime.consumer, idle_min=60, idle_max=60)
    running = asyncio.create_task(worker.run())
    started = time.monotonic()

    async def completed() -> bool:
        return (await runtime.engine.get(job_id)).state == State.COMPLETED

    try:
        await wait_for(completed, within=15)
    finally:
        worker.stop()
        await asyncio.wait_for(running, 10)
    elapsed = time.monotonic() - started
    job = await runtime.engine.get(job_id)
    assert job.attempts == 2 and job.result == 2
    assert elapsed < 30, f"the retry waited {elapsed:.1f} s: the worker slept to its idle poll"


async def test_cancel_wins_over_a_late_result(
    make_runtime: MakeRuntime, submit: Submit, probe: Probe, wait_for: Poll
) -> None:
    [job_id] = await submit("deaf")
    runtime = make_runtime(heartbeat=5.0)  # no heartbeat brings the cancel request before the result
    drain = asyncio.create_task(runtime.consumer.drain(20))
    await asyncio.wait_for(probe.started.wait(), 10)
    assert (await runtime.engine.cancel(job_id)).cancel_requested
    probe.gate.set()
    report = await asyncio.wait_for(drain, 10)
    job = await runtime.engine.get(job_id)
    assert job.state == State.CANCELLED and job.result is None
    assert report.cancelled == 1 and report.completed == 0


async def test_a_nan_result_fails_only_its_own_job(make_runtime: MakeRuntime, submit: Submit) -> None:
    [bad] = await submit("nan")
    good = await submit("echo", {"value": "fine"}, n=3)
    runtime = make_runtime()
    report = await runtime.consumer.drain(10)
    assert (report.completed, report.failed, report.lost) == (3, 1, 0)
    job = await runtime.engine.get(bad)
    assert job.state == State.FAILED and job.attempts == 1
    assert job.error is not None and job.error.kind == ErrorKind.PERMANENT
    assert "result is not JSON" in job.error.message
    assert all([(await runtime.engine.get(i)).state == State.COMPLETED for i in good])


async def test_a_blocking_handler_times_out_and_its_late_return_is_dropped(
    make_runtime: MakeRuntime, submit: Submit
) -> None:
    [job_id] = await submit("blocking", {"seconds": 1.0})  # its timeout is 0.3 s
    [fast] = await submit("blocking", {"seconds": 0.0})
    runtime = make_runtime()
    report = await runtime.consumer.drain(10)
    job = await runtime.engine.get(job_id)
    assert job.state == State.FAILED and job.error is not None and job.error.kind == ErrorKind.TIMEOUT
    done = await runtime.engine.get(fast)
    assert done.state == State.COMPLETED and done.result == "slept" and "in a worker thread" in done.logs
    assert (report.completed, report.failed) == (1, 1)


async def test_queue_concurrency_holds_across_three_consumers(
    make_runtime: MakeRuntime, submit: Submit, probe: Probe, wait_for: Poll
) -> None:
    ids = await submit("bounded", {"seconds": 0.3}, n=8)  # at most 2 active in all, 5 per process
    runtimes = [make_runtime() for _ in range(3)]
    peak = 0
    drains = [asyncio.create_task(r.consumer.drain(30)) for r in runtimes]

    async def all_done() -> bool:
        nonlocal peak
        stats = await runtimes[0].engine.stats("bounded")
        peak = max(peak, stats.counts[State.ACTIVE])
        return stats.counts[State.COMPLETED] == len(ids)

    await wait_for(all_done, within=20, every=0.02)
    await asyncio.wait_for(asyncio.gather(*drains), 10)
    assert peak == 2, f"{peak} jobs of the queue were active at once"
    assert sum(probe.calls[i] for i in ids) == len(ids)


async def test_a_process_claims_only_what_it_starts(
    make_runtime: MakeRuntime, submit: Submit, probe: Probe, wait_for: Poll
) -> None:
    await submit("holder", n=10)  # the type runs 4 at a time per process
    runtime = make_runtime()
    drain = asyncio.create_task(runtime.consumer.drain(30))
    await wait_for(lambda: _started(probe, "holder", 4), within=10)
    stats = await runtime.engine.stats("holder")
    assert (stats.counts[State.ACTIVE], stats.counts[State.WAITING]) == (4, 6)
    other = make_runtime()
    steal = await other.engine.claim("holder", 10)
    assert len(steal) == 6  # the rest was never held by the first process
    await other.engine.release([_lease(c) for c in steal])
    probe.gate.set()
    await asyncio.wait_for(drain, 15)


async def _started(probe: Probe, queue: str, n: int) -> bool:
    return probe.order.count(queue) >= n


def _lease(claimed: Any) -> Lease:
    return Lease(job_id=claimed.job.id, token=claimed.token)


@pytest.mark.parametrize("gateway", ["redis"], indirect=True)
async def test_a_stalled_store_loses_no_completed_outcome(
    make_runtime: MakeRuntime, submit: Submit, probe: Probe
) -> None:
    # The store stops answering (CLIENT PAUSE on the real Redis behind the gateway) right as the jobs
    # finish: their outcomes are re-sent with backoff until the store is back, long before the leases end.
    ids = await submit("holder", n=4)
    runtime = make_runtime()
    drain = asyncio.create_task(runtime.consumer.drain(60))
    await asyncio.wait_for(probe.started.wait(), 10)
    direct = aioredis.from_url(real_redis_url())
    try:
        await direct.execute_command("CLIENT", "PAUSE", 8000, "ALL")  # an 8 s stall
        probe.gate.set()
        report = await asyncio.wait_for(drain, 40)
    finally:
        await direct.execute_command("CLIENT", "UNPAUSE")
        await direct.aclose()
    assert (report.completed, report.lost) == (4, 0)
    for job_id in ids:
        job = await runtime.engine.get(job_id)
        assert job.state == State.COMPLETED and job.attempts == 1 and probe.calls[job_id] == 1


async def test_an_idle_bounded_run_waits_only_for_work_due_soon(
    make_runtime: MakeRuntime, submit: Submit
) -> None:
    [soon] = await submit("echo", {"value": 1}, delay=0.5)
    [later] = await submit("echo", {"value": 2}, delay=30)
    runtime = make_runtime(wait_due=2.0)
    report = await run_bounded(runtime, 10)
    assert report.completed == 1 and (await runtime.engine.get(soon)).state == State.COMPLETED
    assert (await runtime.engine.get(later)).state == State.DELAYED
    assert report.next_due is not None and math.isclose(
        report.next_due, (await runtime.engine.get(later)).run_at.timestamp(), abs_tol=0.01
    )
