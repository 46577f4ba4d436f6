"""Flows of dependent jobs on the engine, through the REST gateway on real Redis (every backend).

A tree submitted in one call: children run first, the parent waits (waiting-children) until they end as
each child's failure policy requires; cancel and retry reach across the flow; depends_on chains. On a
Redis Cluster a flow holds one queue's jobs (`queues` below puts every node in one queue there).
"""

from __future__ import annotations

from typing import Any

import pytest

from shared.engine import Engine
from shared.errors import ValidationError
from shared.limits import MAX_FLOW_DEPTH, MAX_FLOW_NODES
from shared.models import (
    ClaimedJob,
    Debounce,
    ErrorKind,
    JobError,
    JobSpec,
    Lease,
    Outcome,
    QueueOptions,
    State,
)
from tests.support.engine_fixtures import EngineFactory, FakeClock


def node(type_: str, queue: str, **kw: Any) -> JobSpec:
    return JobSpec.model_validate(
        {"type": type_, "payload": {"n": 1}, "owner": "alice", "queue": queue, **kw}
    )


def orchestrator(engine: Engine, **flight: Any) -> JobSpec:
    """The orchestrator fan-out: a parent with flight-search, proposal-analysis and communication."""
    one = engine.cluster  # a cluster refuses a flow across queues
    return node(
        "orchestrator",
        "fq-orch",
        children=[
            node("flight-search", "fq-orch" if one else "fq-flights", **flight),
            node("proposal-analysis", "fq-orch" if one else "fq-proposals"),
            node("communication", "fq-orch" if one else "fq-comms"),
        ],
    )


async def run(engine: Engine, job_id: str, *, fail: bool = False, permanent: bool = True) -> None:
    """Claim from `job_id`'s queue until that job is claimed (others are completed), then finish it."""
    queue = job_id.split(".", 1)[1]
    for _ in range(10):
        claimed = await engine.claim(queue, 10)
        outcomes = []
        for c in claimed:
            if c.job.id == job_id and fail:
                kind = ErrorKind.PERMANENT if permanent else ErrorKind.RETRYABLE
                error = JobError(kind=kind, message="boom")
                outcomes.append(Outcome(job_id=c.job.id, token=c.token, status="failed", error=error))
            elif c.job.id == job_id:
                result = {"by": c.job.type}
                outcomes.append(Outcome(job_id=c.job.id, token=c.token, status="completed", result=result))
            else:
                await engine.release([_lease(c)])
        await engine.finish(outcomes)
        if any(c.job.id == job_id for c in claimed):
            return
    raise AssertionError(f"{job_id} was never claimable")


def _lease(c: ClaimedJob) -> Lease:
    return Lease(job_id=c.job.id, token=c.token)


async def state(engine: Engine, job_id: str) -> State:
    return (await engine.get(job_id)).state


async def test_parent_waits_for_its_children_then_reads_their_results(engine: Engine) -> None:
    ids = [r.job.id for r in (await engine.enqueue([orchestrator(engine)])).results]
    parent, children = ids[0], ids[1:]
    job = await engine.get(parent)
    assert job.state is State.WAITING_CHILDREN and job.children == children and job.pending_children == 3
    assert [link.id for link in (await engine.get(children[0])).parents] == [parent]
    for done, child in enumerate(children, start=1):
        await run(engine, child)
        job = await engine.get(parent)
        assert job.state is (State.WAITING if done == 3 else State.WAITING_CHILDREN)
        assert job.pending_children == 3 - done
    results = {c.type: c.result for c in await engine.children(job)}
    assert results == {t: {"by": t} for t in ("flight-search", "proposal-analysis", "communication")}
    stats = await engine.stats(job.queue)
    assert stats.counts[State.WAITING_CHILDREN] == 0
    await run(engine, parent)
    assert await state(engine, parent) is State.COMPLETED


@pytest.mark.parametrize("policy", ["fail", "ignore", "continue"])
async def test_failure_policies(engine: Engine, policy: str) -> None:
    ids = [r.job.id for r in (await engine.enqueue([orchestrator(engine, on_failure=policy)])).results]
    parent, flight, *others = ids
    assert (await engine.stats("fq-orch")).counts[State.WAITING_CHILDREN] == 1
    await run(engine, flight, fail=True)
    if policy == "fail":
        job = await engine.get(parent)
        assert job.state is State.FAILED and job.error is not None
        assert job.error.kind is ErrorKind.CHILD_FAILED and flight in job.error.message
        for other in others:  # the other children still run; the parent stays failed
            await run(engine, other)
        assert await state(engine, parent) is State.FAILED
        return
    assert await state(engine, parent) is State.WAITING_CHILDREN
    for other in others:
        await run(engine, other)
    job = await engine.get(parent)
    assert job.state is State.WAITING
    seen = {c.id: c.state for c in await engine.children(job)}
    if policy == "ignore":
        assert flight not in seen and len(seen) == 2
    else:
        assert seen[flight] is State.FAILED and len(seen) == 3


