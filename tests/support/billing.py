"""Count the commands a Redis server executed during a block, from `INFO commandstats`.

    with measure_billed(redis_url) as billed:          # or: async with measure_billed(redis_url) as billed:
        ...                                             # work through the gateway
    assert billed.count == 7

`billed.count` is the sum of `calls` over every `cmdstat_*` line after the block minus before it,
minus the one INFO that took the first reading (Redis updates a command's stats after it runs, so the
closing INFO is not in its own reading). Commands that scripts run with `redis.call` are included (Redis
counts them in commandstats next to the EVAL/EVALSHA itself), and so are MULTI and EXEC around a
transaction. Commands rejected before running (unknown command, wrong arity) are not counted here.

The count is server-wide: every client of that Redis is included, so measure on a Redis no one else
uses during the block (for example a private `redis-server` on a spare port) when it must be exact.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

import redis


def total_calls(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return sum(int(entry["calls"]) for name, entry in stats.items() if name.startswith("cmdstat_"))


class measure_billed:  # noqa: N801  (used like a function, as `with measure_billed(url) as billed`)
    """Context manager (sync or async) whose `.count` is the number of commands Redis ran inside it."""

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self.count: int | None = None
        self._before = 0
        self._client: redis.Redis | None = None

    def _start(self) -> measure_billed:
        # One connection opened (and its handshake done) before the first reading, so it adds nothing later.
        self._client = redis.Redis.from_url(self.redis_url, single_connection_client=True, socket_timeout=10)
        self._before = total_calls(self._client)
        return self

    def _finish(self) -> None:
        assert self._client is not None
        try:
            self.count = total_calls(self._client) - self._before - 1
        finally:
            self._client.close()
            self._client = None

    def __enter__(self) -> measure_billed:
        return self._start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._finish()

    async def __aenter__(self) -> measure_billed:
        return await asyncio.to_thread(self._start)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self._finish)
