"""The consumer run: continuous slots over every ready queue, with claims and outcomes batched.

`Consumer(engine, registry, config).drain(budget)` is one run:
1. One `due()` read: which queues have work now, and when the others will.
2. For every ready queue, one claim for as many jobs as this process can start at once (after a short
   linger, so slots freed together are filled by one claim). Each job starts as soon as its claim returns.
3. When a handler ends, its slot is refilled by the next claim; no job waits for another's run time. Its
   outcome waits in the recorder (recorder.py) for one `finish` shared with others.
4. A heartbeat (heartbeat.py) sends progress and extends leases running out, one command each for all.
5. The run ends when nothing runs and nothing is due within `wait_due` ("empty"), when the budget leaves
   no room ("budget"), or on `stop()` ("shutdown"). `next_due` in the report says when work is due next.

A claim takes only jobs whose timeout fits in what is left of the budget, so a bounded (Lambda) run is never
cut mid-job by its own deadline; longer jobs wait for a run of a longer lane (shared/lanes.py).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from shared.callbacks import Deliveries
from shared.consumer import outcomes
from shared.consumer.execute import execute
from shared.consumer.heartbeat import Heartbeat, Slot
from shared.consumer.limits import Limits
from shared.consumer.recorder import Pending, Recorder, Tally
from shared.context import JobContext
from shared.engine import Engine
from shared.errors import JobqError
from shared.llmcache import ResponseCache
from shared.models import ClaimedJob, Lease, Outcome
from shared.registry import Registry
from shared.usage import UsageBook

log = logging.getLogger("jobq.consumer")

START_MARGIN = 0.25  # seconds of lease a claimed job must still have to be started (else handed back)


@dataclass
class ConsumerConfig:
    batch_size: int = 100  # the most jobs one claim takes
    concurrency: int | None = None  # all handlers together in this process; None: per-queue limits only
    queues: Sequence[str] | None = None  # serve only these; None: every queue the due-index lists
    lane: str | None = None  # the lane served (shared/lanes.py); None: every lane (a long-lived worker)
    linger: float = 0.002  # after a slot frees, wait this long for others before claiming
    flush_interval: float = 0.05  # an outcome waits at most this long for others to share its finish
    heartbeat_interval: float = 2.0  # progress, logs and lease extension, at most this often
    grace: float = 10.0  # on shutdown: how long running handlers may go on before they are interrupted
    finish_reserve: float = 2.0  # seconds of budget kept for the final finish call
    wait_due: float = 2.0  # a run with nothing to do waits for work due this soon instead of ending


@dataclass
class DrainReport(Tally):
    claims: int = 0  # claim calls sent
    stopped: str = "empty"  # "empty", "budget" or "shutdown"
    next_due: float | None = None  # epoch seconds of the earliest work not yet due (for wake-ups)


class Consumer:
    def __init__(
        self,
        engine: Engine,
        registry: Registry,
        config: ConsumerConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        usage: UsageBook | None = None,
    ) -> None:
        self.engine, self.registry = engine, registry
        # What handlers reach through their context: the response cache and the budgets.
        self.cache = ResponseCache(engine.store, engine.keys)
        self.usage = usage or UsageBook(engine.store, engine.keys)
        self.config = config or ConsumerConfig()
        if self.config.batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.limits = Limits(registry, self.config.concurrency)
        self.deliveries = Deliveries(engine, registry)  # runs the delivery jobs of callbacks and hooks
        self._clock, self._wall = clock, wall
        self._stop = asyncio.Event()
        self._run: _Run | None = None

    def stop(self) -> None:
        """Ask a running drain to shut down: it claims no more, running jobs get the grace period."""
        self._stop.set()
        if self._run is not None:
            self._run.changed.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def wake(self) -> None:
        """New work may be due (a submit, a push): a running drain re-reads the due-index."""
        if self._run is not None:
            self._run.due_stale = True
            self._run.changed.set()

    async def next_due(self) -> float | None:
        """When the earliest work this consumer serves is due (epoch seconds), from one due-index read."""
        due = await self.engine.due()
        wanted = self.config.queues
        return min((at for q, at in due.items() if wanted is None or q in wanted), default=None)

    async def drain(self, budget: float = math.inf) -> DrainReport:
        started = self._clock()
        run = _Run(self, started + budget)
        self._run = run
        try:
            report = await run.go()
        finally:
            self._run = None
        summary = (
            "consumer run: claimed %d, completed %d, failed %d, retried %d, slept %d, cancelled %d, "
            "handed back %d, lost %d in %.1f s (%d claims); stopped: %s"
        )
        level = logging.INFO if report.claimed or report.lost else logging.DEBUG
        log.log(
            level,
            summary,
            report.claimed,
            report.completed,
            report.failed,
            report.retried,
            report.slept,
            report.cancelled,
            report.released,
            report.lost,
            self._clock() - started,
            report.claims,
            report.stopped,
        )
        return report


class _Run:
    """One drain's state: running slots, queues ready to claim from, and when the others are due."""

    def __init__(self, consumer: Consumer, deadline: float) -> None:
        self.c = consumer
        self.config = consumer.config
        self.deadline = deadline
        self.report = DrainReport()
        self.recorder = Recorder(
            consumer.engine,
            self.report,
            flush_interval=self.config.flush_interval,
            flush_count=self.config.batch_size,
            clock=consumer._clock,
            wall=consumer._wall,
        )
        self.slots: dict[str, Slot] = {}
        self.heartbeat = Heartbeat(
            consumer.engine, self.slots, self.config, clock=consumer._clock, wall=consumer._wall
        )
        self.ready: dict[str, None] = {}  # queues to claim from now, in rotation order
        self.later: dict[str, float] = {}  # queue -> epoch seconds it has work next
        # Queues whose last claim brought a job its type had no slot for (a queue of several types):
        # not claimed from again until one of their jobs ends, so a claim never brings back the same.
        self.blocked: set[str] = set()
        self.changed = asyncio.Event()  # a slot freed, a wake, a stop
        self.due_stale = True  # read the due-index before the next claim
        self.recheck_at: float | None = None  # read it again then (a queue at its concurrency limit)
        self.limited_done = False  # a job of a limited queue, or a flow's child, ended: re-read due then
        self.budget_short = False  # a claim came back short because of the budget left
        self.freed = False  # a slot freed since the loop last waited
        self.error: JobqError | None = None  # the store failed every claim (or the first due read)
        self.fired_seen = consumer.engine.scheduler.fired
        self._turn = 0

    # The loop.

    async def go(self) -> DrainReport:
        beating = asyncio.create_task(self.heartbeat.run_forever())
        try:
            await self._loop()
            await self._shut_down()
        except asyncio.CancelledError:  # the drain itself is cancelled: leases expire, nothing more to do
            for slot in self.slots.values():
                if slot.task is not None:
                    slot.task.cancel()
            raise
        finally:
            beating.cancel()
        hard_stop = self.deadline + self.config.finish_reserve
        await self.recorder.flush_until(min(hard_stop, self._latest_lease_left()))
        self.report.next_due = min(self.later.values(), default=None)
        if self.ready or self.report.stopped == "budget":  # work left for a fresh run: wake at once
            self.report.next_due = self.c._wall()
        if self.error is not None and not self.report.claimed:
            raise self.error  # the store is down and nothing ran: let the caller back off
        return self.report

    async def _loop(self) -> None:
        while not self.c.stopping:
            self.changed.clear()
            if self.recheck_at is not None and self.recheck_at <= self.c._wall():
                self.recheck_at, self.due_stale = None, True
            if self.limited_done and not self.recorder.pending:  # its finish freed a slot: due again?
                self.limited_done, self.due_stale = False, True
            fired = self.c.engine.scheduler.fired  # a claim fired schedules: their next slots are news
            if self.due_stale or self.recorder.retries_scheduled or fired != self.fired_seen:
                self.due_stale = self.recorder.retries_scheduled = False
                self.fired_seen = fired
                await self._read_due()
            if self.error is not None and not self.slots:
                return
            self._promote_due()
            claimable = [q for q in self.ready if q not in self.blocked and self.c.limits.free(q) > 0]
            if claimable and self._budget_left() <= 0:
                self.report.stopped = "budget"
                self.ready.clear()
                claimable = []
            if claimable:
                await self._claim_round(claimable)
                continue
            send_at = self.recorder.send_at()
            if send_at is not None and send_at <= self.c._clock():
                await self.recorder.flush()
                continue
            if not self.slots:
                out_of_time = self.c._clock() >= self.deadline
                if out_of_time or (not self.recorder.pending and not self._worth_waiting()):
                    return
            self.freed = False
            await self._wait(self._next_wake())
            if self.freed and self.slots and not self.c.stopping:
                # Let slots freed together share one claim; with every slot free there is none to wait for.
                await asyncio.sleep(self.config.linger)

    def _worth_waiting(self) -> bool:
        """Nothing runs and nothing is ready: wait only for work due very soon and within the budget."""
        due = min([*self.later.values(), *([self.recheck_at] if self.recheck_at else [])], default=None)
        if due is None:
            return False
        wait = due - self.c._wall()
        return wait <= self.config.wait_due and self.c._clock() + wait < self.deadline

    def _next_wake(self) -> float | None:
        """Seconds until something is due: a queue's work, or the recorder's send time."""
        waits = []
        due = min([*self.later.values(), *([self.recheck_at] if self.recheck_at else [])], default=None)
        if due is not None:
            waits.append(due - self.c._wall())
        send_at = self.recorder.send_at()
        if send_at is not None:
            waits.append(send_at - self.c._clock())
        return max(0.0, min(waits)) if waits else None

    async def _wait(self, seconds: float | None) -> None:
        try:
            async with asyncio.timeout(seconds):
                await self.changed.wait()
        except TimeoutError:
            pass

    # The due-index.

    async def _read_due(self) -> None:
        try:
            due = await self.c.engine.due()
        except JobqError as exc:
            log.warning("due-index read failed: %s", exc)
            self.error = exc
            return
        self.error = None
        wanted = set(self.config.queues) if self.config.queues is not None else None
        now = self.c._wall()
        self.later = {}
        for queue, at in sorted(due.items()):
            if wanted is not None and queue not in wanted:
                continue
            if at <= now:
                self.ready.setdefault(queue, None)
            else:
                self.later[queue] = at

    def _promote_due(self) -> None:
        now = self.c._wall()
        for queue, at in list(self.later.items()):
            if at <= now:
                del self.later[queue]
                self.ready.setdefault(queue, None)

    # Claims.

    def _longest_fit(self, queue: str) -> float:
        """The longest timeout a fresh run of this lane could take from the queue."""
        lanes = self.c.engine.lanes
        lane_limit = lanes.limit(self.config.lane) if self.config.lane is not None else math.inf
        return min(self.c.registry.policy(queue).timeout, lane_limit)

    def _budget_left(self) -> float:
        return self.deadline - self.config.finish_reserve - self.c._clock()

    async def _claim_round(self, queues: list[str]) -> None:
        """One claim per claimable queue, the first carrying the waiting outcomes (one round trip)."""
        self._turn += 1
        start = self._turn % len(queues)
        queues = queues[start:] + queues[:start]
        total = self.c.limits.free_total()
        share = max(1, total // len(queues))
        asks = [min(self.config.batch_size, self.c.limits.free(q), share) for q in queues]
        left = self._budget_left()
        max_timeout = left if math.isfinite(left) else None
        # The waiting outcomes ride with the first claim (one round trip, Engine.finish_and_claim); hand-backs
        # and outcomes that could not go that way are flushed beside the claims.
        batch = self.recorder.take_outcomes() if self.recorder.outcomes_waiting else []
        calls = [self._refill(batch, queues[0], asks[0], max_timeout)]
        calls += [
            self.c.engine.claim(q, n, max_timeout=max_timeout, lane=self.config.lane)
            for q, n in zip(queues[1:], asks[1:], strict=True)
        ]
        flushing = self.recorder.pending
        replies = await asyncio.gather(
            *calls, *([self.recorder.flush()] if flushing else []), return_exceptions=True
        )
        self.report.claims += len(queues)
        failures = 0
        for queue, asked, reply in zip(queues, asks, replies, strict=False):
            if isinstance(reply, BaseException):
                if not isinstance(reply, JobqError):
                    raise reply
                failures += 1
                log.warning("claim on %s failed: %s", queue, reply)
                self.ready.pop(queue, None)
                continue
            assert isinstance(reply, list)
            for claimed in reply:
                self._start(claimed)
            if len(reply) < asked:  # the queue has nothing more for us now
                self.ready.pop(queue, None)
                if max_timeout is not None and max_timeout < self._longest_fit(queue):
                    self.budget_short = True  # its longer jobs may still wait for a fresh run
                if self.c.registry.policy(queue).options.limited:
                    # Short because the queue is at its limit across consumers? The due-index knows:
                    # a finish anywhere makes the queue due again. Look again shortly.
                    self.recheck_at = self.c._wall() + self.config.heartbeat_interval
        if flushing and isinstance(replies[-1], BaseException) and not isinstance(replies[-1], JobqError):
            raise replies[-1]
        if failures == len(queues) and not self.slots:
            self.error = next(r for r in replies if isinstance(r, JobqError))

    async def _refill(
        self, batch: list[Pending], queue: str, n: int, max_timeout: float | None
    ) -> list[ClaimedJob]:
        """A claim that carries the outcomes taken from the recorder, which learns what became of them."""
        if not batch:
            return await self.c.engine.claim(queue, n, max_timeout=max_timeout, lane=self.config.lane)
        outcomes = [pending.outcome for pending in batch]
        try:
            finished, claimed = await self.c.engine.finish_and_claim(
                outcomes, queue, n, max_timeout=max_timeout, lane=self.config.lane
            )
        except JobqError as exc:
            self.recorder.sent(batch, exc)
            raise
        self.recorder.sent(batch, finished)
        return claimed

    def _start(self, claimed: ClaimedJob) -> None:
        job, limits = claimed.job, self.c.limits
        self.report.claimed += 1
        lease = Lease(job_id=job.id, token=claimed.token)
        lease_until = claimed.lease_until.timestamp()
        fits = job.timeout <= self.deadline - self.c._clock()
        # A job whose lease is already (nearly) over, e.g. after the process was suspended, is handed
        # back rather than started: another consumer may already have reaped it.
        started = lease_until - self.c._wall() >= START_MARGIN and fits and limits.take(job.queue, job.type)
        if not started:
            self.recorder.hand_back(lease, lease_until)
            self.blocked.add(job.queue)
            return
        record_step = functools.partial(self.c.engine.step, lease)
        ctx = JobContext(
            claimed,
            clock=self.c._clock,
            wall=self.c._wall,
            record_step=record_step,
            children=self.c.engine.children,
            cache=self.c.cache,
            usage_book=self.c.usage,
        )
        ctx.deadline = min(self.c._clock() + job.timeout, self.deadline)
        slot = Slot(claimed, ctx, lease_until=lease_until)
        self.slots[job.id] = slot
        if log.isEnabledFor(logging.DEBUG):
            log.debug("job claimed", extra=slot.fields())
        slot.task = asyncio.create_task(self._run_one(slot))

    async def _run_one(self, slot: Slot) -> None:
        job = slot.claimed.job
        slot.began = self.c._clock()
        try:
            if slot.ctx.cancel_requested:
                outcome = outcomes.cancelled(job.id, slot.claimed.token, job.attempts)
            else:
                outcome = await execute(self.c.registry, slot.claimed, slot.ctx, self.c.deliveries.job_type)
        except asyncio.CancelledError:
            if not slot.interrupted:
                raise
            outcome = outcomes.interrupted(job.id, slot.claimed.token, job.attempts)
        finally:
            self.c.limits.give(job.queue, job.type)
            self.blocked.discard(job.queue)
            del self.slots[job.id]
            self.freed = True
            self.changed.set()
        self._record(slot, outcome)

    def _record(self, slot: Slot, outcome: Outcome) -> None:
        update = slot.ctx.take_update()
        if update is not None:  # the last progress and lines travel with the outcome
            outcome.progress, outcome.logs = update.progress, update.logs
        outcome.usage, outcome.cache = slot.ctx.usage, slot.ctx.cache_outcome
        fields: dict[str, object] = {}
        if log.isEnabledFor(logging.DEBUG):  # for the per-job line only
            fields = {**slot.fields(), "duration_ms": round((self.c._clock() - slot.began) * 1000, 1)}
        self.recorder.add(Pending(outcome, lease_until=slot.lease_until, fields=fields))
        # A limited queue's finish frees a slot; a flow child's may release the job waiting on it: either
        # makes work due that the due-index read before did not show.
        if slot.claimed.job.parents or self.c.registry.policy(slot.claimed.job.queue).options.limited:
            self.limited_done = True
        self.changed.set()

    # Shutdown: no more claims; running handlers get the grace period, then are interrupted.

    async def _shut_down(self) -> None:
        if self.c.stopping:
            self.report.stopped = "shutdown"
        elif self.budget_short:
            self.report.stopped = "budget"
        running = [s.task for s in self.slots.values() if s.task is not None]
        if not running:
            return
        if self.recorder.pending:  # hand-backs and known outcomes go now, not after the grace
            await self.recorder.flush()
        _, late = await asyncio.wait(running, timeout=self.config.grace if self.c.stopping else None)
        for slot in list(self.slots.values()):
            if slot.task in late:
                slot.interrupted = True
                slot.task.cancel()
        if late:
            await asyncio.wait(late)

    def _latest_lease_left(self) -> float:
        """Monotonic time until which re-sending the final outcomes is still worth it."""
        latest = self.recorder.latest_lease()
        return self.c._clock() + (latest - self.c._wall() if latest is not None else 0.0)
