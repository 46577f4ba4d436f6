"""An in-process jobq for an application's tests (docs/testing.md): the API, a consumer and the embedded
Redis stand-in behind the Upstash-compatible gateway, all in the test's event loop, no server, no port.

    async with jobq_stack(registry) as jobq:
        job = await jobq.client.submit("report", {"project_id": 7})
        await jobq.run_until_idle()
        assert (await jobq.client.get(job.id)).state == "completed"

`client` is a jobq.client.AsyncClient with an API key of the owner `tester`, bound to the in-process API
over httpx's ASGI transport; `client_for(owner)` makes one for another owner and `admin` holds the admin
token. Jobs run only inside `run_until_idle()`, so a test decides when work happens. Needs the `local`
extra (`pip install jobq[local]`: the embedded Redis stand-in).
"""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from pydantic import SecretStr

from functions.api.app import create_app
from functions.consumer.runtime import ConsumerRuntime, build_runtime
from infra.local.rest_gateway import create_app as create_gateway
from jobq.client import AsyncClient
from shared.consumer import ConsumerConfig, DrainReport
from shared.registry import Registry
from shared.settings import Settings
from shared.store import make_redis
from shared.triggers import NoTrigger

API_URL = "http://api.jobq.test"
GATEWAY_URL = "http://redis.jobq.test"
DEFAULT_OWNER = "tester"


@dataclass
class Ran:
    """What `run_until_idle` ran, summed over its consumer runs."""

    claimed: int = 0
    completed: int = 0
    failed: int = 0
    retried: int = 0
    cancelled: int = 0

    def add(self, report: DrainReport) -> None:
        for name in ("claimed", "completed", "failed", "retried", "cancelled"):
            setattr(self, name, getattr(self, name) + getattr(report, name))


@dataclass
class JobqStack:
    client: AsyncClient  # the owner `tester`'s client
    admin: AsyncClient  # the admin token's client (queues, keys, anyone's jobs)
    registry: Registry  # the job types (and hooks) the stack runs
    runtime: ConsumerRuntime  # the consumer, its engine and settings
    _api: Any = field(repr=False)
    _clients: list[AsyncClient] = field(default_factory=list, repr=False)

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    async def client_for(self, owner: str) -> AsyncClient:
        """A client with a fresh API key of `owner` (each owner sees only their own jobs)."""
        created = await self.admin.create_key(owner)
        client = _bound(self._api, created.key)
        self._clients.append(client)
        return client

    async def run_until_idle(self, *, within: float = 30.0) -> Ran:
        """Run every job that is due, and every job that falls due within `within` seconds (a retry's
        backoff, a short delay, a callback's delivery), until nothing is left to run that soon; jobs
        due later stay where they are. TimeoutError when jobs are still running after `within`."""
        ran = Ran()
        deadline = time.monotonic() + within
        consumer = self.runtime.consumer
        async with asyncio.timeout(within):
            while True:
                ran.add(await consumer.drain(math.inf))
                due = await consumer.next_due()
                if due is None:
                    return ran
                wait = due - time.time()
                if time.monotonic() + wait > deadline:
                    return ran
                if wait > 0:
                    await asyncio.sleep(wait)  # until the earliest job falls due: nothing runs before


def _bound(api: Any, key: str) -> AsyncClient:
    return AsyncClient(API_URL, key, transport=httpx.ASGITransport(app=api))


@asynccontextmanager
async def jobq_stack(
    registry: Registry | None = None, *, owner: str = DEFAULT_OWNER, **settings: Any
) -> AsyncIterator[JobqStack]:
    """The in-process stack for `registry` (default: the job types of JOBQ_JOB_MODULES and the built-in
    ones); `settings` override Settings fields (e.g. `max_payload_bytes=1024`). Everything starts empty."""
    gateway_token, admin_token = secrets.token_urlsafe(16), secrets.token_urlsafe(24)
    gateway = create_gateway(gateway_token, strict_locking=True)
    values: dict[str, Any] = {
        "env": "test",
        "JOBQ_REDIS_REST_URL": GATEWAY_URL,  # read by alias only
        "JOBQ_REDIS_REST_TOKEN": SecretStr(gateway_token),
        "admin_token": SecretStr(admin_token),
        "redis_cluster": False,
        "trigger": "none",
        **settings,
    }
    config = Settings(**values)
    redis = make_redis(config)
    # The SDK's own httpx client, pointed at the gateway app in this process.
    redis._http._client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=gateway), timeout=config.redis_timeout
    )
    trigger = NoTrigger()
    runtime = build_runtime(
        config, registry=registry, redis=redis, config=ConsumerConfig(grace=1.0), trigger=trigger
    )
    api = create_app(config, registry=runtime.registry, redis=redis, trigger=trigger)
    admin = _bound(api, admin_token)
    stack = JobqStack(client=admin, admin=admin, registry=runtime.registry, runtime=runtime, _api=api)
    try:
        stack.client = await stack.client_for(owner)
        yield stack
    finally:
        for client in (*stack._clients, admin):
            await client.aclose()
        await redis.close()
        await gateway.state.gateway.close()
