"""The drain loop: read the due-index once, then serve every ready queue one batch per cycle until done.

Fairness: each cycle claims one batch from every ready queue (in a rotating order, so a global concurrency
limit does not always favour the same queue), so a busy queue cannot starve another; within a queue the
claim script takes higher priorities first. A queue stays in the next cycle only while its claims come back
full. An idle tick costs exactly one command: the `due()` read.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from shared.consumer.batch import Batch, BatchConfig, Tally
from shared.consumer.limits import Limits
from shared.engine import Engine
from shared.models import ClaimedJob
from shared.registry import Registry

log = logging.getLogger("jobq.consumer")

DEFAULT_TIMEOUT = 300.0  # JobSpec's default, for a queue no registered type names


@dataclass
class ConsumerConfig:
    batch_size: int = 100
    concurrency: int | None = None  # all handlers together in this process; None: per-type limits only
    queues: Sequence[str] | None = None  # serve only these; None: every queue the due-index lists
    finish_reserve: float = 2.0  # seconds kept for the final finish call when deciding what fits
    batch: BatchConfig = field(default_factory=BatchConfig)


@dataclass
class DrainReport(Tally):
    cycles: int = 0
    stopped: str = "empty"  # "empty", "budget" or "shutdown"
    next_due: float | None = None  # epoch seconds of the earliest queue not yet ready (for idle sleeps)


class Consumer:
    def __init__(
        self,
        engine: Engine,
        registry: Registry,
        config: ConsumerConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.engine, self.registry = engine, registry
        self.config = config or ConsumerConfig()
        if self.config.batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.limits = Limits(registry, self.config.concurrency)
        self._clock, self._wall = clock, wall
        self._stop = asyncio.Event()
        self._turn = 0

    def stop(self) -> None:
        """Ask a running drain to shut down: unstarted jobs go back at once, running ones get a grace."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def drain(self, budget: float = math.inf) -> DrainReport:
        deadline = self._clock() + budget
        report = DrainReport()
        ready = self._ready(await self.engine.due(), report)
        while ready:
            if self.stopping:
                report.stopped = "shutdown"
                break
            remaining = deadline - self._clock()
            fitting = [q for q in ready if self._lease_need(q) <= remaining]
            if not fitting:
                report.stopped = "budget"
                break
            claims = await self._claim_round(self._rotate(fitting))
            report.cycles += 1
            jobs = [job for _, batch, _ in claims for job in batch]
            if jobs:
                batch = Batch(
                    self.engine,
                    self.registry,
                    jobs,
                    limits=self.limits,
                    config=self.config.batch,
                    deadline=deadline - self.config.finish_reserve,
                    stop=self._stop,
                    clock=self._clock,
                    wall=self._wall,
                )
                report.add(await batch.run())
                handed_back = batch.released_queues
            else:
                handed_back = set()
            ready = [q for q, claimed, asked in claims if len(claimed) >= asked and q not in handed_back]
        if self.stopping:
            report.stopped = "shutdown"
        return report

    def _ready(self, due: dict[str, float], report: DrainReport) -> list[str]:
        now = self._wall()
        wanted = set(self.config.queues) if self.config.queues is not None else None
        ready: list[tuple[str, float]] = []
        later: list[tuple[str, float]] = []
        for queue, at in sorted(due.items()):
            if wanted is not None and queue not in wanted:
                continue
            (ready if at <= now else later).append((queue, at))
        report.next_due = min((at for _, at in later), default=None)
        return [queue for queue, _ in ready]

    def _lease_need(self, queue: str) -> float:
        """Seconds a job of this queue may need: the longest timeout of its types, plus the finish call."""
        timeouts = [t.timeout for t in self.registry.types() if t.queue == queue]
        return max(timeouts, default=DEFAULT_TIMEOUT) + self.config.finish_reserve

    def _rotate(self, queues: list[str]) -> list[str]:
        self._turn += 1
        start = self._turn % len(queues)
        return queues[start:] + queues[:start]

    async def _claim_round(self, queues: list[str]) -> list[tuple[str, list[ClaimedJob], int]]:
        """One claim per queue, sent concurrently; each asks for what this process can run at once."""
        share = None
        if self.config.concurrency is not None:
            share = max(1, self.config.concurrency // len(queues))
        asks = []
        for queue in queues:
            n = min(self.config.batch_size, self.limits.of_queue(queue))
            asks.append(min(n, share) if share is not None else n)
        replies = await asyncio.gather(
            *(self.engine.claim(q, n) for q, n in zip(queues, asks, strict=True)), return_exceptions=True
        )
        errors = [r for r in replies if isinstance(r, BaseException)]
        if len(errors) == len(replies):
            raise errors[0]
        rounds = []
        for queue, reply, asked in zip(queues, replies, asks, strict=True):
            if isinstance(reply, BaseException):  # the other queues' jobs are claimed: run them anyway
                log.warning("claim on %s failed: %s", queue, reply)
                reply = []
            rounds.append((queue, reply, asked))
        return rounds
