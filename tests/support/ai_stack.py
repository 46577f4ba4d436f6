"""The AI-job tests' stack: the API (in process, over ASGI) and consumers on one key prefix, with the llm
job types registered against the fake provider (tests/support/fake_llm.py).

`ai_stack`: the stack on `api_settings` (so `make_user` and `admin_headers` work with it)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from functions.api.app import create_app
from functions.consumer.runtime import ConsumerRuntime, build_runtime
from functions.jobs.llm import llm_type
from shared.consumer import ConsumerConfig
from shared.models import Backoff
from shared.registry import Registry
from shared.settings import Settings
from tests.support.api_fixtures import asgi_client

TERMINAL = ("completed", "failed", "cancelled")


def ai_registry() -> Registry:
    """`llm` as built in; `llm-shared` shares its cache between owners; `llm-fast` retries quickly."""
    registry = Registry()
    llm_type("llm", target=registry)
    llm_type("llm-shared", target=registry, shared_cache=True)
    llm_type("llm-fast", target=registry, max_attempts=3, backoff=Backoff(kind="fixed", delay=0.05, jitter=0))
    llm_type("llm-short", target=registry, timeout=3.0, max_attempts=1)
    return registry


class AIStack:
    def __init__(self, api: httpx.AsyncClient, settings: Settings, registry: Registry) -> None:
        self.api, self.settings, self.registry = api, settings, registry
        self.runtimes: list[ConsumerRuntime] = []

    def consumer(self) -> ConsumerRuntime:
        config = ConsumerConfig(heartbeat_interval=0.1, grace=2.0, wait_due=2.0)
        runtime = build_runtime(self.settings, registry=self.registry, config=config)
        self.runtimes.append(runtime)
        return runtime

    async def close(self) -> None:
        for runtime in self.runtimes:
            await runtime.redis.close()

    async def submit(self, headers: dict[str, str], body: dict[str, Any]) -> str:
        response = await self.api.post("/v1/jobs", json=body, headers=headers)
        assert response.status_code == 201, response.text
        job_id: str = response.json()["id"]
        return job_id

    async def job(self, headers: dict[str, str], job_id: str) -> dict[str, Any]:
        response = await self.api.get(f"/v1/jobs/{job_id}", headers=headers)
        assert response.status_code == 200, response.text
        job: dict[str, Any] = response.json()
        return job

    async def run_until(
        self,
        done: Callable[[], Awaitable[bool]],
        *,
        consumers: int = 1,
        within: float = 30.0,
    ) -> None:
        """Drain with `consumers` consumers at once, again and again, until `done()` or the deadline."""
        while len(self.runtimes) < consumers:
            self.consumer()
        deadline = time.monotonic() + within
        while not await done():
            if time.monotonic() > deadline:
                raise AssertionError(f"not done within {within} s")
            await asyncio.gather(*(r.consumer.drain() for r in self.runtimes[:consumers]))

    async def settle(
        self, headers: dict[str, str], *job_ids: str, consumers: int = 1
    ) -> list[dict[str, Any]]:
        """Run consumers until every job is terminal; the jobs as their owner reads them."""

        async def all_terminal() -> bool:
            jobs = [await self.job(headers, j) for j in job_ids]
            return all(job["state"] in TERMINAL for job in jobs)

        await self.run_until(all_terminal, consumers=consumers)
        return [await self.job(headers, j) for j in job_ids]


def llm_body(content: str, *, type: str = "llm", **payload: Any) -> dict[str, Any]:
    return {"type": type, "payload": {"messages": [{"role": "user", "content": content}], **payload}}


@pytest.fixture
async def ai_stack(api_settings: Settings) -> AsyncIterator[AIStack]:
    registry = ai_registry()
    app = create_app(api_settings, registry=registry)
    async with asgi_client(app) as client:
        stack = AIStack(client, api_settings, registry)
        yield stack
        await stack.close()
    await app.state.services.redis.close()
