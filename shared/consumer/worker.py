"""A long-lived worker: runs in a loop, and between runs sleeps until work is due, it is woken, or a poll.

Idle cost: one `due()` read per poll. The poll interval starts at `idle_min` after work and doubles up to
`idle_max` (30 s by default: two commands a minute, about 86,000 a month), but a sleep never passes the
moment the due-index says a delayed job or a retry becomes ready, and `wake()` (the local push trigger, a
submit in the same process) ends it at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from shared.consumer.drain import Consumer
from shared.consumer.recorder import Tally
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
        self._woken = asyncio.Event()
        self.stats = WorkerStats()

    def stop(self) -> None:
        """Graceful stop: no more claims, running jobs get the grace period."""
        self._stop.set()
        self._woken.set()
        self.consumer.stop()

    def wake(self) -> None:
        """Work may be due now: a running drain re-reads the due-index, a sleeping worker polls at once."""
        self._woken.set()
        self.consumer.wake()

    async def run(self) -> WorkerStats:
        idle = self.idle_min
        while not self._stop.is_set():
            self._woken.clear()
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
            if report.next_due is not None:  # a delayed job or a retry becomes ready sooner
                pause = min(pause, max(0.0, report.next_due - self._wall()))
            await self._sleep(pause)
            idle = min(idle * 2, self.idle_max)
        return self.stats

    async def _sleep(self, seconds: float) -> None:
        try:
            async with asyncio.timeout(seconds):
                await self._woken.wait()
        except TimeoutError:
            pass
