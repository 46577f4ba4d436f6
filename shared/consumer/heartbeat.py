"""While jobs run: one `report` for everyone's progress and log lines, one `extend` for every lease running
out, at most once per `heartbeat_interval`. A job that ends within its timeout never needs an extension.

The replies carry cancellation requests and lost leases back to the running handlers (`ctx.cancelled`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from shared.context import JobContext
from shared.engine import Engine
from shared.errors import JobqError
from shared.models import ClaimedJob, Lease, LeaseStatus, ProgressUpdate

if TYPE_CHECKING:
    from shared.consumer.drain import ConsumerConfig

log = logging.getLogger("jobq.consumer")


@dataclass
class Slot:
    """One running job."""

    claimed: ClaimedJob
    ctx: JobContext
    lease_until: float  # wall-clock epoch seconds
    began: float = 0.0  # monotonic, when the handler started
    interrupted: bool = False  # cancelled by the shutdown grace running out
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def lease(self) -> Lease:
        return Lease(job_id=self.claimed.job.id, token=self.claimed.token)

    def fields(self) -> dict[str, object]:
        job = self.claimed.job
        return {"job_id": job.id, "queue": job.queue, "type": job.type, "attempt": job.attempts}


class Heartbeat:
    def __init__(
        self,
        engine: Engine,
        slots: dict[str, Slot],
        config: ConsumerConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._engine, self._slots, self._config = engine, slots, config
        self._clock, self._wall = clock, wall

    async def run_forever(self) -> None:
        while True:
            await asyncio.sleep(self._config.heartbeat_interval)  # the beat's period, not a wait for state
            if self._slots:
                await self.beat()

    async def beat(self) -> None:
        await self._report()
        await self._extend()

    async def _report(self) -> None:
        pending: list[tuple[Slot, ProgressUpdate]] = []
        for slot in list(self._slots.values()):
            if (update := slot.ctx.take_update()) is not None:
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

    async def _extend(self) -> None:
        now, horizon = self._wall(), 2 * self._config.heartbeat_interval + 1.0
        expiring = [s for s in list(self._slots.values()) if s.lease_until - now < horizon]
        if not expiring:
            return
        # The job's remaining time plus the engine's lease margin, and never less than the next beats.
        margin = max(self._engine.lease_margin, horizon)
        need = max(max(0.0, s.ctx.deadline - self._clock()) for s in expiring) + margin
        try:
            statuses = await self._engine.extend([s.lease for s in expiring], need)
        except JobqError as exc:
            log.warning("heartbeat failed, will retry: %s", exc)
            return
        for slot in expiring:
            slot.lease_until = now + need
        self._apply(statuses)

    def _apply(self, statuses: list[LeaseStatus]) -> None:
        for status in statuses:
            slot = self._slots.get(status.job_id)
            if slot is None:
                continue
            if not status.ok:
                slot.ctx.mark_cancelled(requested=False)
            elif status.cancel_requested:
                slot.ctx.mark_cancelled(requested=True)
