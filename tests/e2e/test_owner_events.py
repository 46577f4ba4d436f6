"""End to end: GET /v1/events, the stream of every change to the caller's jobs (and its long poll).

Two owners share the queues; each sees only its own jobs' events, by tag and by queue, resumes after
Last-Event-ID, and follows an active job's log lines. `Last-Event-ID: 0~` replays everything the event
streams retain, so a test acts first and reads after, with no race against the stream's start.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from shared.engine import Engine
from shared.models import Outcome, ProgressUpdate
from tests.e2e.test_api_events import parse_sse
from tests.support.api_fixtures import MakeUser, ServedApp

pytestmark = pytest.mark.realredis

FROM_START = {"Last-Event-ID": "0~"}


def echo(message: str, *tags: str) -> dict[str, Any]:
    return {"type": "echo", "payload": {"message": message}, "tags": list(tags)}


async def submit(api: httpx.AsyncClient, headers: dict[str, str], body: dict[str, Any]) -> str:
    response = await api.post("/v1/jobs", json=body, headers=headers)
    assert response.status_code == 201, response.text
    job_id: str = response.json()["id"]
    return job_id


async def run_all(engine: Engine, queue: str, *, progress: int = 50, line: str = "working") -> None:
    """Claim every waiting job of `queue`, report progress and a log line, and complete them."""
    claimed = await engine.claim(queue, 100)
    await engine.report(
        [ProgressUpdate(job_id=c.job.id, token=c.token, progress=progress, logs=[line]) for c in claimed]
    )
    await engine.finish([Outcome(job_id=c.job.id, token=c.token, status="completed") for c in claimed])


def job_events(text: str) -> list[dict[str, Any]]:
    return [e["data"] for e in parse_sse(text) if e["event"] == "job"]


async def test_each_owner_sees_only_its_own_jobs(
    api: httpx.AsyncClient, api_app: FastAPI, make_user: MakeUser
) -> None:
    alice, bob = await make_user("alice"), await make_user("bob")
    alices = {await submit(api, alice, echo(f"a{i}")) for i in range(3)}
    bobs = {await submit(api, bob, echo(f"b{i}")) for i in range(3)}
    engine: Engine = api_app.state.services.engine
    await run_all(engine, "echo")

    for headers, mine, theirs in ((alice, alices, bobs), (bob, bobs, alices)):
        response = await api.get("/v1/events", headers={**headers, **FROM_START})
        assert response.status_code == 200
        updates = job_events(response.text)
        assert not any(other in response.text for other in theirs)  # not even an id
        # One poll read the whole history: one update per job, as it is now, with its log line.
        assert sorted(u["id"] for u in updates) == sorted(mine)
        assert all(u["state"] == "completed" and u["logs"] == ["working"] for u in updates)

    polled = await api.get("/v1/events", params={"wait": 0, "since": "0~"}, headers=alice)
    assert polled.status_code == 200
    assert {u["id"] for u in polled.json()["updates"]} == alices
    carol = await api.get("/v1/events", headers={**(await make_user("carol")), **FROM_START})
    assert job_events(carol.text) == []
    # Yet her position moves past the others' events (a bare id), so a resume does not read them again.
    assert re.search(r"^id: 0~echo=\d+-\d+$", carol.text, re.MULTILINE)


async def test_filter_by_tag_and_queue(api: httpx.AsyncClient, api_app: FastAPI, make_user: MakeUser) -> None:
    alice, bob = await make_user("alice"), await make_user("bob")
    room = await submit(api, alice, echo("in the room", "session:1"))
    await submit(api, alice, echo("elsewhere", "session:2"))
    await submit(api, bob, echo("bob in the same room", "session:1"))  # the tag is per owner
    fetch = await submit(
        api, alice, {"type": "fetch", "payload": {"url": "https://example.com/"}, "tags": ["session:1"]}
    )
    by_tag = await api.get("/v1/events", params={"tag": "session:1"}, headers={**alice, **FROM_START})
    assert {u["id"] for u in job_events(by_tag.text)} == {room, fetch}
    both = await api.get(
        "/v1/events", params={"tag": "session:1", "queue": "outbound"}, headers={**alice, **FROM_START}
    )
    assert {u["id"] for u in job_events(both.text)} == {fetch}
    bad = await api.get("/v1/events", params={"tag": "no spaces"}, headers=alice)
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "tag"


async def test_resumes_after_last_event_id_and_long_polls(
    api: httpx.AsyncClient, api_app: FastAPI, make_user: MakeUser
) -> None:
    alice = await make_user("alice")
    first = await submit(api, alice, echo("first"))
    response = await api.get("/v1/events", headers={**alice, **FROM_START})
    events = parse_sse(response.text)
    assert [e["data"]["id"] for e in events if e["event"] == "job"] == [first]
    resume = [e["id"] for e in events if "id" in e][-1]

    second = await submit(api, alice, echo("second"))
    again = await api.get("/v1/events", headers={**alice, "Last-Event-ID": resume})
    assert [u["id"] for u in job_events(again.text)] == [second]  # the first is not sent again

    # The long poll: nothing new after the last id within the wait, then the next change at once.
    latest = [e["id"] for e in parse_sse(again.text) if "id" in e][-1]
    quiet = await api.get("/v1/events", params={"wait": 0.2, "since": latest}, headers=alice)
    assert quiet.json()["updates"] == []
    third = await submit(api, alice, echo("third"))
    news = (await api.get("/v1/events", params={"wait": 5, "since": latest}, headers=alice)).json()
    assert [u["id"] for u in news["updates"]] == [third]
    assert news["updates"][0]["logs_reset"] is True
    assert news["event_id"] != latest


async def test_follows_an_active_jobs_log_lines_live(
    api_app: FastAPI, api_server: ServedApp, make_user: MakeUser
) -> None:
    """A live stream over a real server: log lines that move no state still arrive, as they are written."""
    alice = await make_user("alice")
    engine: Engine = api_app.state.services.engine
    async with httpx.AsyncClient(base_url=api_server.url, headers=alice, timeout=10) as client:
        job = (await client.post("/v1/jobs", json=echo("live"))).json()["id"]
        [claimed] = await engine.claim("echo", 1)  # active before the stream opens: followed from the start
        async with client.stream("GET", "/v1/events") as stream:
            lines = stream.aiter_lines()
            seen = await read_until(lines, lambda e: e["event"] == "job" and e["data"]["state"] == "active")
            assert seen["data"]["id"] == job and seen["data"]["logs_reset"] is True
            await engine.report([ProgressUpdate(job_id=job, token=claimed.token, logs=["step one"])])
            logged = await read_until(lines, lambda e: e["event"] == "job")
            assert logged["data"]["logs"] == ["step one"] and logged["data"]["logs_reset"] is False


async def read_until(lines: Any, match: Any) -> dict[str, Any]:
    """The next SSE event that `match`es, from a live stream's lines (the stream's time bound ends it)."""
    fields: dict[str, Any] = {}
    async for line in lines:
        if not line:
            if "event" in fields and match(fields):
                return fields
            fields = {}
            continue
        name, _, value = line.partition(": ")
        fields[name] = json.loads(value) if name == "data" else value
    raise AssertionError("the stream ended before the event came")
