"""Run one batch of claimed jobs: handlers concurrently within limits, one command per flush/heartbeat/finish.

Commands a batch costs: nothing while it runs unless a flush is due (one `report` for the whole batch's
progress and logs, one `extend` for every lease that is running out, one `finish` for outcomes already
known), then one `finish` at the end. A batch that ends within its first flush interval costs one command.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from shared.consumer import outcomes
from shared.consumer.limits import Limits
from shared.context import JobContext
from shared.engine import Engine
from shared.errors import JobqError, UnknownJobTypeError, ValidationError
from shared.models import ClaimedJob, FinishResult, Lease, LeaseStatus, Outcome, ProgressUpdate, State
from shared.registry import Registry
from shared.store import retrying

log = logging.getLogger("jobq.consumer")


@dataclass
class BatchConfig:
    flush_interval: float = 2.0  # progress/log flush, heartbeat check and early finish, at most this often
    lease_margin: float = 30.0  # added to a job's remaining need when its lease is extended
    grace: float = 10.0  # on shutdown: how long running handlers may go on before they are interrupted


@dataclass
class Tally:
    claimed: int = 0
    completed: int = 0
    failed: int = 0
    retried: int = 0
    cancelled: int = 0
    released: int = 0
    lost: int = 0  # outcomes the engine refused: the lease had expired or been taken over

    def count(self, results: list[FinishResult]) -> None:
        for result in results:
            if not result.ok:
                self.lost += 1
            elif result.state == State.COMPLETED:
                self.completed += 1
            elif result.state == State.FAILED:
                self.failed += 1
            elif result.state == State.CANCELLED:
                self.cancelled += 1
            else:  # back to delayed or waiting
                self.retried += 1

    def add(self, other: Tally) -> None:
        for name in Tally.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class Slot:
    claimed: ClaimedJob
    ctx: JobContext
    lease_until: float  # wall-clock epoch seconds
    started: bool = False
    done: bool = False
    interrupted: bool = False
    began: float = 0.0  # monotonic, when the handler started
    ran: float | None = None  # seconds the handler ran, once its outcome is recorded (for the log)
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def lease(self) -> Lease:
        return Lease(job_id=self.claimed.job.id, token=self.claimed.token)


class Batch:
    def __init__(
        self,
        engine: Engine,
        registry: Registry,
        claimed: list[ClaimedJob],
        *,
        limits: Limits,
        config: BatchConfig,
        deadline: float,
        stop: asyncio.Event,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._engine, self._registry, self._limits, self._config = engine, registry, limits, config
        self._deadline, self._stop, self._clock, self._wall = deadline, stop, clock, wall
        self._slots = [
            Slot(c, JobContext(c, clock=clock), lease_until=c.lease_until.timestamp()) for c in claimed
        ]
        self._outcomes: list[Outcome] = []
        self._to_release: list[Lease] = []
        self._shutting_down = False
        self._closing = asyncio.Event()  # ends the ticker between ticks, never in the middle of a call
        self.released_queues: set[str] = set()  # queues with jobs handed back: not worth a new claim now
        self.tally = Tally(claimed=len(claimed))

    async def run(self) -> Tally:
        for slot in self._slots:
            log.info("job claimed", extra=_job_fields(slot))
            slot.task = asyncio.create_task(self._run_one(slot))
        tasks = [slot.task for slot in self._slots if slot.task is not None]
        ticker = asyncio.create_task(self._tick_forever())
        stopping: asyncio.Future[Any] = asyncio.create_task(self._wait_stop())
        try:
            all_done: asyncio.Future[Any] = asyncio.gather(*tasks)
            await asyncio.wait([all_done, stopping], return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not all_done.done():
                await self._shut_down()
            await all_done
        except asyncio.CancelledError:  # the drain itself is cancelled: leases expire, nothing more to do
            for task in (*tasks, ticker, stopping):
                task.cancel()
            raise
        self._closing.set()
        await ticker
        await self._release()
        await self._finish(final=True)
        return self.tally

    # One job.

    async def _run_one(self, slot: Slot) -> None:
        job = slot.claimed.job
        try:
            async with self._limits.slot(job.type):
                # A job whose timeout no longer fits in the budget goes back now rather than run over it.
                if self._shutting_down or self._stop.is_set() or self._clock() + job.timeout > self._deadline:
                    self._hand_back(slot)
                    return
                slot.started, slot.began = True, self._clock()
                if slot.ctx.cancel_requested:  # seen at a heartbeat while it waited: never start it
                    outcome = outcomes.cancelled(job.id, slot.claimed.token, job.attempts)
                else:
                    outcome = await self._execute(slot)
        except asyncio.CancelledError:
            if slot.started and not slot.interrupted:
                raise
            if not slot.started:  # cancelled while waiting for a concurrency slot: hand it back
                self._hand_back(slot)
                return
            outcome = outcomes.interrupted(job.id, slot.claimed.token, job.attempts)
        slot.done = True
        self._record(slot, outcome)

    async def _execute(self, slot: Slot) -> Outcome:
        job, token, ctx = slot.claimed.job, slot.claimed.token, slot.ctx
        try:
            job_type = self._registry.get(job.type)
            payload: BaseModel = job_type.parse(job.payload)
        except (UnknownJobTypeError, ValidationError) as exc:
            return outcomes.permanent(job.id, token, f"{exc.field}: {exc.message}", job.attempts)
        ctx.deadline = min(self._clock() + job.timeout, self._deadline)
        result: Any = None
        try:
            async with asyncio.timeout(job.timeout) as scope:
                result = await job_type.handler(payload, ctx)
        except TimeoutError as exc:
            if scope.expired():
                return outcomes.timed_out(job.id, token, job.timeout, job.attempts)
            return outcomes.from_error(job.id, token, exc, job.attempts)
        except asyncio.CancelledError as exc:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # we are being cancelled (shutdown past the grace, or the drain itself)
            # A cancellation raised by the handler's own code is its failure, not ours.
            return outcomes.from_error(job.id, token, exc, job.attempts)
        except Exception as exc:  # a handler's failure is data for the engine, never a crash of the batch
            if ctx.cancel_requested:
                return outcomes.cancelled(job.id, token, job.attempts)
            return outcomes.from_error(job.id, token, exc, job.attempts)
        if ctx.cancel_requested:
            return outcomes.cancelled(job.id, token, job.attempts)
        return outcomes.completed(job.id, token, result, job.attempts)

    def _hand_back(self, slot: Slot) -> None:
        slot.done = True
        self._to_release.append(slot.lease)
        self.released_queues.add(slot.claimed.job.queue)

    def _record(self, slot: Slot, outcome: Outcome) -> None:
        if slot.started:
            slot.ran = self._clock() - slot.began
        update = slot.ctx.take_update()
        if update is not None:  # the last progress and lines travel with the outcome
            outcome.progress, outcome.logs = update.progress, update.logs
        self._outcomes.append(outcome)

    # Shutdown: hand back what has not started at once, give running handlers a grace period.

    async def _wait_stop(self) -> None:
        try:
            left = self._deadline - self._clock()
            async with asyncio.timeout(max(0.0, left) if math.isfinite(left) else None):
                await self._stop.wait()
        except TimeoutError:
            pass

    async def _shut_down(self) -> None:
        self._shutting_down = True
        waiting = [s for s in self._slots if not s.started and not s.done and s.task is not None]
        for slot in waiting:
            assert slot.task is not None
            slot.task.cancel()
        await asyncio.gather(*(s.task for s in waiting if s.task), return_exceptions=True)
        await self._release()
        running = [s.task for s in self._slots if s.started and not s.done and s.task is not None]
        if running:
            _, late = await asyncio.wait(running, timeout=self._config.grace)
            for slot in self._slots:
                if slot.task in late:
                    slot.interrupted = True
                    slot.task.cancel()

    async def _release(self) -> None:
        leases, self._to_release = self._to_release, []
        if not leases:
            return
        try:
            results = await retrying(lambda: self._engine.release(leases))
        except JobqError as exc:
            log.warning("release of %d jobs failed (their leases will expire): %s", len(leases), exc)
            return
        self.tally.released += sum(1 for r in results if r.ok)

    # Periodic work: one report, one extend and one finish at most per tick, each for the whole batch.

    async def _tick_forever(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self._config.flush_interval):
                    await self._closing.wait()
                return
            except TimeoutError:
                pass
            await self._flush()
            await self._heartbeat()
            await self._finish(final=False)

    async def _flush(self) -> None:
        pending: list[tuple[Slot, ProgressUpdate]] = []
        for slot in self._slots:
            if slot.started and not slot.done and (update := slot.ctx.take_update()) is not None:
                pending.append((slot, update))
        if not pending:
            return
        try:
            statuses = await self._engine.report([update for _, update in pending])
        except JobqError as exc:
            log.warning("progress flush failed, will retry: %s", exc)
            for slot, update in pending:
                slot.ctx.restore(update)
            return
        self._apply(statuses)

    async def _heartbeat(self) -> None:
        now, horizon = self._wall(), 2 * self._config.flush_interval + 1.0
        expiring = [s for s in self._slots if not s.done and s.lease_until - now < horizon]
        if not expiring:
            return
        need = max(self._need(slot) for slot in expiring) + self._config.lease_margin
        try:
            statuses = await self._engine.extend([s.lease for s in expiring], need)
        except JobqError as exc:
            log.warning("heartbeat failed, will retry: %s", exc)
            return
        for slot in expiring:
            slot.lease_until = now + need
        self._apply(statuses)

    def _need(self, slot: Slot) -> float:
        """Seconds the job may still run: its whole timeout if not started yet."""
        if slot.started:
            return max(0.0, slot.ctx.deadline - self._clock())
        return slot.claimed.job.timeout

    def _apply(self, statuses: list[LeaseStatus]) -> None:
        by_id = {slot.claimed.job.id: slot for slot in self._slots}
        for status in statuses:
            slot = by_id.get(status.job_id)
            if slot is None:
                continue
            if not status.ok:
                slot.ctx.mark_cancelled(requested=False)
            elif status.cancel_requested:
                slot.ctx.mark_cancelled(requested=True)

    async def _finish(self, *, final: bool) -> None:
        ready, self._outcomes = self._outcomes, []
        if not ready:
            return
        try:
            # finish is idempotent and fenced, so the final call may be re-sent; a tick's call waits for
            # the next tick instead.
            results = await (
                retrying(lambda: self._engine.finish(ready)) if final else self._engine.finish(ready)
            )
        except JobqError as exc:
            if not final:
                self._outcomes = ready + self._outcomes
                return
            log.error("finish of %d outcomes failed; their leases will expire: %s", len(ready), exc)
            return
        self.tally.count(results)
        self._log_outcomes(ready, results)

    def _log_outcomes(self, sent: list[Outcome], results: list[FinishResult]) -> None:
        """One line per recorded outcome: ids, queue, attempt, duration, state; never payload or result."""
        by_id = {slot.claimed.job.id: slot for slot in self._slots}
        for outcome, result in zip(sent, results, strict=True):
            slot = by_id[outcome.job_id]
            fields = _job_fields(slot)
            fields["status"] = outcome.status
            if slot.ran is not None:
                fields["duration_ms"] = round(slot.ran * 1000, 1)
            if not result.ok:
                log.warning("job lease lost", extra=fields)  # expired and re-claimed, or cancelled
                continue
            fields["state"] = result.state.value if result.state else None
            if outcome.error is not None:
                fields["error"] = outcome.error.kind.value  # the message stays in the job record
            if outcome.status in ("failed", "retry"):
                log.warning("job failed", extra=fields)
            else:
                log.info("job finished", extra=fields)


def _job_fields(slot: Slot) -> dict[str, object]:
    job = slot.claimed.job
    return {"job_id": job.id, "queue": job.queue, "type": job.type, "attempt": job.attempts}
