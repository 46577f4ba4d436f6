"""A long-running worker: the same drain in a loop, sleeping longer and longer while there is nothing due.

Idle cost: one `due()` read per sleep. The sleep starts at `idle_min` after work and doubles up to
`idle_max` (30 s by default: two commands a minute, about 86,000 a month), but never past the moment the
due-index says a delayed job becomes ready.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from shared.consumer.batch import Tally
from shared.consumer.drain import Consumer
from shared.errors import JobqError

log = logging.getLogger("jobq.worker")


@dataclass
class WorkerStats(Tally):
    drains: int = 0
    idle_polls: int = 0
    store_errors: int = 0


class Worker:
    def __init__(
        self,
        consumer: Consumer,
        *,
        idle_min: float = 0.5,
        idle_max: float = 30.0,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if not 0 < idle_min <= idle_max:
            raise ValueError("need 0 < idle_min <= idle_max")
        self.consumer = consumer
        self.idle_min, self.idle_max = idle_min, idle_max
        self._wall = wall
        self._stop = asyncio.Event()
        self.stats = WorkerStats()

    def stop(self) -> None:
        """Graceful stop: unstarted jobs are handed back at once, running ones get the grace period."""
        self._stop.set()
        self.consumer.stop()

    async def run(self) -> WorkerStats:
        idle = self.idle_min
        while not self._stop.is_set():
            try:
                report = await self.consumer.drain()
            except JobqError as exc:  # unreachable or erring store: back off and try again, never exit
                self.stats.store_errors += 1
                log.warning("store call failed, backing off: %s", exc)
                idle = min(idle * 2, self.idle_max)
                await self._sleep(idle)
                continue
            self.stats.drains += 1
            self.stats.add(report)
            if report.claimed:
                idle = self.idle_min
                continue
            self.stats.idle_polls += 1
            pause = idle
            if report.next_due is not None:  # a delayed job becomes ready sooner than the backoff
                pause = min(pause, max(0.05, report.next_due - self._wall()))
            await self._sleep(pause)
            idle = min(idle * 2, self.idle_max)
        return self.stats

    async def _sleep(self, seconds: float) -> None:
        try:
            async with asyncio.timeout(seconds):
                await self._stop.wait()
        except TimeoutError:
            pass
