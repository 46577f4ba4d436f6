"""`callback_url` at the API: hostile ones refused with a 422 naming the field and nothing written; a
cancel that makes a delivery job due asks for a consumer run."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from functions.api.app import create_app
from shared.engine import Engine
from shared.limits import CALLBACK_TYPE
from shared.models import State
from shared.registry import Registry
from shared.settings import Settings, get_settings
from tests.abuse.conftest import Snapshot
from tests.support.api_fixtures import ADMIN_HEADERS, MakeUser, asgi_client

pytestmark = pytest.mark.realredis

REFUSED: list[Any] = [
    "file:///etc/passwd",
    "gopher://127.0.0.1:6379/_FLUSHALL",
    "ftp://example.com/",
    "javascript:alert(1)",
    "http://",
    "not a url",
    "",
    "https://example.com/" + "a" * 2100,  # longer than MAX_CALLBACK_URL
    "http://127.0.0.1:8000/hook",
    "http://localhost/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]/",
    "http://10.0.0.1/",
    "http://0.0.0.0/",
    123,
    ["https://example.com/"],
    {"url": "https://example.com/"},
    True,
]


@pytest.fixture
def no_private_urls(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.delenv("JOBQ_ALLOW_PRIVATE_URLS", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


async def test_hostile_callback_urls_are_refused(
    api: httpx.AsyncClient, make_user: MakeUser, key_snapshot: Snapshot, no_private_urls: None
) -> None:
    user = await make_user("mallory")
    before = await key_snapshot()
    for url in REFUSED:
        body = {"type": "echo", "payload": {"message": "hi"}, "callback_url": url}
        response = await api.post("/v1/jobs", json=body, headers=user)
        assert response.status_code == 422, (url, response.text)
        assert response.json()["error"]["field"] == "callback_url", (url, response.json())
        batch = await api.post("/v1/jobs/batch", json={"jobs": [body]}, headers=user)
        assert batch.status_code == 422, (url, batch.text)
        assert batch.json()["error"]["field"] == "jobs[0].callback_url", (url, batch.json())
    assert await key_snapshot() == before


async def test_a_public_callback_url_is_kept_and_shown_to_its_owner(
    api: httpx.AsyncClient, make_user: MakeUser, no_private_urls: None
) -> None:
    user = await make_user("alice")
    body = {"type": "echo", "payload": {"message": "hi"}, "callback_url": "https://hooks.example.com/j?k=1"}
    created = await api.post("/v1/jobs", json=body, headers=user)
    assert created.status_code == 201, created.text
    assert created.json()["callback_url"] == "https://hooks.example.com/j?k=1"
    read = await api.get(f"/v1/jobs/{created.json()['id']}", headers=user)
    assert read.json()["callback_url"] == "https://hooks.example.com/j?k=1"


async def test_private_callback_urls_are_allowed_for_local_development(
    api: httpx.AsyncClient, make_user: MakeUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBQ_ALLOW_PRIVATE_URLS", "true")
    get_settings.cache_clear()
    user = await make_user("dev")
    body = {"type": "echo", "payload": {"message": "hi"}, "callback_url": "http://127.0.0.1:3000/done"}
    response = await api.post("/v1/jobs", json=body, headers=user)
    get_settings.cache_clear()
    assert response.status_code == 201, response.text


class LaneRecorder:
    def __init__(self) -> None:
        self.lanes: list[str] = []

    async def fire(self, lane: str, *, delay: float = 0.0) -> None:
        self.lanes.append(lane)


async def test_cancelling_a_waiting_job_with_a_callback_asks_for_a_consumer_run(
    api_settings: Settings, api_registry: Registry, no_private_urls: None
) -> None:
    """Its delivery job is due at once: the API asks the shortest lane for a run, as a submit does."""
    trigger = LaneRecorder()
    app = create_app(api_settings, registry=api_registry, trigger=trigger)
    engine: Engine = app.state.services.engine
    async with asgi_client(app) as client:
        plain = {"type": "echo", "payload": {"message": "hi"}, "delay_seconds": 60}
        hooked = {**plain, "callback_url": "https://hooks.example.com/done"}
        first = (await client.post("/v1/jobs", json=plain, headers=ADMIN_HEADERS)).json()
        second = (await client.post("/v1/jobs", json=hooked, headers=ADMIN_HEADERS)).json()
        submitted = list(trigger.lanes)
        assert (await client.delete(f"/v1/jobs/{first['id']}", headers=ADMIN_HEADERS)).status_code == 200
        assert trigger.lanes == submitted  # no callback: nothing to run
        assert (await client.delete(f"/v1/jobs/{second['id']}", headers=ADMIN_HEADERS)).status_code == 200
        assert trigger.lanes == [*submitted, api_settings.lane_set.names[0]]
        [delivery] = (await engine.list_jobs(queue="echo", state=State.WAITING)).jobs
        assert (delivery.type, delivery.payload["job"]) == (CALLBACK_TYPE, second["id"])
    await app.state.services.redis.close()
