"""Gateway fixtures: every integration test runs through a real REST gateway, on real Redis and embedded.

`gateway`        session-scoped, params "redis", "embedded" and "cluster", each in strict locking mode
                 (a script that would take Upstash's global lock is refused): what the engine, API and
                 consumer tests run on (.url .token .backend .redis_url, .command_count(),
                 .reset_commands(), .counts())
`every_gateway`  session-scoped, params "redis", "embedded" and "cluster", not strict: the gateway's own
                 tests
`real_gateway`   session-scoped, the real-Redis one only (not strict)
`cluster_gateway` session-scoped, on the Redis Cluster (not strict)
`rest`           an async upstash-redis client on `gateway`, no retries, no telemetry
`http`           an authorised httpx client on `gateway`
`unique_name`    a short unique [A-Za-z0-9_] name for queues and key prefixes

Real Redis is JOBQ_TEST_REDIS_URL (default redis://127.0.0.1:6379/0), the cluster JOBQ_TEST_REDIS_CLUSTER_URL
(default redis://127.0.0.1:7101, as `.ci/redis-cluster start` makes it). If one does not answer, its params
are skipped, unless CI=true or JOBQ_REQUIRE_REAL_REDIS=1, where the run fails instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from functools import cache

import httpx
import pytest
import redis
from upstash_redis.asyncio import Redis as AsyncRedis

from tests.support.gateway import ThreadGateway

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_CLUSTER_URL = "redis://127.0.0.1:7101"


def real_redis_url() -> str:
    return os.environ.get("JOBQ_TEST_REDIS_URL", DEFAULT_REDIS_URL)


def cluster_url() -> str:
    return os.environ.get("JOBQ_TEST_REDIS_CLUSTER_URL", DEFAULT_CLUSTER_URL)


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


@cache
def cluster_problem(url: str) -> str | None:
    """None if the node at `url` reports cluster_state:ok, else why not."""
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        state = client.cluster("INFO").get("cluster_state")
    except redis.RedisError as exc:
        return f"Redis Cluster at {url} unreachable: {exc} (start one: .ci/redis-cluster start)"
    finally:
        client.close()
    return None if state == "ok" else f"Redis Cluster at {url} reports cluster_state:{state}"


def _required_or_skip(problem: str | None) -> None:
    if problem is not None:
        if real_redis_required():
            pytest.fail(f"{problem} (required: CI=true or JOBQ_REQUIRE_REAL_REDIS=1)", pytrace=False)
        pytest.skip(problem)


def require_real_redis() -> str:
    """The real Redis URL; skips the test, or fails it when real Redis is required (CI)."""
    _required_or_skip(real_redis_problem(real_redis_url()))
    return real_redis_url()


def require_cluster() -> str:
    """The Redis Cluster URL, under the same rule as real Redis."""
    _required_or_skip(cluster_problem(cluster_url()))
    return cluster_url()


@pytest.fixture(scope="session")
def real_gateway() -> Iterator[ThreadGateway]:
    with ThreadGateway(require_real_redis()) as running:
        yield running


@pytest.fixture(scope="session")
def embedded_gateway() -> Iterator[ThreadGateway]:
    with ThreadGateway(None) as running:
        yield running


@pytest.fixture(scope="session")
def cluster_gateway() -> Iterator[ThreadGateway]:
    with ThreadGateway(None, cluster_url=require_cluster()) as running:
        yield running


@pytest.fixture(scope="session")
def strict_real_gateway() -> Iterator[ThreadGateway]:
    with ThreadGateway(require_real_redis(), strict_locking=True) as running:
        yield running
        assert running.global_lock_scripts() == 0


@pytest.fixture(scope="session")
def strict_embedded_gateway() -> Iterator[ThreadGateway]:
    with ThreadGateway(None, strict_locking=True) as running:
        yield running
        assert running.global_lock_scripts() == 0


@pytest.fixture(scope="session")
def strict_cluster_gateway() -> Iterator[ThreadGateway]:
    with ThreadGateway(None, cluster_url=require_cluster(), strict_locking=True) as running:
        yield running
        assert running.global_lock_scripts() == 0


GATEWAY_FIXTURES = {"redis": "real_gateway", "embedded": "embedded_gateway", "cluster": "cluster_gateway"}
STRICT_GATEWAYS = {
    "redis": "strict_real_gateway",
    "embedded": "strict_embedded_gateway",
    "cluster": "strict_cluster_gateway",
}


@pytest.fixture(scope="session", params=["redis", "embedded", "cluster"])
def gateway(request: pytest.FixtureRequest) -> ThreadGateway:
    """Strict locking everywhere: every script the engine sends must name its keys and carry the flag."""
    running: ThreadGateway = request.getfixturevalue(STRICT_GATEWAYS[request.param])
    return running


@pytest.fixture(scope="session", params=["redis", "embedded", "cluster"])
def every_gateway(request: pytest.FixtureRequest) -> ThreadGateway:
    """The gateway's own tests run on all three backends (the engine's scripts need a single Redis)."""
    running: ThreadGateway = request.getfixturevalue(GATEWAY_FIXTURES[request.param])
    return running


@pytest.fixture
async def rest(gateway: ThreadGateway) -> AsyncIterator[AsyncRedis]:
    client = AsyncRedis(gateway.url, gateway.token, rest_retries=0, allow_telemetry=False)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def http(gateway: ThreadGateway) -> AsyncIterator[httpx.AsyncClient]:
    """Raw HTTP on `gateway`, authorised: what the SDK hides (statuses, bodies, headers)."""
    headers = {"Authorization": f"Bearer {gateway.token}"}
    async with httpx.AsyncClient(base_url=gateway.url, headers=headers, timeout=10) as client:
        yield client


@pytest.fixture
def unique_name() -> str:
    return f"t{uuid.uuid4().hex[:12]}"
