"""arq on the shared workload: enqueue_job (arq has no bulk enqueue), one Worker with max_jobs=10."""

from __future__ import annotations

import asyncio
from typing import Any

from arq import create_pool
from arq.connections import RedisSettings
from arq.worker import Worker
from common import Clock, args, mark, payload, result


async def noop(ctx: dict[str, Any], data: dict[str, Any]) -> None:
    return None


def worker(port: int, concurrency: int, burst: bool) -> Worker:
    return Worker(
        functions=[noop],
        redis_settings=RedisSettings(port=port),
        max_jobs=concurrency,
        burst=burst,
        handle_signals=False,
    )


async def completed(direct: Any) -> int:
    return len(await direct.keys("arq:result:*"))


async def main() -> None:
    a = args()
    figures: dict[str, Any] = {"bulk": False}
    pool = await create_pool(RedisSettings(port=a.port))
    direct = await create_pool(RedisSettings(port=a.direct_port))
    mark("start")
    clock = Clock()
    for i in range(a.jobs):
        await pool.enqueue_job("noop", payload(i))
    figures["enqueue_single_s"] = clock.seconds()
    mark("enqueued_single")
    clock = Clock()
    w = worker(a.port, a.concurrency, burst=True)
    await w.async_run()
    figures["process_s"] = clock.seconds()
    await w.close()
    mark("processed")
    mark("reset_e2e")
    w = worker(a.port, a.concurrency, burst=False)
    running = asyncio.ensure_future(w.async_run())
    clock = Clock()
    for i in range(a.jobs):
        await pool.enqueue_job("noop", payload(i))
    figures["enqueue_bulk_s"] = None
    while await completed(direct) < a.jobs:  # noqa: ASYNC110 (state lives in Redis, not in this process)
        await asyncio.sleep(0.05)
    figures["e2e_s"] = clock.seconds()
    running.cancel()
    await w.close()
    mark("e2e_done")
    mark("reset_idle")
    w = worker(a.port, a.concurrency, burst=False)
    running = asyncio.ensure_future(w.async_run())
    await asyncio.sleep(1)
    mark("idle_start")
    await asyncio.sleep(a.idle)
    mark("idle_end")
    running.cancel()
    await w.close()
    await pool.aclose()
    await direct.aclose()
    result(figures)


if __name__ == "__main__":
    asyncio.run(main())
