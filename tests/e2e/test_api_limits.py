"""End to end: rate limits, the command budget per request, the push trigger, and Redis outages."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import upstash_ratelimit.limiter
from fastapi import FastAPI

from functions.api.app import create_app
from functions.api.auth import Principal
from functions.api.ratelimit import SubmitLimiter
from shared.engine import Engine
from shared.errors import RateLimitedError
from shared.ids import job_id, new_id
from shared.registry import Registry
from shared.settings import Settings
from tests.support.api_fixtures import ADMIN_HEADERS, MakeUser, asgi_client

pytestmark = pytest.mark.realredis

ECHO = {"type": "echo", "payload": {"message": "hi"}}


async def test_rate_limit_per_credential_with_retry_after(
    api: httpx.AsyncClient, make_user: MakeUser
) -> None:
    slow, other = await make_user("slow", rate="2/minute"), await make_user("other")
    codes = [(await api.post("/v1/jobs", json=ECHO, headers=slow)).status_code for _ in range(2)]
    limited = await api.post("/v1/jobs", json=ECHO, headers=slow)
    assert codes == [201, 201]
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(limited.headers["retry-after"]) <= 60  # the end of the minute's window
    assert (await api.post("/v1/jobs", json=ECHO, headers=other)).status_code == 201  # per credential
    assert (await api.get("/v1/jobs", headers=slow)).status_code == 200  # reads are not limited
    batch = await api.post("/v1/jobs/batch", json={"jobs": [ECHO]}, headers=slow)
    assert batch.status_code == 429


async def test_default_rate_applies_without_an_override(
    api_settings: Settings, api_registry: Registry
) -> None:
    app = create_app(api_settings.model_copy(update={"default_rate": "3/minute"}), registry=api_registry)
    async with asgi_client(app) as client:
        codes = [
            (await client.post("/v1/jobs", json=ECHO, headers=ADMIN_HEADERS)).status_code for _ in range(4)
        ]
    assert codes == [201, 201, 201, 429]
    await app.state.services.redis.close()


async def test_command_budget_submit_3_and_status_2_then_less_when_warm(
    api: httpx.AsyncClient, make_user: MakeUser, gateway: Any
) -> None:
    user = await make_user()
    await api.post("/v1/jobs", json=ECHO, headers=ADMIN_HEADERS)  # loads the engine's scripts once
    before = gateway.command_count()
    job = (await api.post("/v1/jobs", json=ECHO, headers=user)).json()
    cold_submit = gateway.command_count() - before

    before = gateway.command_count()
    await api.post("/v1/jobs", json=ECHO, headers=user)
    warm_submit = gateway.command_count() - before

    reader = await make_user()
    before = gateway.command_count()
    assert (await api.get(f"/v1/jobs/{job['id']}", headers=reader)).status_code == 404
    cold_read = gateway.command_count() - before
    before = gateway.command_count()
    assert (await api.get(f"/v1/jobs/{job['id']}", headers=user)).status_code == 200
    warm_read = gateway.command_count() - before

    print(f"commands: submit cold={cold_submit} warm={warm_submit}; status cold={cold_read} warm={warm_read}")
    assert (cold_submit, warm_submit, cold_read, warm_read) == (3, 2, 2, 1)


class RecordingTrigger:
    def __init__(self, fail: bool = False) -> None:
        self.fired = 0
        self.fail = fail

    async def fire(self, lane: str, *, delay: float = 0.0) -> None:
        self.fired += 1
        if self.fail:
            raise RuntimeError("trigger endpoint down")


async def test_push_trigger_fires_once_per_pending_run(
    api_settings: Settings, api_registry: Registry
) -> None:
    trigger = RecordingTrigger()
    app = create_app(api_settings, registry=api_registry, trigger=trigger)
    engine: Engine = app.state.services.engine
    async with asgi_client(app) as client:
        await client.post("/v1/jobs", json=ECHO, headers=ADMIN_HEADERS)
        await client.post("/v1/jobs/batch", json={"jobs": [ECHO, ECHO]}, headers=ADMIN_HEADERS)
        assert trigger.fired == 1  # the second submit saw a trigger pending
        await engine.claim("echo", 10)  # a consumer run clears the pending flag
        await client.post("/v1/jobs", json=ECHO, headers=ADMIN_HEADERS)
        assert trigger.fired == 2
    await app.state.services.redis.close()


async def test_a_failing_trigger_never_fails_the_submit(
    api_settings: Settings, api_registry: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    trigger = RecordingTrigger(fail=True)
    app = create_app(api_settings, registry=api_registry, trigger=trigger)
    async with asgi_client(app) as client:
        response = await client.post("/v1/jobs", json=ECHO, headers=ADMIN_HEADERS)
    assert (response.status_code, trigger.fired) == (201, 1)
    assert "push trigger failed" in caplog.text
    await app.state.services.redis.close()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_redis_unreachable_is_503_with_retry_after(
    api_settings: Settings, api_registry: Registry
) -> None:
    down = api_settings.model_copy(update={"redis_rest_url": f"http://127.0.0.1:{closed_port()}"})
    app = create_app(down, registry=api_registry)
    user = {"Authorization": "Bearer jq_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAA"}
    async with asgi_client(app) as client:
        for method, path, headers in [
            ("GET", "/health", {}),
            ("POST", "/v1/jobs", ADMIN_HEADERS),
            ("GET", f"/v1/jobs/{job_id(new_id(), 'echo')}", ADMIN_HEADERS),
            ("GET", "/v1/jobs", user),
            ("GET", "/v1/queues", ADMIN_HEADERS),
        ]:
            response = await client.request(
                method, path, headers=headers, json=ECHO if method == "POST" else None
            )
            assert response.status_code == 503, (path, response.text)
            assert response.json()["error"]["code"] == "store_unavailable"
            assert int(response.headers["retry-after"]) > 0
    await app.state.services.redis.close()


class FailingTransport(httpx.AsyncBaseTransport):
    """Forwards to the real gateway, except the commands `fails` picks, which never reach it."""

    def __init__(self, inner: httpx.AsyncBaseTransport, fails: Callable[[list[Any]], bool]) -> None:
        self.inner = inner
        self.fails = fails

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        command = json.loads(request.content or b"[]")
        if command and isinstance(command[0], str) and self.fails(command):
            raise httpx.ConnectError("injected: connection refused", request=request)
        return await self.inner.handle_async_request(request)


async def test_an_outage_during_enqueue_is_503_and_writes_nothing(
    api: httpx.AsyncClient, api_app: FastAPI, make_user: MakeUser
) -> None:
    user = await make_user()
    http_client = api_app.state.services.redis._http._client
    real = http_client._transport

    def is_enqueue(command: list[Any]) -> bool:  # the engine's scripts; the rate limiter's EVAL passes
        return command[0].upper() in ("EVALSHA", "EVAL") and "increment_by" not in str(command[1])

    http_client._transport = FailingTransport(real, is_enqueue)
    try:
        response = await api.post("/v1/jobs", json=ECHO, headers=user)
        batch = await api.post("/v1/jobs/batch", json={"jobs": [ECHO, ECHO]}, headers=user)
    finally:
        http_client._transport = real
    assert (response.status_code, batch.status_code) == (503, 503)
    assert response.headers["retry-after"]
    assert (await api.get("/v1/jobs", headers=user)).json()["jobs"] == []
    stats = (await api.get("/v1/queues/echo", headers=ADMIN_HEADERS)).json()
    assert sum(stats["counts"].values()) == 0


class FakeClock:
    """Wall-clock seconds that move only when the test says (the limiter library reads them as ms)."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def ms(self) -> int:
        return round(self.now * 1000)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(upstash_ratelimit.limiter, "now_ms", fake.ms)  # the library's own clock
    return fake


