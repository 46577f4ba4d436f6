"""Read-your-writes across instances (shared/freshness.py) through a gateway whose reads lag (replica.py).

Two apps on one key prefix stand for two function instances, each with its own SDK client. The gateway's
replica lag is a minute, so a read without the write's token stays stale for the whole test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from functions.api.app import create_app
from shared.registry import Registry
from tests.support.api_fixtures import ADMIN_HEADERS, api_test_registry, asgi_client, gateway_settings
from tests.support.gateway import ThreadGateway
from tests.support.gateway_fixtures import require_real_redis

pytestmark = pytest.mark.realredis

HEADER = "Jobq-Sync-Token"
API_DOCS = Path(__file__).resolve().parents[2] / "docs" / "api.md"
ECHO = {"type": "echo", "payload": {"message": "hi"}}


@pytest.fixture(scope="module")
def lagging_gateway() -> Iterator[ThreadGateway]:
    with ThreadGateway(require_real_redis(), replica_lag_ms=60_000) as running:
        yield running


@pytest.fixture
def registry() -> Registry:
    return api_test_registry()


async def instance(
    gateway: ThreadGateway, prefix: str, registry: Registry
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(gateway_settings(gateway, prefix), registry=registry)
    async with asgi_client(app) as client:
        yield client
    await app.state.services.redis.close()


@pytest.fixture
async def writer(
    lagging_gateway: ThreadGateway, unique_name: str, registry: Registry
) -> AsyncIterator[httpx.AsyncClient]:
    async for client in instance(lagging_gateway, unique_name, registry):
        yield client


@pytest.fixture
async def reader(
    lagging_gateway: ThreadGateway, unique_name: str, registry: Registry
) -> AsyncIterator[httpx.AsyncClient]:
    async for client in instance(lagging_gateway, unique_name, registry):
        yield client


async def read(reader: httpx.AsyncClient, job_id: str, token: str | None = None) -> httpx.Response:
    headers = {**ADMIN_HEADERS, **({HEADER: token} if token else {})}
    return await reader.get(f"/v1/jobs/{job_id}", headers=headers)


def token_of(response: httpx.Response) -> str:
    assert response.status_code in (200, 201, 202), response.text
    token: str = response.headers[HEADER]
    return token


async def test_another_instance_reads_a_submit_with_its_token_only(
    writer: httpx.AsyncClient, reader: httpx.AsyncClient
) -> None:
    created = await writer.post("/v1/jobs", json=ECHO, headers=ADMIN_HEADERS)
    token = token_of(created)
    job_id = created.json()["id"]

    assert (await read(reader, job_id)).status_code == 404  # the problem: a lagging replica answered
    fresh = await read(reader, job_id, token)
    assert fresh.status_code == 200, fresh.text
    assert (fresh.json()["id"], fresh.json()["state"]) == (job_id, "waiting")
    assert (await read(writer, job_id)).status_code == 200  # the writer's own SDK client keeps its token

    listing = await reader.get("/v1/jobs", headers={**ADMIN_HEADERS, HEADER: token})
    assert listing.status_code == 200
    assert [job["id"] for job in listing.json()["jobs"]] == [job_id]


async def test_batch_cancel_and_retry_answer_a_token_that_reads_them(
    writer: httpx.AsyncClient, reader: httpx.AsyncClient
) -> None:
    batch = await writer.post("/v1/jobs/batch", json={"jobs": [ECHO, ECHO]}, headers=ADMIN_HEADERS)
    token = token_of(batch)
    ids = [item["job"]["id"] for item in batch.json()["results"]]
    for job_id in ids:
        assert (await read(reader, job_id, token)).status_code == 200

    steps: list[tuple[str, str, Any]] = [("DELETE", "", "cancelled"), ("POST", "/retry", "waiting")]
    for method, suffix, state in steps:
        changed = await writer.request(method, f"/v1/jobs/{ids[0]}{suffix}", headers=ADMIN_HEADERS)
        token = token_of(changed)
        assert (await read(reader, ids[0])).status_code == 404
        assert (await read(reader, ids[0], token)).json()["state"] == state


@pytest.mark.parametrize("value", ["x" * 257, "two words", "caf\u00e9", "tab\there"])
async def test_a_malformed_token_is_a_400_naming_the_header(reader: httpx.AsyncClient, value: str) -> None:
    response = await reader.get(
        "/v1/jobs/j", headers=[*ADMIN_HEADERS.items(), (HEADER, value.encode("latin-1", "replace"))]
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("invalid_header", HEADER)
    assert "| 400 | `invalid_header` |" in API_DOCS.read_text()