async def test_a_retry_of_the_failed_child_revives_the_parent(engine: Engine) -> None:
    ids = [r.job.id for r in (await engine.enqueue([orchestrator(engine)])).results]
    parent, flight, *others = ids
    await run(engine, flight, fail=True)
    await run(engine, others[0])
    assert await state(engine, parent) is State.FAILED
    revived = await engine.retry(flight)
    assert revived.state is State.WAITING
    job = await engine.get(parent)
    assert job.state is State.WAITING_CHILDREN and job.pending_children == 2
    await run(engine, flight)
    await run(engine, others[1])
    assert await state(engine, parent) is State.WAITING


async def test_cancelling_the_parent_cancels_its_pending_children(engine: Engine) -> None:
    ids = [r.job.id for r in (await engine.enqueue([orchestrator(engine)])).results]
    parent, flight, proposals, comms = ids
    queue = proposals.split(".", 1)[1]
    claimed = await engine.claim(queue, 10)
    await engine.release([_lease(c) for c in claimed if c.job.id != proposals])
    assert proposals in [c.job.id for c in claimed]  # proposal-analysis is running
    await run(engine, comms)
    cancelled = await engine.cancel(parent, owner="alice")
    assert cancelled.state is State.CANCELLED
    assert await state(engine, flight) is State.CANCELLED
    running = await engine.get(proposals)
    assert running.state is State.ACTIVE and running.cancel_requested
    assert await state(engine, comms) is State.COMPLETED


async def test_a_reaped_child_out_of_attempts_fails_its_parent(
    engine_factory: EngineFactory, fake_clock: FakeClock
) -> None:
    engine = engine_factory(clock=fake_clock)
    root = orchestrator(engine, max_attempts=1, timeout=5)
    parent, flight, *_ = [r.job.id for r in (await engine.enqueue([root])).results]
    queue = flight.split(".", 1)[1]
    assert [c.job.id for c in await engine.claim(queue, 1)] == [flight]
    fake_clock.advance(60)
    await engine.claim(queue, 1)  # reaps the lease: no attempts left, so failed
    assert await state(engine, flight) is State.FAILED
    assert await state(engine, parent) is State.FAILED


async def test_a_fresh_engine_learns_the_queues_of_a_flow(engine_factory: EngineFactory) -> None:
    """A consumer that never saw the submit finishes a child in another queue: its finish reaches the
    parent's queue anyway (the script asks for that queue's keys before writing anything)."""
    submitter, consumer = engine_factory(), engine_factory()
    ids = [r.job.id for r in (await submitter.enqueue([orchestrator(submitter)])).results]
    parent, *children = ids
    for child in children:
        fresh = engine_factory()
        await run(fresh, child)
    assert await state(consumer, parent) is State.WAITING


async def test_depends_on_chain(engine: Engine) -> None:
    other_queue = "dq-a" if engine.cluster else "dq-b"
    a = (await engine.enqueue([node("generate", "dq-a")])).results[0].job
    b = (await engine.enqueue([node("test", other_queue, depends_on=[a.id])])).results[0].job
    c = (await engine.enqueue([node("pull-request", "dq-a", depends_on=[b.id])])).results[0].job
    assert b.state is State.WAITING_CHILDREN and b.depends_on == [a.id]
    await run(engine, a.id)
    assert await state(engine, b.id) is State.WAITING
    assert await state(engine, c.id) is State.WAITING_CHILDREN
    await run(engine, b.id)
    assert await state(engine, c.id) is State.WAITING
    done = (await engine.enqueue([node("later", "dq-a", depends_on=[a.id])])).results[0].job
    assert done.state is State.WAITING  # a dependency that already completed is met at submit


async def test_depends_on_refusals_name_the_field(engine: Engine) -> None:
    a = (await engine.enqueue([node("generate", "dq-a")])).results[0].job
    mallory = JobSpec(type="x", queue="dq-a", owner="mallory", depends_on=[a.id])
    with pytest.raises(ValidationError) as foreign:
        await engine.enqueue([mallory])
    assert foreign.value.field == "jobs[0].depends_on[0]"
    assert (await engine.get(a.id)).parents == []  # nothing written
    unknown = a.id[:20] + "ZZZZZZ.dq-a"
    with pytest.raises(ValidationError) as missing:
        await engine.enqueue([node("x", "dq-a"), node("y", "dq-a", depends_on=[a.id, unknown])])
    assert missing.value.field == "jobs[1].depends_on[1]"
    with pytest.raises(ValidationError) as bad:
        await engine.enqueue([node("x", "dq-a", depends_on=["not-an-id"])])
    assert bad.value.field == "jobs[0].depends_on[0]"
    with pytest.raises(ValidationError) as twice:
        await engine.enqueue([node("x", "dq-a", depends_on=[a.id, a.id])])
    assert twice.value.field == "jobs[0].depends_on"
    await run(engine, a.id, fail=True)
    with pytest.raises(ValidationError) as failed:
        await engine.enqueue([node("x", "dq-a", depends_on=[a.id])])
    assert failed.value.field == "jobs[0].depends_on[0]" and "failed" in failed.value.message


