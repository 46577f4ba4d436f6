"""Engine benchmark: `python -m bench engine` (or `make bench BENCH=engine`).

Starts a private redis-server (so INFO commandstats and memory see only this run) and `jobq gateway`
in front of it, then drives the engine through the real SDK over REST and prints one table:
jobs/s for bulk submit, single submit and claim+finish (no-op handler) at batch 1, 10 and 100; round
trips (HTTP requests) and billed commands (Redis calls, inner script calls included) per job for the
whole lifecycle at batch 100; Redis memory per waiting and per kept completed job (200-byte payload).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import redis

from bench.api import running, running_gateway
from shared.engine import Engine
from shared.models import JobSpec, Outcome
from shared.settings import Settings
from shared.store import make_redis

PAYLOAD = {"data": "x" * 188}  # 199 bytes of JSON
PAYLOAD_BYTES = 199


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def private_redis() -> Iterator[str]:
    server = shutil.which("redis-server")
    if server is None:
        raise SystemExit("redis-server is not installed")
    port = _free_port()
    with tempfile.TemporaryDirectory() as folder:
        command = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        command += ["--loglevel", "warning"]
        command += ["--dir", folder]
        client = redis.Redis(port=port)

        def ready() -> bool:
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

        with running(command, ready):
            yield f"redis://127.0.0.1:{port}/0"


class Counter:
    def __init__(self, redis_url: str) -> None:
        self.server = redis.Redis.from_url(redis_url)
        self.requests = 0

    async def on_request(self, request: httpx.Request) -> None:
        self.requests += 1

    def billed(self) -> int:
        stats = self.server.info("commandstats")
        return sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")

    def memory(self) -> int:
        return int(self.server.info("memory")["used_memory"])


def specs(n: int) -> list[JobSpec]:
    return [JobSpec(type="echo", payload=PAYLOAD, owner="bench") for _ in range(n)]


async def drain(engine: Engine, queue: str, batch: int, total: int) -> None:
    done = 0
    while done < total:
        claimed = await engine.claim(queue, batch)
        if not claimed:
            raise RuntimeError("queue ran dry before the total")
        await engine.finish([Outcome(job_id=c.job.id, token=c.token, status="completed") for c in claimed])
        done += len(claimed)


async def measure(url: str, token: str, redis_url: str) -> list[tuple[str, str]]:
    settings = Settings(JOBQ_REDIS_REST_URL=url, JOBQ_REDIS_REST_TOKEN=token)
    client = make_redis(settings)
    counter = Counter(redis_url)
    client._http._client.event_hooks["request"].append(counter.on_request)
    engine = Engine(client, prefix="bench" + secrets.token_hex(3))
    rows: list[tuple[str, str]] = []
    await engine.enqueue(specs(1))  # load the scripts
    await drain(engine, "echo", 1, 1)
    await engine.stats("echo")

    start = time.perf_counter()
    for _ in range(20):
        await engine.enqueue([s.model_copy(update={"type": "bulk"}) for s in specs(100)])
    rows.append(("bulk submit (100 per call), jobs/s", f"{2000 / (time.perf_counter() - start):,.0f}"))
    start = time.perf_counter()
    for _ in range(300):
        await engine.enqueue([JobSpec(type="single", payload=PAYLOAD)])
    rows.append(("single submit, jobs/s", f"{300 / (time.perf_counter() - start):,.0f}"))
    for batch, total in ((1, 200), (10, 1000), (100, 2000)):
        queue = f"cf{batch}"
        for _ in range(0, total, 100):
            await engine.enqueue([s.model_copy(update={"type": queue}) for s in specs(100)])
        start = time.perf_counter()
        await drain(engine, queue, batch, total)
        rate = total / (time.perf_counter() - start)
        rows.append((f"claim+finish no-op, batch {batch}, jobs/s", f"{rate:,.0f}"))

    # Whole lifecycle at batch 100: submit, claim, complete.
    requests, billed = counter.requests, counter.billed()
    for _ in range(10):
        await engine.enqueue([s.model_copy(update={"type": "life"}) for s in specs(100)])
        await drain(engine, "life", 100, 100)
    rows.append(
        ("lifecycle at batch 100: round trips per job", f"{(counter.requests - requests) / 1000:.3f}")
    )
    rows.append(
        ("lifecycle at batch 100: billed commands per job", f"{(counter.billed() - billed) / 1000:.2f}")
    )
    await engine.due()  # a process's first tick also reads the set of queues (then every 30 s)
    billed = counter.billed()
    await engine.due()
    rows.append(("idle due(): billed commands", str(counter.billed() - billed)))
    billed = counter.billed()
    await engine.claim("nothing-here", 100)
    rows.append(("empty claim: billed commands", str(counter.billed() - billed)))

    # Memory: 2000 waiting jobs, then the same jobs kept as completed (retention keeps <= 1000 per
    # queue by default, so two queues of 1000).
    await engine.obliterate("bulk")
    before = counter.memory()
    for queue in ("mem1", "mem2"):
        for _ in range(10):
            await engine.enqueue([s.model_copy(update={"type": queue}) for s in specs(100)])
    waiting = (counter.memory() - before) / 2000
    for queue in ("mem1", "mem2"):
        await drain(engine, queue, 100, 1000)
    kept = (counter.memory() - before) / 2000
    rows.append(("memory per waiting job beyond its payload, bytes", f"{waiting - PAYLOAD_BYTES:.0f}"))
    rows.append(("memory per kept completed job beyond its payload, bytes", f"{kept - PAYLOAD_BYTES:.0f}"))
    await client.close()
    return rows


def main() -> None:
    with private_redis() as redis_url:
        previous = os.environ.get("REDIS_URL")
        os.environ["REDIS_URL"] = redis_url  # running_gateway() points `jobq gateway` at REDIS_URL
        try:
            with running_gateway() as (url, token):
                rows = asyncio.run(measure(url, token, redis_url))
        finally:
            if previous is None:
                os.environ.pop("REDIS_URL", None)
            else:
                os.environ["REDIS_URL"] = previous
    width = max(len(name) for name, _ in rows)
    sys.stdout.write(f"{'engine (gateway + Redis 7, loopback)':<{width}}  value\n")
    for name, value in rows:
        sys.stdout.write(f"{name:<{width}}  {value:>8}\n")


if __name__ == "__main__":
    main()
