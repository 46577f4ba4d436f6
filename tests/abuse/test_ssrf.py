"""SSRF through the built-in `webhook` and `http` job types.

Non-HTTP schemes and literal private addresses are refused at submit (a 422 naming payload.url, nothing
written). Private, loopback, link-local and metadata addresses are refused before any connection is made:
at submit when the API can tell, otherwise when the job runs (the guard resolves the host at run time, so
DNS tricks do not help), as a permanent failure with no retry. A listener on loopback proves that no
request ever reached it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from functions.api.app import create_app
from functions.consumer.runtime import build_runtime
from shared.models import State
from shared.registry import registry as builtin_registry
from shared.settings import Settings, get_settings
from tests.abuse.conftest import Snapshot
from tests.support.api_fixtures import ADMIN_HEADERS, asgi_client

pytestmark = pytest.mark.realredis

BAD_SCHEMES = [
    "file:///etc/passwd",
    "gopher://127.0.0.1:6379/_FLUSHALL",
    "dict://127.0.0.1:6379/info",
    "ftp://example.com/",
    "javascript:alert(1)",
    "http://",
]


class Listener:
    """A loopback TCP server that only counts connections."""

    def __init__(self) -> None:
        self.connections = 0
        self.port = 0

    async def __aenter__(self) -> Listener:
        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            writer.close()

        self._server = await asyncio.start_server(accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        await self._server.wait_closed()


@pytest.fixture
async def builtin_api(api_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    builtin_registry.load([])
    app = create_app(api_settings, registry=builtin_registry)
    async with asgi_client(app) as client:
        yield client
    await app.state.services.redis.close()


async def user_of(api: httpx.AsyncClient) -> dict[str, str]:
    created = await api.post("/v1/keys", json={"owner": "mallory"}, headers=ADMIN_HEADERS)
    assert created.status_code == 201, created.text
    return {"Authorization": f"Bearer {created.json()['key']}"}


@pytest.mark.parametrize("job_type", ["webhook", "http"])
async def test_non_http_schemes_are_refused_at_submit(
    builtin_api: httpx.AsyncClient,
    key_snapshot: Snapshot,
    job_type: str,
) -> None:
    user = await user_of(builtin_api)
    before = await key_snapshot()
    for url in BAD_SCHEMES:
        response = await builtin_api.post(
            "/v1/jobs", json={"type": job_type, "payload": {"url": url}}, headers=user
        )
        assert response.status_code == 422, (url, response.text)
        assert "url" in response.json()["error"]["field"], (url, response.json())
    assert await key_snapshot() == before


@pytest.mark.parametrize("job_type", ["webhook", "http"])
async def test_literal_private_targets_are_refused_at_submit(
    builtin_api: httpx.AsyncClient, key_snapshot: Snapshot, job_type: str, monkeypatch: Any
) -> None:
    monkeypatch.delenv("JOBQ_ALLOW_PRIVATE_URLS", raising=False)
    get_settings.cache_clear()
    user = await user_of(builtin_api)
    before = await key_snapshot()
    for url in ["http://127.0.0.1:9/", "http://localhost/", "http://169.254.169.254/", "http://[::1]/"]:
        response = await builtin_api.post(
            "/v1/jobs", json={"type": job_type, "payload": {"url": url}}, headers=user
        )
        assert response.status_code == 422, (url, response.text)
        assert response.json()["error"]["field"] == "payload.url", response.json()
    assert await key_snapshot() == before


def private_urls(port: int) -> list[str]:
    return [
        f"http://127.0.0.1:{port}/",
        f"http://localhost:{port}/",
        f"http://0.0.0.0:{port}/",
        f"http://2130706433:{port}/",  # 127.0.0.1 as one decimal number
        f"http://127.1:{port}/",
        f"http://[::ffff:127.0.0.1]:{port}/",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/",
    ]


@pytest.mark.parametrize("job_type", ["webhook", "http"])
async def test_private_targets_never_get_a_request(
    builtin_api: httpx.AsyncClient, api_settings: Settings, job_type: str, monkeypatch: Any
) -> None:
    monkeypatch.delenv("JOBQ_ALLOW_PRIVATE_URLS", raising=False)
    user = await user_of(builtin_api)
    async with Listener() as listener:
        accepted = []
        for url in private_urls(listener.port):
            body = {"type": job_type, "payload": {"url": url, "timeout": 2}, "max_attempts": 3}
            response = await builtin_api.post("/v1/jobs", json=body, headers=user)
            assert response.status_code in (201, 422), (url, response.text)
            if response.status_code == 201:
                accepted.append((url, response.json()["id"]))
        runtime = build_runtime(api_settings, registry=builtin_registry)
        try:
            await runtime.consumer.drain(budget=100)  # a bound: the types' 60 s timeout must fit
            for url, job_id in accepted:
                job = await runtime.engine.get(job_id)
                assert (job.state, job.attempts) == (State.FAILED, 1), (url, job.state, job.error)
        finally:
            await runtime.redis.close()
        assert listener.connections == 0
