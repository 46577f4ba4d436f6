"""jobq.client against the real API (tests/support api fixtures: the gateway on real Redis): the async
client in-process over ASGI, the sync one over HTTP to uvicorn."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from jobq.client import (
    AsyncClient,
    AuthenticationError,
    BadRequestError,
    Client,
    ConflictError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    State,
    TransportError,
    WaitTimeoutError,
    submit_body,
)
from tests.support.api_fixtures import ADMIN_TOKEN, MakeUser, ServedApp

pytestmark = pytest.mark.realredis


def key_of(headers: dict[str, str]) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


@pytest.fixture
async def alice(api_app: FastAPI, make_user: MakeUser) -> AsyncIterator[AsyncClient]:
    key = key_of(await make_user("alice"))
    async with AsyncClient("http://jobq.test", key, transport=httpx.ASGITransport(app=api_app)) as client:
        yield client


async def test_async_submit_get_list_cancel_retry(alice: AsyncClient) -> None:
    job = await alice.submit("echo", {"message": "hi"}, tags=["session:s1"], delay=60, metadata={"n": 1})
    assert (job.created, job.state, job.type, job.owner) == (True, State.DELAYED, "echo", "alice")
    again = await alice.submit("echo", {"message": "x"}, idempotency_key="k1")
    repeat = await alice.submit("echo", {"message": "x"}, idempotency_key="k1")
    assert (again.created, repeat.created, repeat.id) == (True, False, again.id)

    fetched = await alice.get(job.id)
    assert (fetched.id, fetched.payload, fetched.metadata, fetched.tags) == (
        job.id,
        {"message": "hi", "repeat": 1},
        {"n": 1},
        ["session:s1"],
    )
    page = await alice.list(tag="session:s1")
    assert [j.id for j in page.jobs] == [job.id]
    first = await alice.list(limit=1)
    rest = await alice.list(limit=10, cursor=first.cursor)
    assert [j.id for j in first.jobs + rest.jobs] == [again.id, job.id]

    cancelled = await alice.cancel(job.id)
    assert cancelled.state is State.CANCELLED
    retried = await alice.retry(job.id)
    assert retried.state is State.WAITING
    with pytest.raises(ConflictError) as conflict:
        await alice.retry(job.id)
    assert (conflict.value.status, conflict.value.code) == (409, "invalid_transition")


async def test_async_submit_many(alice: AsyncClient) -> None:
    items = await alice.submit_many(
        submit_body("echo", {"message": str(n)}, priority="high") for n in range(3)
    )
    assert [item.index for item in items] == [0, 1, 2]
    assert all(item.created and item.job.priority == 3 for item in items)
    with pytest.raises(BadRequestError) as refused:
        await alice.submit_many([submit_body("echo", {"message": "ok"}), submit_body("echo", {})])
    assert (refused.value.status, refused.value.field) == (422, "jobs[1].payload.message")


async def test_errors_are_typed_with_code_field_and_status(alice: AsyncClient, api_app: FastAPI) -> None:
    with pytest.raises(BadRequestError) as invalid:
        await alice.submit("echo", {"message": "hi", "repeat": 99})
    assert (invalid.value.status, invalid.value.code, invalid.value.field) == (
        422,
        "invalid",
        "payload.repeat",
    )
    with pytest.raises(BadRequestError) as unknown:
        await alice.submit("nope")
    assert (unknown.value.code, unknown.value.field) == ("unknown_type", "type")
    with pytest.raises(NotFoundError) as missing:
        await alice.get("01JAAAAAAAAAAAAAAAAAAAAAAA.echo")
    assert missing.value.status == 404
    with pytest.raises(PermissionDeniedError):
        await alice.queues()
    with pytest.raises(InvalidArgumentError):
        await alice.get("../keys")  # refused before sending: it would be another route
    transport = httpx.ASGITransport(app=api_app)
    async with AsyncClient("http://jobq.test", "jq_wrong_key", transport=transport) as stranger:
        with pytest.raises(AuthenticationError) as denied:
            await stranger.list()
    assert (denied.value.status, denied.value.code) == (401, "unauthorized")
    async with AsyncClient("http://127.0.0.1:9", "k", timeout=2) as nowhere:
        with pytest.raises(TransportError, match="cannot reach"):
            await nowhere.list()


async def test_sync_token_goes_back_with_the_next_request(api_app: FastAPI, make_user: MakeUser) -> None:
    key = key_of(await make_user("bob"))
    sent: list[str | None] = []

    async def record(request: httpx.Request) -> None:
        sent.append(request.headers.get("Jobq-Sync-Token"))

    transport = httpx.ASGITransport(app=api_app)
    async with AsyncClient("http://jobq.test", key, transport=transport) as bob:
        bob._http.event_hooks["request"].append(record)
        job = await bob.submit("echo", {"message": "hi"})
        token = bob.sync_token
        assert token  # the gateway answers every call with a token, and the API hands it on
        await bob.get(job.id)
    assert sent == [None, token]


async def test_async_wait_and_stream_end_at_the_final_state(alice: AsyncClient) -> None:
    job = await alice.submit("echo", {"message": "hi"}, delay=60)
    with pytest.raises(WaitTimeoutError) as late:
        await alice.wait(job.id, timeout=0.3)
    assert (late.value.job_id, late.value.state) == (job.id, "delayed")

    events = alice.stream(job.id)
    first = await anext(events)
    assert first.status is not None and first.status.state is State.DELAYED
    waiting = asyncio.create_task(alice.wait(job.id, timeout=10))
    await alice.cancel(job.id)
    rest = [event async for event in events]
    assert rest[-1].terminal and rest[-1].data["state"] == "cancelled"
    assert (await waiting).state is State.CANCELLED
    # A stream of a job already seen ending (its last event id sent back) ends at once: 204.
    assert [event async for event in alice.stream(job.id, last_event_id=rest[-1].id)] == []


def test_sync_client_over_http(api_server: ServedApp) -> None:
    with Client(api_server.url, ADMIN_TOKEN) as admin:
        created = admin.create_key("carol")
        assert created.key and [k.owner for k in admin.list_keys()] == ["carol"]
    with Client(api_server.url, created.key) as carol:
        job = carol.submit("echo", {"message": "hi"}, delay=60)
        assert carol.get(job.id).state is State.DELAYED
        assert [j.id for j in carol.list().jobs] == [job.id]
        events = carol.stream(job.id)
        assert next(events).data["state"] == "delayed"
        assert carol.cancel(job.id).state is State.CANCELLED
        assert [event.data["state"] for event in events if event.event == "status"] == ["cancelled"]
        assert carol.wait(job.id, timeout=5).state is State.CANCELLED
        with pytest.raises(NotFoundError):
            carol.cancel("01JAAAAAAAAAAAAAAAAAAAAAAA.echo")
    with Client(api_server.url, ADMIN_TOKEN) as admin:
        assert admin.queue("echo").counts[State.CANCELLED] == 1
        assert admin.queue_action("echo", "pause").paused is True
        assert admin.revoke_key(created.id).revoked_at is not None


async def test_stream_reconnects_with_the_last_event_id(
    api_app: FastAPI, make_user: MakeUser, wait_for: Any
) -> None:
    """The server ends a stream after JOBQ_EVENTS_MAX_SECONDS (1 s in these tests); the client opens the
    next one with Last-Event-ID, so it sees the cancel, and not the waiting state twice."""
    key = key_of(await make_user("dora"))
    opened: list[str | None] = []

    async def record(request: httpx.Request) -> None:
        if request.url.path.endswith("/events"):
            opened.append(request.headers.get("Last-Event-ID"))

    async with AsyncClient("http://jobq.test", key, transport=httpx.ASGITransport(app=api_app)) as dora:
        dora._http.event_hooks["request"].append(record)
        job = await dora.submit("echo", {"message": "hi"}, delay=60)
        events = dora.stream(job.id)
        first = await anext(events)
        rest = asyncio.create_task(anext(events))

        async def reconnected() -> bool:
            return len(opened) >= 2

        await wait_for(reconnected, within=10)
        await dora.cancel(job.id)
        second = await rest
    assert opened[:2] == [None, first.id]
    assert (first.data["state"], second.data["state"]) == ("delayed", "cancelled")


async def test_a_backend_mints_a_browser_token_with_the_client(alice: AsyncClient, api_app: FastAPI) -> None:
    mine = await alice.submit("echo", {"message": "hi"}, tags=["session:s9"], delay=60)
    await alice.submit("echo", {"message": "other session"}, delay=60)
    minted = await alice.create_token(tag="session:s9", ttl=60)
    assert (minted.owner, minted.scopes, minted.tag) == ("alice", ["read"], "session:s9")
    transport = httpx.ASGITransport(app=api_app)
    async with AsyncClient("http://jobq.test", minted.token, transport=transport) as browser:
        assert [job.id for job in (await browser.list()).jobs] == [mine.id]  # its tag only
        with pytest.raises(PermissionDeniedError):
            await browser.cancel(mine.id)  # a read-only token
        with pytest.raises(PermissionDeniedError):
            await browser.create_token()  # a browser token cannot mint another
