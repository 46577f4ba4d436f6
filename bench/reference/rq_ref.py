"""RQ on the shared workload: Queue.enqueue / Queue.enqueue_many, ten SimpleWorker processes (RQ runs one
job at a time per worker; SimpleWorker skips the fork per job, RQ's fastest setup)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import Clock, args, mark, payload, result
from redis import Redis
from rq import Queue
from rq.registry import FinishedJobRegistry

HERE = Path(__file__).resolve().parent
NAME = "bench"


def noop(data: dict[str, Any]) -> None:
    return None


def workers(port: int, count: int, burst: bool) -> list[subprocess.Popen[bytes]]:
    rq = str(Path(sys.executable).with_name("rq"))
    command = [rq, "worker", "-q", "-w", "rq.worker.SimpleWorker", "-u", f"redis://127.0.0.1:{port}"]
    command += ["-P", str(HERE), *(["--burst"] if burst else []), NAME]
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    return [subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL) for _ in range(count)]


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for p in processes:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in processes:
        p.wait(timeout=30)


def wait_finished(direct: Redis, expected: int) -> None:
    registry = FinishedJobRegistry(NAME, connection=direct)
    while registry.count < expected:
        time.sleep(0.05)


def main() -> None:
    a = args()
    figures: dict[str, Any] = {"bulk": True}
    queue = Queue(NAME, connection=Redis(port=a.port))
    direct = Redis(port=a.direct_port)
    mark("start")
    clock = Clock()
    for i in range(a.jobs):
        queue.enqueue("rq_ref.noop", payload(i))
    figures["enqueue_single_s"] = clock.seconds()
    mark("enqueued_single")
    clock = Clock()
    for p in workers(a.port, a.concurrency, burst=True):
        p.wait()
    figures["process_s"] = clock.seconds()
    mark("processed")
    mark("reset_e2e")
    pool = workers(a.port, a.concurrency, burst=False)
    clock = Clock()
    for start in range(0, a.jobs, 100):
        batch = range(start, min(start + 100, a.jobs))
        queue.enqueue_many([Queue.prepare_data("rq_ref.noop", (payload(i),)) for i in batch])
    figures["enqueue_bulk_s"] = clock.seconds()
    wait_finished(direct, a.jobs)
    figures["e2e_s"] = clock.seconds()
    stop(pool)
    mark("e2e_done")
    mark("reset_idle")
    pool = workers(a.port, a.concurrency, burst=False)
    time.sleep(2)
    mark("idle_start")
    time.sleep(a.idle)
    mark("idle_end")
    stop(pool)
    result(figures)


if __name__ == "__main__":
    main()