async def test_hostile_trees_are_refused_whole(engine: Engine) -> None:
    deep = node("leaf", "hq")
    for _ in range(MAX_FLOW_DEPTH + 1):
        deep = node("level", "hq", children=[deep])
    with pytest.raises(ValidationError) as too_deep:
        await engine.enqueue([deep])
    assert too_deep.value.field == "jobs[0]." + "children[0]." * MAX_FLOW_DEPTH + "children"
    wide = node("root", "hq", children=[node("leaf", "hq") for _ in range(MAX_FLOW_NODES)])
    with pytest.raises(ValidationError) as too_many:
        await engine.enqueue([wide])
    assert too_many.value.field == "children"
    delayed = node("root", "hq", delay=10, children=[node("leaf", "hq")])
    with pytest.raises(ValidationError) as late:
        await engine.enqueue([delayed])
    assert late.value.field == "jobs[0].delay"
    debounced = node("root", "hq", children=[node("leaf", "hq", debounce=Debounce(key="k", seconds=5))])
    with pytest.raises(ValidationError) as joined:
        await engine.enqueue([debounced])
    assert joined.value.field == "jobs[0].children[0].debounce"
    assert (await engine.stats("hq")).counts[State.WAITING] == 0  # nothing half-written


async def test_a_released_parent_is_due_in_a_queue_with_a_concurrency_limit(
    engine_factory: EngineFactory,
) -> None:
    """A finish in a limited queue computes its due time afresh: the parent it released counts."""
    engine = engine_factory(queue_options=lambda _queue: QueueOptions(concurrency=2))
    root = node("parent", "limited", children=[node("child", "limited")])
    parent, child = [r.job.id for r in (await engine.enqueue([root])).results]
    [claimed] = await engine.claim("limited", 10)
    assert claimed.job.id == child
    await engine.finish([Outcome(job_id=child, token=claimed.token, status="completed")])
    assert "limited" in await engine.due()
    assert [c.job.id for c in await engine.claim("limited", 10)] == [parent]


async def test_listings_show_jobs_waiting_for_children(engine: Engine) -> None:
    parent = (await engine.enqueue([orchestrator(engine)])).results[0].job.id
    by_queue = await engine.list_jobs(queue="fq-orch", state=State.WAITING_CHILDREN)
    assert [j.id for j in by_queue.jobs] == [parent]
    everything = await engine.list_jobs(queue="fq-orch")
    assert parent in [j.id for j in everything.jobs]
    mine = await engine.list_jobs(owner="alice", state=State.WAITING_CHILDREN)
    assert [j.id for j in mine.jobs] == [parent]
    assert (await engine.stats("fq-orch")).counts[State.WAITING_CHILDREN] == 1
    await engine.obliterate("fq-orch")
    assert (await engine.stats("fq-orch")).counts[State.WAITING_CHILDREN] == 0


async def test_a_fresh_engine_cancels_and_revives_across_queues(engine_factory: EngineFactory) -> None:
    """Cancel and retry from processes that never saw the submit reach every queue of the flow."""
    submitter = engine_factory()
    parent, flight, *others = [r.job.id for r in (await submitter.enqueue([orchestrator(submitter)])).results]
    await run(engine_factory(), flight, fail=True)
    assert await state(submitter, parent) is State.FAILED
    revived = await engine_factory().retry(flight)
    assert revived.state is State.WAITING
    assert await state(submitter, parent) is State.WAITING_CHILDREN
    cancelled = await engine_factory().cancel(parent)
    assert cancelled.state is State.CANCELLED
    for child in (flight, *others):
        assert await state(submitter, child) is State.CANCELLED


async def test_a_cycle_whose_claim_reaps_a_child_of_an_unknown_queue(
    engine_factory: EngineFactory, fake_clock: FakeClock
) -> None:
    """The claim of a finish-and-claim call meets a flow link into a queue the engine has not seen: the
    call keeps its finish, the engine sends it again with that queue, and the finish counts once."""
    submitter, holder, cycler = (engine_factory(clock=fake_clock) for _ in range(3))
    root = node("parent", "cy-parents", children=[node("child", "cy-children", max_attempts=1, timeout=5)])
    if submitter.cluster:  # where a script may touch one slot only, such a flow is refused at submit
        with pytest.raises(ValidationError, match="share one queue"):
            await submitter.enqueue([root])
        return
    parent, child = [r.job.id for r in (await submitter.enqueue([root])).results]
    assert [c.job.id for c in await holder.claim("cy-children", 1)] == [child]
    [plain] = [r.job.id for r in (await submitter.enqueue([node("plain", "cy-children")])).results]
    [mine] = await cycler.claim("cy-children", 1)
    assert mine.job.id == plain
    fake_clock.advance(60)  # the child's lease runs out
    finished, _ = await cycler.finish_and_claim(
        [Outcome(job_id=plain, token=mine.token, status="completed")], "cy-children", 1
    )
    assert [f.ok for f in finished] == [True]
    assert await state(submitter, child) is State.FAILED
    assert await state(submitter, parent) is State.FAILED
    assert (await submitter.stats("cy-children")).completed_total == 1