async def allowed(limiter: SubmitLimiter, who: Principal) -> bool | float:
    """True when the submit passes, else its Retry-After in seconds."""
    try:
        await limiter.check(who)
    except RateLimitedError as exc:
        return exc.retry_after
    return True


def window_start(clock: FakeClock, seconds: int) -> None:
    """Move the clock to the start of the next window of `seconds` (windows are aligned to the epoch)."""
    clock.now = (int(clock.now // seconds) + 1) * seconds


async def test_n_per_minute_is_a_fixed_window_whose_retry_after_is_true(
    api: httpx.AsyncClient, api_app: FastAPI, clock: FakeClock, unique_name: str
) -> None:  # `api`: its teardown closes the app's Redis client
    services = api_app.state.services
    limiter = SubmitLimiter(services.store, services.engine.keys.rate_limits(), "100/minute", clock=clock)
    who = Principal(owner="o", admin=False, credential=f"key:{unique_name[-40:]}")
    window_start(clock, 60)
    burst = [await allowed(limiter, who) for _ in range(100)]
    assert burst == [True] * 100  # a window's whole rate, at once
    assert await allowed(limiter, who) == 60  # refused until the window ends
    clock.now += 59.5
    assert await allowed(limiter, who) == 1  # Retry-After rounds up
    clock.now += 0.5
    assert await allowed(limiter, who) is True  # a new window
    # A client pacing itself at the rate is never refused.
    passed = 0
    for _ in range(200):
        clock.now += 0.6
        passed += await allowed(limiter, who) is True
    assert passed == 200


async def test_retry_after_is_when_the_next_submit_passes(
    api: httpx.AsyncClient, api_app: FastAPI, clock: FakeClock, unique_name: str
) -> None:  # `api`: its teardown closes the app's Redis client
    services = api_app.state.services
    limiter = SubmitLimiter(services.store, services.engine.keys.rate_limits(), "2/minute", clock=clock)
    who = Principal(owner="o", admin=False, credential=f"key:{unique_name[-40:]}")
    window_start(clock, 60)
    assert [await allowed(limiter, who) for _ in range(2)] == [True, True]
    clock.now += 10
    assert await allowed(limiter, who) == 50  # the window ends 60 s after it began
    clock.now += 49
    assert await allowed(limiter, who) == 1  # still refused a second early, and told so
    clock.now += 1
    assert await allowed(limiter, who) is True
