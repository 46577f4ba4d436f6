"""BullMQ's Python port on the shared workload: Queue.add / Queue.addBulk, one Worker with concurrency 10."""

from __future__ import annotations

import asyncio
from typing import Any

from bullmq import Queue, Worker
from common import Clock, args, mark, payload, result

NAME = "bench"
PROCESS_PASSES = 3  # as bench/jobq_workload.py


async def noop(job: Any, token: str) -> None:
    return None


async def process(url: str, concurrency: int, expected: int) -> tuple[Worker, asyncio.Event]:
    done = asyncio.Event()
    seen = 0

    def completed(*_: Any) -> None:
        nonlocal seen
        seen += 1
        if seen >= expected:
            done.set()

    worker = Worker(NAME, noop, {"connection": url, "concurrency": concurrency})
    worker.on("completed", completed)
    if expected == 0:
        done.set()
    return worker, done


async def main() -> None:
    a = args()
    url = f"redis://127.0.0.1:{a.port}"
    figures: dict[str, Any] = {"bulk": True}
    queue = Queue(NAME, {"connection": url})
    mark("start")
    clock = Clock()
    for i in range(a.jobs):
        await queue.add("noop", payload(i))
    figures["enqueue_single_s"] = clock.seconds()
    mark("enqueued_single")
    clock = Clock()
    worker, done = await process(url, a.concurrency, a.jobs)
    await done.wait()
    figures["process_s"] = clock.seconds()
    await worker.close()
    mark("processed")
    # More processing passes, as for jobq (jobs added in bulk, not counted in the cost figures): the
    # driver takes the median pass, because the machine's speed moves between passes.
    runs = [figures["process_s"]]
    for _ in range(PROCESS_PASSES - 1):
        for start in range(0, a.jobs, 100):
            await queue.addBulk(
                [{"name": "noop", "data": payload(i)} for i in range(start, min(start + 100, a.jobs))]
            )
        clock = Clock()
        worker, done = await process(url, a.concurrency, a.jobs)
        await done.wait()
        runs.append(clock.seconds())
        await worker.close()
    figures["process_runs_s"] = runs
    mark("reset_e2e")
    worker, done = await process(url, a.concurrency, a.jobs)
    clock = Clock()
    for start in range(0, a.jobs, 100):
        await queue.addBulk(
            [{"name": "noop", "data": payload(i)} for i in range(start, min(start + 100, a.jobs))]
        )
    figures["enqueue_bulk_s"] = clock.seconds()
    await done.wait()
    figures["e2e_s"] = clock.seconds()
    await worker.close()
    mark("e2e_done")
    mark("reset_idle")
    worker, _ = await process(url, a.concurrency, 0)
    await asyncio.sleep(1)
    mark("idle_start")
    await asyncio.sleep(a.idle)
    mark("idle_end")
    await worker.close()
    await queue.close()
    result(figures)


if __name__ == "__main__":
    asyncio.run(main())
