"""The per-operation command table of docs/redis-schema.md, counted: every row is measured on a real Redis
(INFO commandstats: inner script calls included, what Upstash bills) through the gateway, and must match.

A row's operation names a measurement below; the table is read from the document, so the document cannot
drift from the engine. Each figure is the fewest over a few tries: INFO commandstats is server-wide, and
another client of the same Redis can only add to a reading.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from functions.api.auth import Principal
from functions.api.ratelimit import SubmitLimiter
from functions.api.sse import OwnerFeed, StreamCursor, Watch
from shared.engine import Engine
from shared.llmcache import ResponseCache
from shared.models import ClaimedJob, Debounce, JobSpec, Lease, Outcome, Usage
from shared.schedules import ScheduleSpec
from shared.usage import Budget, UsageBook
from tests.support.billing import measure_billed
from tests.support.engine_fixtures import EngineFactory

DOC = Path(__file__).parents[2] / "docs" / "redis-schema.md"
TABLE = re.compile(r"<!-- commands table: begin -->(.*?)<!-- commands table: end -->", re.DOTALL)
ROW = re.compile(r"^\| (?P<op>[^|]+?) \| (?P<count>\d+) \|", re.MULTILINE)
PAYLOAD = {"data": "x" * 188}  # about 200 bytes of JSON


def table() -> dict[str, int]:
    match = TABLE.search(DOC.read_text())
    assert match, "docs/redis-schema.md has no commands table"
    return {row["op"]: int(row["count"]) for row in ROW.finditer(match.group(1))}


CALLBACK = "https://hooks.example.com/jobs"


def specs(
    n: int, queue: str = "echo", owner: str = "alice", callback_url: str | None = None
) -> list[JobSpec]:
    return [
        JobSpec(type="echo", queue=queue, payload=PAYLOAD, owner=owner, callback_url=callback_url)
        for _ in range(n)
    ]


def nightly() -> ScheduleSpec:
    """A schedule of queue "sched" (its own, so its firings meet no other job) every minute."""
    return ScheduleSpec(
        job=JobSpec(type="echo", queue="sched", payload=PAYLOAD, owner="alice"), every_seconds=60
    )


def done(claimed: list[ClaimedJob]) -> list[Outcome]:
    return [Outcome(job_id=c.job.id, token=c.token, status="completed") for c in claimed]


def used(claimed: list[ClaimedJob]) -> list[Outcome]:
    """Completed outcomes that carry usage (ctx.record_usage)."""
    usage = Usage(input_tokens=120, output_tokens=30, cost=0.0001, model="m")
    return [Outcome(job_id=c.job.id, token=c.token, status="completed", usage=usage) for c in claimed]


class Ops:
    """One measurement per row: `setup` brings the queue to the row's starting point (not counted)."""

    def __init__(self, engine: Engine, limiter: SubmitLimiter, past: Engine) -> None:
        self.engine, self.limiter = engine, limiter
        self.past = past  # the same store an hour behind: the schedules it creates are due now
        # A still clock: the list of queues a budget check reads is the one of its first run (1 queue).
        self.book = UsageBook(engine.store, engine.keys, budget_ttl=0, clock=lambda: 0.0)
        self.cache = ResponseCache(engine.store, engine.keys)
        self.claimed: list[ClaimedJob] = []
        self.waiting_id = ""
        self.schedule_id = ""
        self.keys = 0  # debounce keys used (a new key per measurement)
        self.feed = OwnerFeed(engine, Watch(owner="alice"), StreamCursor(base=0))

    async def drain(self) -> None:
        for queue in ("flow-children", "flow-parents", "echo", "sched"):
            while claimed := await self.engine.claim(queue, 1000):
                await self.engine.finish(done(claimed))

    async def flow(self, children: int) -> None:
        """A parent (queue flow-parents) whose `children` wait in another queue (flow-children)."""
        await self.drain()
        kids = [JobSpec(type="echo", queue="flow-children", payload=PAYLOAD, owner="alice")] * children
        root = JobSpec(type="echo", queue="flow-parents", payload=PAYLOAD, owner="alice", children=kids)
        self.waiting_id = (await self.engine.enqueue([root])).results[0].job.id

    async def flow_running(self, children: int) -> None:
        await self.flow(children)
        self.claimed = await self.engine.claim("flow-children", children)
        assert len(self.claimed) == children

    def rows(self) -> dict[str, tuple[Callable[[], Awaitable[Any]], Callable[[], Awaitable[Any]]]]:
        e = self.engine

        async def nothing() -> None:
            return None

        async def claim(n: int) -> None:
            self.claimed = await e.claim("echo", n)
            assert len(self.claimed) == n

        async def cycle() -> None:
            _, self.claimed = await e.finish_and_claim(done(self.claimed), "echo", 1)
            assert len(self.claimed) == 1

        async def queued(n: int) -> None:
            await self.drain()
            await e.enqueue(specs(n))

        async def claimed(n: int) -> None:
            await queued(n)
            await claim(n)

        async def one_waiting(callback_url: str | None = None) -> None:
            await queued(1)
            self.waiting_id = (await e.enqueue(specs(1, callback_url=callback_url))).results[0].job.id

        async def claimed_with_callback() -> None:
            await self.drain()
            await e.enqueue(specs(1, callback_url=CALLBACK))
            await claim(1)

        async def schedules(n: int) -> None:
            while len(await e.scheduler.of_owner("alice")) < n:
                await e.scheduler.create(nightly())

        async def due_schedule() -> None:
            await self.drain()
            await self.past.scheduler.create(nightly())

        async def fire() -> None:
            self.claimed = await e.claim("sched", 10)
            assert len(self.claimed) == 1

        async def to_delete() -> None:
            self.schedule_id = (await e.scheduler.create(nightly())).id

        async def budgeted() -> None:
            await self.book.set_budget("bob", Budget(period="day", tokens=10**9))

        today = datetime.now(UTC).date()

        # Workflow rows run on queues of their own ("wf", "deb"), so the jobs they leave delayed change
        # no other row's starting point.
        async def one_claimed(**spec: Any) -> None:
            while finished := await e.claim("wf", 1000):
                await e.finish(done(finished))
            await e.enqueue([JobSpec(type="echo", queue="wf", payload=PAYLOAD, owner="alice", **spec)])
            self.claimed = await e.claim("wf", 1)

        def lease() -> Lease:
            return Lease(job_id=self.claimed[0].job.id, token=self.claimed[0].token)

        def sleep() -> list[Outcome]:
            c = self.claimed[0]
            return [Outcome(job_id=c.job.id, token=c.token, status="sleep", retry_after=0.0, step="nap")]

        def single() -> list[JobSpec]:
            return [JobSpec(type="echo", queue="wf", payload=PAYLOAD, owner="alice", singleton_key="one")]

        def debounced(key: str) -> list[JobSpec]:
            window = Debounce(key=key, seconds=3600)
            return [JobSpec(type="echo", queue="deb", payload=PAYLOAD, owner="alice", debounce=window)]

        def new_key() -> list[JobSpec]:
            self.keys += 1
            return debounced(f"k{self.keys}")

        async def drain_wf() -> None:
            await one_claimed()
            await e.finish(done(self.claimed))

        async def caught_up(owner: str | None = None) -> None:
            """alice's event stream read to its end; then `owner`'s 100 jobs submitted (not counted)."""
            while await self.feed.cursor.read(e, ["echo"]):
                pass
            if owner is not None:
                await e.enqueue(specs(100, owner=owner))

        async def poll(changed: int) -> None:
            assert len(await self.feed.poll(["echo"])) == changed

        who = Principal(owner="alice", admin=False, credential="key:table")
        return {
            "submit 1 job to an idle queue": (self.drain, lambda: e.enqueue(specs(1))),
            "submit 1 job to a queue with jobs waiting": (lambda: queued(1), lambda: e.enqueue(specs(1))),
            "submit 100 jobs in one call": (self.drain, lambda: e.enqueue(specs(100))),
            "claim 1 job": (lambda: queued(1), lambda: claim(1)),
            "claim 100 jobs": (lambda: queued(100), lambda: claim(100)),
            "finish 1 job": (lambda: claimed(1), lambda: e.finish(done(self.claimed))),
            "finish 100 jobs": (lambda: claimed(100), lambda: e.finish(done(self.claimed))),
            "finish 1 job and claim the next (cycle)": (lambda: self._two(claimed), cycle),
            "claim from a queue with nothing due": (self.drain, lambda: e.claim("echo", 100)),
            "tick: due times of every queue": (nothing, e.due),
            "status read of a job": (nothing, lambda: e.get(self.claimed[0].job.id)),
            "stats of one queue": (nothing, lambda: e.stats("echo")),
            "cancel a waiting job": (one_waiting, lambda: e.cancel(self.waiting_id)),
            "finish 1 job with a callback": (claimed_with_callback, lambda: e.finish(done(self.claimed))),
            "cancel a waiting job with a callback": (
                lambda: one_waiting(CALLBACK),
                lambda: e.cancel(self.waiting_id),
            ),
            "rate limit check of a submit": (nothing, lambda: self.limiter.check(who)),
            "finish 1 job with usage": (lambda: claimed(1), lambda: e.finish(used(self.claimed))),
            "finish 100 jobs with usage": (lambda: claimed(100), lambda: e.finish(used(self.claimed))),
            "response cache read": (nothing, lambda: self.cache.get("echo", "alice", "h")),
            "response cache write": (nothing, lambda: self.cache.put("echo", "alice", "h", {"a": 1}, 60)),
            "budget check, no budget": (nothing, lambda: self.book.check("alice")),
            "budget check, a budget (1 queue)": (budgeted, lambda: self.book.check("bob")),
            "usage report, 1 queue, 1 month": (
                nothing,
                lambda: self.book.report("alice", today.replace(day=1), today, ["echo"]),
            ),
            "create a schedule (6 queues: a ZCARD each)": (nothing, lambda: e.scheduler.create(nightly())),
            "tick with 10 schedules between firings": (lambda: schedules(10), e.due),
            "fire a due schedule, then claim its job": (due_schedule, fire),
            "delete a schedule": (to_delete, lambda: e.scheduler.delete(self.schedule_id)),
            "submit a flow: a parent and 3 children, in 2 queues": (self.drain, self._submit_flow),
            "finish 1 flow child (its parent still waits)": (
                lambda: self.flow_running(3),
                lambda: e.finish(done(self.claimed[:1])),
            ),
            "finish the last child of a flow (its parent becomes waiting)": (
                lambda: self.flow_running(1),
                lambda: e.finish(done(self.claimed)),
            ),
            "cancel a flow's parent and its 3 waiting children": (
                lambda: self.flow(3),
                lambda: e.cancel(self.waiting_id),
            ),
            "submit 1 job that depends on a waiting job": (
                one_waiting,
                lambda: e.enqueue(
                    [JobSpec(type="echo", payload=PAYLOAD, owner="alice", depends_on=[self.waiting_id])]
                ),
            ),
            "record a durable step": (one_claimed, lambda: e.step(lease(), "step", '"done"')),
            "finish 1 job that sleeps": (one_claimed, lambda: e.finish(sleep())),
            "submit 1 job with a singleton key": (drain_wf, lambda: e.enqueue(single())),
            "finish 1 job holding a singleton key": (
                lambda: one_claimed(singleton_key="one"),
                lambda: e.finish(done(self.claimed)),
            ),
            "submit 1 debounced job (a new key)": (nothing, lambda: e.enqueue(new_key())),
            "submit 1 debounced job joining a waiting one": (
                lambda: e.enqueue(debounced("same")),
                lambda: e.enqueue(debounced("same")),
            ),
            "owner event stream poll: nothing new": (caught_up, lambda: poll(0)),
            "owner event stream poll: 100 of the owner's jobs changed": (
                lambda: caught_up("alice"),
                lambda: poll(100),
            ),
            "owner event stream poll: 100 other owners' jobs changed": (
                lambda: caught_up("bob"),
                lambda: poll(0),
            ),
        }

    async def _submit_flow(self) -> None:
        kids = [JobSpec(type="echo", queue="flow-children", payload=PAYLOAD, owner="alice")] * 3
        root = JobSpec(type="echo", queue="flow-parents", payload=PAYLOAD, owner="alice", children=kids)
        await self.engine.enqueue([root])

    async def _two(self, claimed: Callable[[int], Awaitable[None]]) -> None:
        """One job claimed and one waiting: the cycle finishes the first and takes the second."""
        await claimed(1)
        await self.engine.enqueue(specs(1))


@pytest.mark.parametrize("gateway", ["redis"], indirect=True)
async def test_the_documented_command_table_is_what_redis_counts(
    engine_factory: EngineFactory, gateway: Any
) -> None:
    engine = engine_factory()
    limiter = SubmitLimiter(engine.store, engine.keys.rate_limits(), "100000/hour")
    ops = Ops(engine, limiter, engine_factory(clock=lambda: time.time() - 3600))
    for setup, run in ops.rows().values():  # load every script and the queue list first
        await setup()
        await run()
    measured = {}
    for name, (setup, run) in ops.rows().items():
        readings = []
        for _ in range(3):
            await setup()
            async with measure_billed(gateway.redis_url) as billed:
                await run()
            assert billed.count is not None
            readings.append(billed.count)
        measured[name] = min(readings)
    assert measured == table()
