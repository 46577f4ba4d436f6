"""Gateway fixtures: every integration test runs through a real REST gateway, on real Redis and embedded.

`gateway`        session-scoped, params "redis" and "embedded" (.url .token .backend .redis_url,
                 .command_count(), .reset_commands())
`real_gateway`   session-scoped, the real-Redis one only
`rest`           an async upstash-redis client on `gateway`, no retries, no telemetry
`unique_name`    a short unique [A-Za-z0-9_] name for queues and key prefixes

Real Redis is JOBQ_TEST_REDIS_URL (default redis://127.0.0.1:6379/0). If it does not answer, the "redis"
params are skipped, unless CI=true or JOBQ_REQUIRE_REAL_REDIS=1, where the run fails instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from functools import cache

import pytest
import redis
from upstash_redis.asyncio import Redis as AsyncRedis

from tests.support.gateway import ThreadGateway

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def real_redis_url() -> str:
    return os.environ.get("JOBQ_TEST_REDIS_URL", DEFAULT_REDIS_URL)


def real_redis_required() -> bool:
    return os.environ.get("CI", "").lower() == "true" or os.environ.get("JOBQ_REQUIRE_REAL_REDIS") == "1"


@cache
def real_redis_problem(url: str) -> str | None:
    """None if the Redis at `url` answers PING, else why not (asked once per URL and session)."""
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        return f"real Redis at {url} unreachable: {exc}"
    finally:
        client.close()
    return None


def require_real_redis() -> str:
    """The real Redis URL; skips the test, or fails it when real Redis is required (CI)."""
    problem = real_redis_problem(real_redis_url())
    if problem is not None:
        if real_redis_required():
            pytest.fail(f"{problem} (required: CI=true or JOBQ_REQUIRE_REAL_REDIS=1)", pytrace=False)
        pytest.skip(problem)
    return real_redis_url()


@pytest.fixture(scope="session")
def real_gateway() -> Iterator[ThreadGateway]:
    with ThreadGateway(require_real_redis()) as running:
        yield running


@pytest.fixture(scope="session")
def embedded_gateway() -> Iterator[ThreadGateway]:
    with ThreadGateway(None) as running:
        yield running


@pytest.fixture(scope="session", params=["redis", "embedded"])
def gateway(request: pytest.FixtureRequest) -> ThreadGateway:
    name = "real_gateway" if request.param == "redis" else "embedded_gateway"
    running: ThreadGateway = request.getfixturevalue(name)
    return running


@pytest.fixture
async def rest(gateway: ThreadGateway) -> AsyncIterator[AsyncRedis]:
    client = AsyncRedis(gateway.url, gateway.token, rest_retries=0, allow_telemetry=False)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def unique_name() -> str:
    return f"t{uuid.uuid4().hex[:12]}"
