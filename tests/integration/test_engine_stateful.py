"""A hypothesis state machine driving the engine through the gateway on real Redis.

Random submits, claims, finishes with valid and stale tokens, lease expiries (an injected clock),
cancels, retries and pauses, on a queue with a concurrency limit; flows (a parent with children, each
with a random failure policy) and depends_on; after every step the invariants are checked against Redis:
no parent runs before its children end, and no child is orphaned (a waiting parent always has a child
still to end, and counts exactly those).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from shared.codec import as_fields, fresh_m, shown_state, unpack_m
from shared.engine import Engine
from shared.errors import InvalidTransitionError, SingletonConflictError, ValidationError
from shared.ids import job_id as public_id
from shared.ids import split_id
from shared.keys import BLOCK, STATE_INDEXES
from shared.models import (
    TERMINAL_STATES,
    Backoff,
    ErrorKind,
    JobError,
    JobSpec,
    Lease,
    Outcome,
    QueueOptions,
    State,
)
from shared.settings import Settings
from shared.store import make_redis
from tests.support.engine_fixtures import FakeClock, prefix_for

BOUNDED = settings(
    max_examples=25, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
QUEUE = "sm"
MAX_ATTEMPTS = 3
CONCURRENCY = 5  # the queue-wide limit: claims of up to 5 jobs reach it only by adding up


class EngineMachine(RuleBasedStateMachine):
    # Builds a client for the machine's own event loop (hypothesis rules are synchronous).
    make_client: Callable[[], Any] = staticmethod(lambda: None)

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.redis = self.make_client()
        self.clock = FakeClock(1_800_000_000.0)
        self.engine = Engine(
            self.redis,
            prefix=prefix_for(str(uuid.uuid4())),
            clock=self.clock,
            queue_options=lambda _queue: QueueOptions(concurrency=CONCURRENCY),
        )
        self.ids: list[str] = []
        self.tokens: dict[str, list[str]] = {}  # every token ever issued per job, newest last
        self.paused = False
        self.waits_for: dict[str, list[str]] = {}  # a parent (or dependent) -> its children (dependencies)
        self.singletons: dict[str, str] = {}  # job id -> its singleton key
        self.rerun: set[str] = set()  # jobs run again by hand: they do not take their key again

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        try:
            self.run(self.engine.obliterate(QUEUE))
            self.run(self.redis.close())
        finally:
            self.loop.close()

    def snapshot(self, job_id: str) -> dict[str, Any]:
        unique = split_id(job_id)[0]
        jobs = self.engine.keys.queue(QUEUE).jobs()
        held = self.run(self.engine.store.command("HGET", jobs, f"{unique}:m"))
        return {"m": held or fresh_m(job_id)}  # a job that has not moved since its submit has none

    # -- rules -----------------------------------------------------------------------------------

    @rule(n=st.integers(1, 4), delay=st.sampled_from([0, 0, 5]), priority=st.integers(0, 9))
    def submit(self, n: int, delay: int, priority: int) -> None:
        backoff = Backoff(delay=1, factor=2, jitter=0)
        specs = [
            JobSpec(
                type=QUEUE,
                payload=i,
                delay=delay,
                priority=priority,
                max_attempts=MAX_ATTEMPTS,
                backoff=backoff,
            )
            for i in range(n)
        ]
        reply = self.run(self.engine.enqueue(specs))
        self.ids += [r.job.id for r in reply.results]

    @rule(policies=st.lists(st.sampled_from(["fail", "ignore", "continue"]), min_size=1, max_size=3))
    def submit_flow(self, policies: list[str]) -> None:
        backoff = Backoff(delay=1, factor=2, jitter=0)
        children = [
            JobSpec(type=QUEUE, max_attempts=MAX_ATTEMPTS, backoff=backoff, on_failure=policy)  # type: ignore[arg-type]
            for policy in policies
        ]
        root = JobSpec(type=QUEUE, max_attempts=MAX_ATTEMPTS, backoff=backoff, children=children)
        ids = [r.job.id for r in self.run(self.engine.enqueue([root])).results]
        self.ids += ids
        self.waits_for[ids[0]] = ids[1:]

    @precondition(lambda self: self.ids)
    @rule(data=st.data())
    def submit_dependent(self, data: st.DataObject) -> None:
        deps = data.draw(st.lists(st.sampled_from(self.ids), min_size=1, max_size=2, unique=True))
        spec = JobSpec(type=QUEUE, max_attempts=MAX_ATTEMPTS, depends_on=deps)
        try:
            [result] = self.run(self.engine.enqueue([spec])).results
        except ValidationError:  # a dependency already failed or was cancelled: refused whole
            states = [self.run(self.engine.get(dep)).state for dep in deps]
            assert {State.FAILED, State.CANCELLED} & set(states)
            return
        self.ids.append(result.job.id)
        self.waits_for[result.job.id] = deps

    @rule(n=st.integers(1, 5), lease=st.sampled_from([5, 30]))
    def claim(self, n: int, lease: int) -> None:
        claimed = self.run(self.engine.claim(QUEUE, n, lease=lease))
        if self.paused:
            assert claimed == []
        for c in claimed:
            for child in self.waits_for.get(c.job.id, []):  # no parent runs before its children end
                assert self.run(self.engine.get(child)).state in TERMINAL_STATES, (c.job.id, child)
            assert c.token not in self.tokens.get(c.job.id, [])
            self.tokens.setdefault(c.job.id, []).append(c.token)
            assert c.job.attempts <= MAX_ATTEMPTS

    @precondition(lambda self: self.tokens)
    @rule(data=st.data(), status=st.sampled_from(["completed", "failed", "retry", "cancelled"]))
    def finish_current(self, data: st.DataObject, status: str) -> None:
        job_id = data.draw(st.sampled_from(sorted(self.tokens)))
        token = self.tokens[job_id][-1]
        kind = data.draw(st.sampled_from([ErrorKind.RETRYABLE, ErrorKind.PERMANENT]))
        error = JobError(kind=kind, message="x") if status == "failed" else None
        outcome = Outcome(job_id=job_id, token=token, status=status, error=error, retry_after=1)  # type: ignore[arg-type]
        self.run(self.engine.finish([outcome]))

    @precondition(lambda self: any(len(t) > 1 for t in self.tokens.values()))
    @rule(data=st.data())
    def finish_stale(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(sorted(j for j, t in self.tokens.items() if len(t) > 1)))
        stale = data.draw(st.sampled_from(self.tokens[job_id][:-1]))
        before = self.snapshot(job_id)
        [result] = self.run(self.engine.finish([Outcome(job_id=job_id, token=stale, status="completed")]))
        [lease] = self.run(self.engine.extend([Lease(job_id=job_id, token=stale)], 60))
        assert self.snapshot(job_id) == before, "a stale token changed the job"
        m = unpack_m(before["m"]) if before else {}
        if m.get("k") != stale:
            assert not result.ok and not lease.ok

    @rule(seconds=st.sampled_from([1, 6, 31]))
    def time_passes(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @rule()
    def leases_expire_and_jobs_are_reclaimed(self) -> None:
        """Every lease runs out (and delayed retries come due); a new consumer claims: stale tokens."""
        self.clock.advance(61)
        self.claim(5, 30)

    @precondition(lambda self: self.ids)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        self.run(self.engine.cancel(data.draw(st.sampled_from(self.ids))))

    @precondition(lambda self: self.ids)
    @rule(data=st.data())
    def retry(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(self.ids))
        try:
            self.run(self.engine.retry(job_id))
            self.rerun.add(job_id)
        except InvalidTransitionError:
            assert self.run(self.engine.get(job_id)).state not in (State.FAILED, State.CANCELLED)

    @rule()
    def pause_or_resume(self) -> None:
        self.run(self.engine.resume(QUEUE) if self.paused else self.engine.pause(QUEUE))
        self.paused = not self.paused

    @rule(key=st.sampled_from(["a", "b"]))
    def submit_singleton(self, key: str) -> None:
        spec = JobSpec(type=QUEUE, max_attempts=MAX_ATTEMPTS, singleton_key=key, backoff=Backoff(jitter=0))
        try:
            [result] = self.run(self.engine.enqueue([spec])).results
        except SingletonConflictError as exc:
            assert self.singletons.get(str(exc.job_id)) == key
            return
        self.ids.append(result.job.id)
        self.singletons[result.job.id] = key

    @precondition(lambda self: self.tokens)
    @rule(data=st.data(), seconds=st.sampled_from([0, 5]))
    def sleep_current(self, data: st.DataObject, seconds: int) -> None:
        """A handler sleeps: delayed, its attempt given back, the sleep recorded as a step."""
        job_id = data.draw(st.sampled_from(sorted(self.tokens)))
        before = unpack_m(self.snapshot(job_id)["m"])
        outcome = Outcome(job_id=job_id, token=self.tokens[job_id][-1], status="sleep", retry_after=seconds)
        [result] = self.run(self.engine.finish([outcome.model_copy(update={"step": "nap"})]))
        if before["s"] == "active" and before["k"] == self.tokens[job_id][-1] and before.get("x") != "1":
            assert result.ok and result.state == State.DELAYED
            job = self.run(self.engine.get(job_id))
            assert job.attempts == int(before["a"]) - 1 and "nap" in job.steps

    @precondition(lambda self: self.tokens)
    @rule(data=st.data())
    def record_steps(self, data: st.DataObject) -> None:
        """A step with the newest token lands while the job is active; with any older one it never does."""
        job_id = data.draw(st.sampled_from(sorted(self.tokens)))
        tokens = self.tokens[job_id]
        name = data.draw(st.sampled_from(["s1", "s2"]))
        before = self.run(self.engine.get(job_id))
        for stale in tokens[:-1]:
            assert not self.run(self.engine.step(Lease(job_id=job_id, token=stale), name, '"stale"'))
        ok = self.run(self.engine.step(Lease(job_id=job_id, token=tokens[-1]), name, '"fresh"'))
        after = self.run(self.engine.get(job_id))
        assert ok == (before.state == State.ACTIVE)
        assert "stale" not in after.steps.values()
        expected = {**before.steps, name: before.steps.get(name, "fresh")} if ok else before.steps
        assert after.steps == expected

    # -- invariants ------------------------------------------------------------------------------

    @invariant()
    def a_singleton_key_has_one_live_job_and_is_held_only_by_it(self) -> None:
        held = as_fields(
            self.run(
                self.engine.store.command(
                    "HGETALL", self.engine.keys.queue(QUEUE).block()[BLOCK.index("dedup")]
                )
            )
        )
        live: dict[str, list[str]] = {}
        for job_id, key in self.singletons.items():
            m = unpack_m(self.snapshot(job_id)["m"])
            if m["s"] in ("queued", "active") and job_id not in self.rerun:
                live.setdefault(key, []).append(job_id)
        for key, holders in live.items():
            assert len(holders) == 1, (key, holders)
        holding = {split_id(holder)[0] for holders in live.values() for holder in holders}
        assert set(held.values()) == holding, (held, live)  # released on every way out

    @invariant()
    def every_job_in_exactly_one_index_agreeing_with_its_hash(self) -> None:
        queue = self.engine.keys.queue(QUEUE)
        where: dict[str, str] = {}
        indexes = {
            **{state: queue.state(state) for state in STATE_INDEXES},
            "waiting-children": queue.waiting_children(),
        }
        for state, key in indexes.items():
            members = self.run(self.engine.store.command("ZRANGE", key, 0, -1))
            for job_id in (public_id(unique, QUEUE) for unique in members or []):
                assert job_id not in where, f"{job_id} in {where[job_id]} and {state}"
                where[job_id] = state
        stats = self.run(self.engine.stats(QUEUE))
        assert sum(stats.counts.values()) == len(where) == len(self.ids)
        for state in indexes:
            assert stats.counts[State(state)] == sum(1 for s in where.values() if s == state)
        assert stats.counts[State.ACTIVE] <= CONCURRENCY
        for job_id in self.ids:
            fields = self.snapshot(job_id)
            m = unpack_m(fields["m"])
            shown = shown_state(m, round(self.clock() * 1000))
            index = where[job_id]
            if m["s"] == "queued":
                assert index in ("waiting", "delayed")
                assert shown is State.WAITING or index == "delayed"
            else:
                assert index == m["s"], (job_id, index, m)
            assert int(m["a"] or 0) <= MAX_ATTEMPTS

    @invariant()
    def no_child_is_orphaned(self) -> None:
        """Every child (and every dependency not already completed at submit) knows the job waiting on
        it, so its end reaches that job; a job waiting for children has some still to end and counts
        exactly those (so it neither waits forever nor runs early)."""
        jobs = {job.id: job for job in self.run(self.engine.get_many(self.ids))}
        for parent_id, children in self.waits_for.items():
            parent = jobs[parent_id]
            assert [*parent.children, *parent.depends_on] == children
            for child in children:
                linked = parent_id in [link.id for link in jobs[child].parents]
                assert linked or (child in parent.depends_on and jobs[child].state is State.COMPLETED)
            if parent.state is State.WAITING_CHILDREN:
                pending = [c for c in children if jobs[c].state not in TERMINAL_STATES]
                assert pending, f"{parent_id} waits for children that have all ended"
                assert parent.pending_children == len(pending), (parent_id, parent.pending_children, pending)

    @invariant()
    def only_the_newest_lease_is_live(self) -> None:
        """An active job's token is the last one issued: every older lease is stale (fenced)."""
        for job_id, tokens in self.tokens.items():
            m = unpack_m(self.snapshot(job_id)["m"])
            if m["s"] == "active":
                assert m["k"] == tokens[-1]

    def drain(self) -> None:
        """Keep claiming and completing (resumed, time moving): every job must reach a terminal state."""
        if self.paused:
            self.pause_or_resume()
        for _ in range(40):
            self.clock.advance(40)
            claimed = self.run(self.engine.claim(QUEUE, 100))
            outcomes = [Outcome(job_id=c.job.id, token=c.token, status="completed") for c in claimed]
            self.run(self.engine.finish(outcomes))
            counts = self.run(self.engine.stats(QUEUE)).counts  # one read, not one per job
            busy = (State.WAITING, State.DELAYED, State.ACTIVE, State.WAITING_CHILDREN)
            if not any(counts[state] for state in busy):
                return
        raise AssertionError(f"jobs never reached a terminal state: {counts}")


# The state machine runs on real Redis; the contract tests cover the embedded backend. About a minute
# alone, more under coverage on a loaded CI machine: a bound of its own rather than the suite's 120 s.
@pytest.mark.timeout(300)
@pytest.mark.parametrize("gateway", ["redis"], indirect=True)
def test_engine_state_machine(gateway: Any) -> None:

    settings_ = Settings(JOBQ_REDIS_REST_URL=gateway.url, JOBQ_REDIS_REST_TOKEN=gateway.token)

    class Machine(EngineMachine):
        make_client = staticmethod(lambda: make_redis(settings_))

    original_teardown = Machine.teardown

    def teardown(self: EngineMachine) -> None:
        try:
            self.drain()
        finally:
            original_teardown(self)

    Machine.teardown = teardown  # type: ignore[method-assign]
    run_state_machine_as_test(Machine, settings=BOUNDED)
