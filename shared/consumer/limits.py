"""Concurrency limits inside one consumer process: per job type, and optionally for all handlers together."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from shared.registry import Registry

DEFAULT_CONCURRENCY = 10  # for a type this process does not know (its job then fails as unknown)


class Limits:
    def __init__(self, registry: Registry, total: int | None = None) -> None:
        if total is not None and total < 1:
            raise ValueError("concurrency must be at least 1")
        self._registry = registry
        self.total = total
        self._all = asyncio.Semaphore(total) if total is not None else None
        self._per_type: dict[str, asyncio.Semaphore] = {}

    def of_type(self, name: str) -> int:
        return self._registry.get(name).concurrency if name in self._registry else DEFAULT_CONCURRENCY

    def of_queue(self, queue: str) -> int:
        """How many jobs of this queue may run at once here: the sum over the types that name it."""
        limits = [t.concurrency for t in self._registry.types() if t.queue == queue]
        capacity = sum(limits) if limits else DEFAULT_CONCURRENCY
        return min(capacity, self.total) if self.total is not None else capacity

    @asynccontextmanager
    async def slot(self, job_type: str) -> AsyncIterator[None]:
        semaphore = self._per_type.get(job_type)
        if semaphore is None:
            semaphore = self._per_type[job_type] = asyncio.Semaphore(self.of_type(job_type))
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(semaphore)
            if self._all is not None:
                await stack.enter_async_context(self._all)
            yield
