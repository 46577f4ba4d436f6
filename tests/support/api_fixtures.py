"""Fixtures for the API tests, reusable by other areas.

- `api_settings`: settings of a fresh app wired to the REST gateway under a unique key prefix.
- `api_registry`: the job types the app knows (override this fixture to use other types).
- `api_app` / `api`: the app, and an `httpx.AsyncClient` calling it in-process over ASGI.
- `admin_headers`: the bootstrap admin token as a header; `make_user`: creates an API key, returns headers.
- `api_server`: the same app served by uvicorn on a loopback port (for streaming and sync clients).
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel, Field, SecretStr, field_validator

from functions.api.app import create_app
from shared.engine import Engine
from shared.registry import Registry
from shared.settings import Settings

ADMIN_TOKEN = "test-admin-token-0123456789abcdef"
ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

MakeUser = Callable[..., Awaitable[dict[str, str]]]


class EchoPayload(BaseModel):
    message: str = Field(max_length=1000)
    repeat: int = Field(default=1, ge=1, le=10)


class FetchPayload(BaseModel):
    url: str = Field(pattern=r"^https?://[^\s/]+(/\S*)?$")
    method: str = "GET"


class BrokenPayload(BaseModel):
    """A job type with a bug: its validator fails unexpectedly (to test the API's last-resort 500)."""

    value: int = 0

    @field_validator("value")
    @classmethod
    def _explode(cls, value: int) -> int:
        if value == 13:
            raise RuntimeError("bug in a job type's validator")
        return value


async def _never_run(payload: Any, ctx: Any) -> None:
    raise AssertionError("API tests never run handlers")


def api_test_registry() -> Registry:
    registry = Registry()
    registry.job_type("echo", payload=EchoPayload)(_never_run)
    registry.job_type("fetch", payload=FetchPayload, queue="outbound", max_attempts=5)(_never_run)
    registry.job_type("broken", payload=BrokenPayload)(_never_run)
    return registry


def gateway_settings(gateway: Any, prefix: str, **overrides: Any) -> Settings:
    """Settings of an app talking to `gateway` (the REST gateway fixture) under its own key prefix."""
    values: dict[str, Any] = {
        "env": "test",
        # These two fields are read by their aliases only (Settings has no populate_by_name).
        "JOBQ_REDIS_REST_URL": gateway.url,
        "JOBQ_REDIS_REST_TOKEN": SecretStr(gateway.token),
        "key_prefix": prefix,
        "admin_token": SecretStr(ADMIN_TOKEN),
        "events_poll_seconds": 0.05,
        "events_max_seconds": 1.0,
        "key_cache_seconds": 30.0,
        "redis_cluster": gateway.backend == "cluster",
    }
    return Settings(**{**values, **overrides})


def _prefix(name: str) -> str:
    """A key prefix unique to the test (the prefix allows only 32 safe characters)."""
    return "t" + hashlib.sha1(name.encode()).hexdigest()[:20]


@pytest.fixture
def api_registry() -> Registry:
    return api_test_registry()


@pytest.fixture
def api_settings(gateway: Any, unique_name: str) -> Settings:
    return gateway_settings(gateway, _prefix(unique_name))


@pytest.fixture
def api_app(api_settings: Settings, api_registry: Registry) -> FastAPI:
    return create_app(api_settings, registry=api_registry)


def engine_of(app: FastAPI) -> Engine:
    """The engine an app built by create_app talks to."""
    engine: Engine = app.state.services.engine
    return engine


async def submit(api: httpx.AsyncClient, headers: dict[str, str], **body: Any) -> httpx.Response:
    """POST /v1/jobs with `body`, an `echo` job by default."""
    body.setdefault("type", "echo")
    body.setdefault("payload", {"message": "hi"})
    return await api.post("/v1/jobs", json=body, headers=headers)


def asgi_client(app: FastAPI, **kwargs: Any) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, **kwargs)
    return httpx.AsyncClient(transport=transport, base_url="http://jobq.test", timeout=30)


@pytest.fixture
async def api(api_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(api_app) as client:
        yield client
    await api_app.state.services.redis.close()


@pytest.fixture
def admin_headers() -> dict[str, str]:
    return dict(ADMIN_HEADERS)


@pytest.fixture
def make_user(api: httpx.AsyncClient) -> MakeUser:
    """`await make_user("alice", admin=False, rate=None)` -> headers with a fresh API key of that owner."""
    counter = iter(range(1_000_000))

    async def create(
        owner: str | None = None, *, admin: bool = False, rate: str | None = None
    ) -> dict[str, str]:
        body: dict[str, Any] = {"owner": owner or f"user{next(counter)}", "admin": admin}
        if rate is not None:
            body["rate"] = rate
        response = await api.post("/v1/keys", json=body, headers=ADMIN_HEADERS)
        assert response.status_code == 201, response.text
        return {"Authorization": f"Bearer {response.json()['key']}"}

    return create


class ServedApp:
    """An ASGI app served by uvicorn in a thread on a free loopback port."""

    def __init__(self, app: Any) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self._app = app
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(),), daemon=True)

    async def _serve(self) -> None:
        await self._server.serve()
        services = getattr(self._app.state, "services", None)
        if services is not None:  # its Redis client lives on this thread's loop: close it here
            await services.redis.close()

    def __enter__(self) -> ServedApp:
        self._thread.start()
        with httpx.Client(timeout=1) as client:
            for _ in range(200):
                try:
                    client.get(f"{self.url}/openapi.json")
                    return self
                except httpx.TransportError:
                    threading.Event().wait(0.025)
        raise RuntimeError("uvicorn did not start")

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


@pytest.fixture
def api_server(api_settings: Settings, api_registry: Registry) -> Iterator[ServedApp]:
    """A second app on the same prefix (its own Redis client: uvicorn runs it on another event loop)."""
    with ServedApp(create_app(api_settings, registry=api_registry)) as served:
        yield served
