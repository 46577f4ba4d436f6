"""API benchmark: submits/s and status reads/s with p50/p99 latency through uvicorn on real Redis.

Starts the REST gateway on the local Redis and the API under uvicorn in its own process, creates a user
key, then drives N concurrent httpx clients for a fixed time per row. Run: `python -m bench api`.
Environment: BENCH_API_SECONDS (per row, default 3), BENCH_API_CLIENTS (default "1,8,32").
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from functions.api.app import create_app
from shared.registry import Registry
from shared.settings import Settings

ADMIN_TOKEN = secrets.token_hex(16)


def bench_registry() -> Registry:
    from pydantic import BaseModel

    class Echo(BaseModel):
        message: str

    async def echo(payload: Echo, ctx: Any) -> str:
        return payload.message

    registry = Registry()
    registry.job_type("bench_echo", payload=Echo)(echo)
    return registry


def bench_app() -> Any:
    """The uvicorn factory: settings from the environment the bench sets, the bench's one job type."""
    return create_app(Settings(), registry=bench_registry())


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def running(
    command: list[str], ready: Callable[[], bool], env: dict[str, str] | None = None
) -> Iterator[None]:
    """A server process, up once `ready()` says so (polled with a deadline), terminated on exit."""
    process = subprocess.Popen(command, env={**os.environ, **(env or {})})
    try:
        deadline = time.monotonic() + 30
        while not ready():
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"{command[0]} did not start")
            time.sleep(0.05)
        yield
    finally:
        process.terminate()
        process.wait(timeout=10)


def _answers(url: str, **kwargs: Any) -> bool:
    try:
        return httpx.request(kwargs.pop("method", "GET"), url, timeout=1, **kwargs).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def running_gateway() -> Iterator[tuple[str, str]]:
    """`jobq gateway` on the local Redis (REDIS_URL, default redis://127.0.0.1:6379/0)."""
    port, token = _free_port(), secrets.token_hex(16)
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    command = [str(Path(sys.executable).with_name("jobq")), "gateway", "--port", str(port), "--token", token]
    url = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {token}"}
    with running(
        [*command, "--redis-url", redis_url],
        lambda: _answers(url, method="POST", json=["PING"], headers=auth),
    ):
        yield url, token


@contextmanager
def running_api(env: dict[str, str]) -> Iterator[str]:
    port = _free_port()
    command = [sys.executable, "-m", "uvicorn", "bench.api:bench_app", "--factory", "--port", str(port)]
    command += ["--log-level", "warning", "--no-access-log"]
    url = f"http://127.0.0.1:{port}"
    with running(command, lambda: _answers(f"{url}/health"), env):
        yield url


@dataclass
class Row:
    name: str
    clients: int
    requests: int
    errors: int
    seconds: float
    latencies: list[float]

    def cells(self) -> list[str]:
        ordered = sorted(self.latencies) or [0.0]
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        return [
            self.name,
            str(self.clients),
            str(self.requests),
            f"{self.requests / self.seconds:,.0f}",
            f"{statistics.median(ordered) * 1000:.1f}",
            f"{p99 * 1000:.1f}",
            str(self.errors),
        ]


async def drive(
    name: str,
    clients: int,
    seconds: float,
    request: Callable[[httpx.AsyncClient, int], Awaitable[httpx.Response]],
) -> Row:
    latencies: list[float] = []
    errors = 0
    stop = time.monotonic() + seconds

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal errors
        n = 0
        while time.monotonic() < stop:
            started = time.perf_counter()
            response = await request(client, n)
            latencies.append(time.perf_counter() - started)
            errors += response.status_code >= 400
            n += 1

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        started = time.monotonic()
        await asyncio.gather(*(worker(client) for _ in range(clients)))
        elapsed = time.monotonic() - started
    return Row(name, clients, len(latencies), errors, elapsed, latencies)


async def run(url: str, seconds: float, client_counts: list[int]) -> list[Row]:
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with httpx.AsyncClient(base_url=url) as setup:
        key = (
            await setup.post("/v1/keys", json={"owner": "bench", "rate": "10000000/minute"}, headers=admin)
        ).json()
        user = {"Authorization": f"Bearer {key['key']}"}
        job_ids = [
            r["job"]["id"]
            for r in (
                await setup.post(
                    "/v1/jobs/batch",
                    json={"jobs": [{"type": "bench_echo", "payload": {"message": "x" * 200}}] * 100},
                    headers=user,
                )
            ).json()["results"]
        ]
    body = {"type": "bench_echo", "payload": {"message": "x" * 200}}

    async def submit(client: httpx.AsyncClient, n: int) -> httpx.Response:
        return await client.post(f"{url}/v1/jobs", json=body, headers=user)

    async def status(client: httpx.AsyncClient, n: int) -> httpx.Response:
        return await client.get(f"{url}/v1/jobs/{job_ids[n % len(job_ids)]}", headers=user)

    rows = []
    for clients in client_counts:
        rows.append(await drive("submit", clients, seconds, submit))
        rows.append(await drive("status", clients, seconds, status))
    return rows


def print_table(rows: list[Row]) -> None:
    header = ["request", "clients", "requests", "req/s", "p50 ms", "p99 ms", "errors"]
    table = [header, *(row.cells() for row in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for line in table:
        print("  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True)))


def main() -> None:
    seconds = float(os.environ.get("BENCH_API_SECONDS", "3"))
    client_counts = [int(n) for n in os.environ.get("BENCH_API_CLIENTS", "1,8,32").split(",")]
    with running_gateway() as (rest_url, rest_token):
        env = {
            "JOBQ_ENV": "local",
            "JOBQ_REDIS_REST_URL": rest_url,
            "JOBQ_REDIS_REST_TOKEN": rest_token,
            "JOBQ_KEY_PREFIX": f"bench{secrets.token_hex(4)}",
            "JOBQ_ADMIN_TOKEN": ADMIN_TOKEN,
            "JOBQ_TRIGGER": "none",
            "JOBQ_LOG_LEVEL": "WARNING",
        }
        with running_api(env) as url:
            print(f"API {url} (uvicorn, 1 process) -> gateway {rest_url} -> Redis; {seconds:g} s per row")
            print_table(asyncio.run(run(url, seconds, client_counts)))


if __name__ == "__main__":
    main()
