"""Load: concurrent clients submit and poll through uvicorn for a bounded time, below their rate limit.

Reports throughput and p50/p99 latency (printed; run with -s to see them) and requires zero errors.
JOBQ_LOAD_SECONDS (default 4) and JOBQ_LOAD_CLIENTS (default 16) scale it up outside CI.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from dataclasses import dataclass, field

import httpx
import pytest

from tests.support.api_fixtures import ADMIN_HEADERS, ServedApp

pytestmark = pytest.mark.realredis

SECONDS = float(os.environ.get("JOBQ_LOAD_SECONDS", "4"))
CLIENTS = int(os.environ.get("JOBQ_LOAD_CLIENTS", "16"))


@dataclass
class Tally:
    submit: list[float] = field(default_factory=list)
    poll: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


async def client_loop(base: str, headers: dict[str, str], deadline: float, tally: Tally, n: int) -> None:
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
        i = 0
        while time.monotonic() < deadline:
            i += 1
            body = {"type": "echo", "payload": {"message": f"load {n}.{i}"}}
            started = time.perf_counter()
            created = await client.post("/v1/jobs", json=body)
            tally.submit.append(time.perf_counter() - started)
            if created.status_code != 201:
                tally.errors.append(f"submit {created.status_code} {created.text[:120]}")
                continue
            started = time.perf_counter()
            polled = await client.get(f"/v1/jobs/{created.json()['id']}")
            tally.poll.append(time.perf_counter() - started)
            if polled.status_code != 200 or polled.json()["id"] != created.json()["id"]:
                tally.errors.append(f"poll {polled.status_code} {polled.text[:120]}")


def p(samples: list[float], q: int) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[q - 1] * 1000


async def test_concurrent_submit_and_poll_below_the_rate_limit(api_server: ServedApp) -> None:
    async with httpx.AsyncClient(base_url=api_server.url, timeout=30) as admin:
        users = []
        for n in range(CLIENTS):  # one credential per client, each far below its limit
            created = await admin.post(
                "/v1/keys", json={"owner": f"load{n}", "rate": "100000/minute"}, headers=ADMIN_HEADERS
            )
            assert created.status_code == 201, created.text
            users.append({"Authorization": f"Bearer {created.json()['key']}"})
    tally = Tally()
    started = time.monotonic()
    deadline = started + SECONDS
    await asyncio.gather(*(client_loop(api_server.url, h, deadline, tally, n) for n, h in enumerate(users)))
    elapsed = time.monotonic() - started
    requests = len(tally.submit) + len(tally.poll)
    assert tally.errors == [], f"{len(tally.errors)} errors, first: {tally.errors[:3]}"
    assert len(tally.poll) >= CLIENTS  # every client got through at least once
    print(
        f"\nload: {CLIENTS} clients, {elapsed:.1f} s, {requests / elapsed:.0f} requests/s "
        f"({len(tally.submit) / elapsed:.0f} submits/s); submit p50 {p(tally.submit, 50):.1f} ms "
        f"p99 {p(tally.submit, 99):.1f} ms; poll p50 {p(tally.poll, 50):.1f} ms "
        f"p99 {p(tally.poll, 99):.1f} ms; errors 0"
    )
