"""The drain loop against the engine on real Redis through the REST gateway, with test-only job types."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from shared.consumer import Consumer, ConsumerConfig
from shared.engine import Engine
from shared.models import ErrorKind, JobSpec, State
from tests.support.consumer_fixtures import MakeRuntime, Probe, Submit, warm_scripts

Poll = Callable[..., Awaitable[None]]


async def test_drain_completes_submitted_jobs(make_runtime: MakeRuntime, submit: Submit) -> None:
    ids = await submit("echo", {"value": {"answer": 42}}, n=3)
    runtime = make_runtime()
    report = await runtime.consumer.drain(10)
    assert (report.claimed, report.completed, report.stopped) == (3, 3, "empty")
    for job_id in ids:
        job = await runtime.engine.get(job_id)
        assert job.state == State.COMPLETED and job.result == {"answer": 42} and job.attempts == 1


async def test_idle_drain_is_one_read(make_runtime: MakeRuntime, submit: Submit, gateway: Any) -> None:
    await submit("noop", n=1)
    assert (await make_runtime().consumer.drain(10)).completed == 1  # one queue that has had a job
    runtime = make_runtime()
    consumer = runtime.consumer
    before = gateway.command_count()
    report = await consumer.drain(10)
    reads = await due_reads(runtime.engine)
    assert gateway.command_count() - before == 1 + reads  # a fresh engine reads the set of queues first
    assert (report.claimed, report.claims, report.stopped) == (0, 0, "empty")
    before = gateway.command_count()
    report = await consumer.drain(10)
    assert gateway.command_count() - before == reads  # then one read of the due keys per tick
    assert (report.claimed, report.claims, report.stopped) == (0, 0, "empty")


async def test_batch_of_100_noop_jobs_costs_claim_and_finish_only(
    make_runtime: MakeRuntime, submit: Submit, gateway: Any
) -> None:
    ids = await submit("noop", n=100)
    runtime = make_runtime(batch_size=128, heartbeat=5.0)
    await warm_scripts(runtime.engine, ids[0])
    consumer = runtime.consumer
    before = gateway.command_count()
    report = await consumer.drain(30)
    spent = gateway.command_count() - before
    assert report.completed == 100
    expected = await due_reads(runtime.engine) + 2  # due, claim, finish: no heartbeat, no report
    assert spent == expected, f"due + claim + finish expected, got {spent} round trips"


async def due_reads(engine: Engine) -> int:
    """Commands of one due() read: one MGET; on a cluster one GET per queue it reads."""
    return len(await engine.tick_queues()) if engine.cluster else 1


async def test_no_linger_when_every_slot_is_free(make_runtime: MakeRuntime, submit: Submit) -> None:
    """The linger gathers slots freed together; once none runs there is nothing to wait for."""
    await submit("noop", n=6)
    runtime = make_runtime(concurrency=1, linger=3600.0)  # a linger taken even once would never end here
    report = await asyncio.wait_for(runtime.consumer.drain(30), timeout=20)
    assert (report.completed, report.stopped) == (6, "empty")


async def test_retryable_errors_back_off_until_failed(
    make_runtime: MakeRuntime, submit: Submit, wait_for: Poll, probe: Probe
) -> None:
    [job_id] = await submit("flaky", {"fail_times": 99})
    runtime = make_runtime()

    async def failed() -> bool:
        await runtime.consumer.drain(10)
        return (await runtime.engine.get(job_id)).state == State.FAILED

    await wait_for(failed, within=15)
    job = await runtime.engine.get(job_id)
    assert job.attempts == 3 and probe.calls[job_id] == 3
    assert job.error is not None and job.error.kind == ErrorKind.RETRYABLE
    assert "attempt 3 failed" in job.error.message
    assert len(job.errors) == 3


async def test_flaky_job_completes_on_a_later_attempt(
    make_runtime: MakeRuntime, submit: Submit, wait_for: Poll
) -> None:
    [job_id] = await submit("flaky", {"fail_times": 1})
    runtime = make_runtime()
    report = await runtime.consumer.drain(10)  # the 0.05 s backoff is due within the same run
    assert (report.retried, report.completed) == (1, 1)
    job = await runtime.engine.get(job_id)
    assert job.state == State.COMPLETED and job.result == {"attempt": 2}


async def test_permanent_error_skips_retries(make_runtime: MakeRuntime, submit: Submit, probe: Probe) -> None:
    [job_id] = await submit("permanent")
    runtime = make_runtime()
    report = await runtime.consumer.drain(10)
    job = await runtime.engine.get(job_id)
    assert report.failed == 1 and probe.calls[job_id] == 1
    assert job.state == State.FAILED and job.attempts == 1
    assert job.error is not None and job.error.kind == ErrorKind.PERMANENT


async def test_retry_after_waits_the_given_delay(
    make_runtime: MakeRuntime, submit: Submit, wait_for: Poll
) -> None:
    [job_id] = await submit("later", {"after": 30})
    runtime = make_runtime()
    await runtime.consumer.drain(10)
    job = await runtime.engine.get(job_id)
    assert job.state == State.DELAYED and job.attempts == 1
    assert job.run_at is not None
    delay = (job.run_at - (job.error.at if job.error and job.error.at else job.created_at)).total_seconds()
    assert 25 <= delay <= 35, delay  # the handler's delay, not the type's 0.05 s backoff


async def test_timeout_fails_the_attempt_with_kind_timeout(make_runtime: MakeRuntime, submit: Submit) -> None:
    [job_id] = await submit("slow", {"seconds": 10})
    runtime = make_runtime()
    report = await runtime.consumer.drain(10)
    job = await runtime.engine.get(job_id)
    assert report.failed == 1
    assert job.state == State.FAILED and job.error is not None and job.error.kind == ErrorKind.TIMEOUT


async def test_unknown_type_and_invalid_payload_fail_permanently(
    make_runtime: MakeRuntime, submit: Submit, probe: Probe
) -> None:
    [invalid] = await submit("echo", {"fail_times": "not a number"})
    runtime = make_runtime()
    ghost_spec = JobSpec(type="ghost", queue="echo", payload={}, timeout=5)
    [ghost] = [r.job.id for r in (await runtime.engine.enqueue([ghost_spec])).results]
    report = await runtime.consumer.drain(10)
    assert report.failed == 2 and not probe.calls
    for job_id, words in ((ghost, "ghost"), (invalid, "payload.fail_times")):
        job = await runtime.engine.get(job_id)
        assert job.state == State.FAILED and job.attempts == 1
        assert job.error is not None and job.error.kind == ErrorKind.PERMANENT and words in job.error.message


async def test_progress_and_logs_visible_while_running(
    make_runtime: MakeRuntime, submit: Submit, probe: Probe, wait_for: Poll
) -> None:
    [job_id] = await submit("progress")
    runtime = make_runtime(heartbeat=0.1)
    drain = asyncio.create_task(runtime.consumer.drain(20))

    async def visible() -> bool:
        job = await runtime.engine.get(job_id)
        return job.state == State.ACTIVE and job.progress == 50 and "halfway there" in job.logs

    await wait_for(visible)
    probe.gate.set()
    report = await asyncio.wait_for(drain, 10)
    job = await runtime.engine.get(job_id)
    assert report.completed == 1 and job.state == State.COMPLETED and job.progress == 100


async def test_cancel_of_a_running_job(
    make_runtime: MakeRuntime, submit: Submit, probe: Probe, wait_for: Poll
) -> None:
    [job_id] = await submit("progress")
    runtime = make_runtime(heartbeat=0.1)
    drain = asyncio.create_task(runtime.consumer.drain(20))
    await asyncio.wait_for(probe.started.wait(), 10)
    job = await runtime.engine.cancel(job_id)
    assert job.state == State.ACTIVE and job.cancel_requested
    report = await asyncio.wait_for(drain, 10)  # the handler sees ctx.cancelled at the next flush
    assert report.cancelled == 1
    assert (await runtime.engine.get(job_id)).state == State.CANCELLED


async def test_shutdown_hands_unstarted_jobs_back_at_once(
    make_runtime: MakeRuntime, submit: Submit, probe: Probe, wait_for: Poll
) -> None:
    # Type "wait" runs one at a time, but its queue also serves a type of concurrency 2: the claim takes
    # three jobs, one runs and two wait for the type's slot (claimed but unstarted).
    ids = await submit("wait", n=3)
    runtime = make_runtime()
    drain = asyncio.create_task(runtime.consumer.drain(20))
    await asyncio.wait_for(probe.started.wait(), 10)
    runtime.consumer.stop()

    async def handed_back() -> bool:
        states = [(await runtime.engine.get(i)).state for i in ids]
        return states.count(State.WAITING) == 2 and states.count(State.ACTIVE) == 1

    await wait_for(handed_back, within=5)  # while the running one still holds its slot
    probe.gate.set()
    report = await asyncio.wait_for(drain, 10)
    assert (report.completed, report.released, report.stopped) == (1, 2, "shutdown")
    waiting = [await runtime.engine.get(i) for i in ids if probe.calls[i] == 0]
    assert len(waiting) == 2 and all(job.attempts == 0 for job in waiting)


async def test_shutdown_interrupts_handlers_after_the_grace(
    make_runtime: MakeRuntime, submit: Submit, probe: Probe
) -> None:
    [job_id] = await submit("stubborn")
    runtime = make_runtime(grace=0.2)
    drain = asyncio.create_task(runtime.consumer.drain(20))
    await asyncio.wait_for(probe.started.wait(), 10)
    runtime.consumer.stop()
    report = await asyncio.wait_for(drain, 5)
    job = await runtime.engine.get(job_id)
    assert report.retried == 1
    assert job.state in (State.WAITING, State.DELAYED) and job.attempts == 1
    assert job.error is not None and "shutdown" in job.error.message


async def test_per_type_concurrency_is_honoured(
    make_runtime: MakeRuntime, submit: Submit, probe: Probe
) -> None:
    await submit("limited", n=6)
    report = await make_runtime().consumer.drain(20)
    assert report.completed == 6
    assert probe.peak["limited"] == 2


async def test_rate_limit_is_honoured(make_runtime: MakeRuntime, submit: Submit) -> None:
    ids = await submit("rated", n=5)
    runtime = make_runtime()
    report = await runtime.consumer.drain(10)
    assert report.completed == 2
    states = [(await runtime.engine.get(i)).state for i in ids]
    assert states.count(State.COMPLETED) == 2
    assert states.count(State.WAITING) + states.count(State.DELAYED) == 3


async def test_a_busy_queue_does_not_starve_a_quiet_one(
    make_runtime: MakeRuntime, submit: Submit, probe: Probe
) -> None:
    await submit("busy", n=40)
    await submit("quiet", n=2)
    report = await make_runtime().consumer.drain(20)  # 10 per queue per cycle
    assert report.completed == 42
    assert probe.order.index("quiet") < 10 + 2  # served in the first cycle, not after the 40


async def test_a_job_longer_than_the_budget_left_is_not_claimed(
    make_runtime: MakeRuntime, submit: Submit, gateway: Any
) -> None:
    [job_id] = await submit("long")  # timeout 5 s
    [short] = await submit("long", timeout=0.5)  # the same queue, a shorter timeout of its own
    runtime = make_runtime()
    report = await runtime.consumer.drain(3)  # 1 s after the 2 s finish reserve
    assert (report.claimed, report.completed) == (1, 1)
    assert (await runtime.engine.get(job_id)).state == State.WAITING
    assert (await runtime.engine.get(short)).state == State.COMPLETED


async def test_queues_option_limits_what_is_served(make_runtime: MakeRuntime, submit: Submit) -> None:
    [busy] = await submit("busy")
    [quiet] = await submit("quiet")
    runtime = make_runtime(queues=["quiet"])
    report = await runtime.consumer.drain(10)
    assert report.completed == 1
    assert (await runtime.engine.get(quiet)).state == State.COMPLETED
    assert (await runtime.engine.get(busy)).state == State.WAITING


async def test_heartbeat_extends_a_lease_the_job_outlives(
    make_runtime: MakeRuntime, submit: Submit, probe: Probe, wait_for: Poll
) -> None:
    # A lease of timeout (1 s) - 0.5 s: the job runs 0.9 s, past its first lease, so without a heartbeat
    # another consumer would reap it and run it again.
    [job_id] = await submit("nap", {"seconds": 0.9})
    base = make_runtime()
    engine = Engine(
        base.redis,
        prefix=base.settings.key_prefix,
        queue_options=base.registry.queue_options,
        lease_margin=-0.5,
    )
    consumer = Consumer(engine, base.registry, ConsumerConfig(heartbeat_interval=0.1))
    drain = asyncio.create_task(consumer.drain(20))
    await asyncio.wait_for(probe.started.wait(), 10)
    first = (await engine.get(job_id)).started_at
    assert first is not None

    async def past_the_first_lease() -> bool:
        return time.time() > first.timestamp() + 0.6

    await wait_for(past_the_first_lease)
    assert await engine.claim("napq", 10) == []  # nothing to reap: the lease was extended
    report = await asyncio.wait_for(drain, 10)
    assert (report.completed, report.lost) == (1, 0) and probe.calls[job_id] == 1


async def test_a_handler_raising_cancelled_error_fails_only_its_job(
    make_runtime: MakeRuntime, submit: Submit
) -> None:
    [bad] = await submit("self_cancel")
    [good] = await submit("echo", {"value": "fine"})
    runtime = make_runtime()
    report = await runtime.consumer.drain(10)
    assert (report.completed, report.failed) == (1, 1)
    job = await runtime.engine.get(bad)
    assert job.state == State.FAILED and job.error is not None and "CancelledError" in job.error.message
    assert (await runtime.engine.get(good)).state == State.COMPLETED
