"""Slots of one consumer process: per queue (its policy), per job type, and for all handlers together.

A slot is taken when a job starts and given back when it ends, so a process claims only what it can start
at once (`free`) and never holds claimed jobs waiting. The limit on a queue across every process is the
claim script's (QueueOptions.concurrency); these are the per-process caps.
"""

from __future__ import annotations

import sys
from collections import Counter

from shared.registry import DEFAULT_CONCURRENCY, Registry  # the latter for a type this process lacks


class Limits:
    def __init__(self, registry: Registry, total: int | None = None) -> None:
        if total is not None and total < 1:
            raise ValueError("concurrency must be at least 1")
        self._registry = registry
        self.total = total
        self._by_queue: Counter[str] = Counter()
        self._by_type: Counter[str] = Counter()
        self.running = 0

    def of_type(self, name: str) -> int:
        return self._registry.get(name).concurrency if name in self._registry else DEFAULT_CONCURRENCY

    def free(self, queue: str) -> int:
        """How many more jobs of this queue may start here now."""
        room = self._registry.policy(queue).concurrency - self._by_queue[queue]
        return max(0, min(room, self.free_total()))

    def free_total(self) -> int:
        return self.total - self.running if self.total is not None else sys.maxsize

    def take(self, queue: str, job_type: str) -> bool:
        """Take a slot for a job about to start; False when its type (or the process) is full."""
        if self._by_type[job_type] >= self.of_type(job_type) or self.free(queue) < 1:
            return False
        self._by_queue[queue] += 1
        self._by_type[job_type] += 1
        self.running += 1
        return True

    def give(self, queue: str, job_type: str) -> None:
        self._by_queue[queue] -= 1
        self._by_type[job_type] -= 1
        self.running -= 1
