"""End to end: the job event stream (SSE, bounded, Last-Event-ID) and its long-poll form for API Gateway."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from shared.engine import Engine
from shared.models import Outcome, ProgressUpdate
from tests.support.api_fixtures import MakeUser, ServedApp

pytestmark = pytest.mark.realredis

ECHO = {"type": "echo", "payload": {"message": "hi"}}


def parse_sse(text: str) -> list[dict[str, Any]]:
    """Events as dicts with `event`, `id` (if given) and decoded `data`; comments and retry lines dropped."""
    events = []
    for block in text.split("\n\n"):
        fields: dict[str, Any] = {}
        for line in block.splitlines():
            name, _, value = line.partition(": ")
            if name in ("event", "id"):
                fields[name] = value
            elif name == "data":
                fields["data"] = json.loads(value)
        if "event" in fields:
            events.append(fields)
    return events


async def start_job(api: httpx.AsyncClient, app: FastAPI, headers: dict[str, str]) -> tuple[str, str]:
    job_id = (await api.post("/v1/jobs", json=ECHO, headers=headers)).json()["id"]
    engine: Engine = app.state.services.engine
    [claimed] = await engine.claim("echo", 1)
    await engine.report(
        [ProgressUpdate(job_id=job_id, token=claimed.token, progress=40, logs=["one", "two"])]
    )
    return job_id, claimed.token


async def test_stream_sends_state_and_logs_then_resumes_after_last_event_id(
    api: httpx.AsyncClient, api_app: FastAPI, make_user: MakeUser
) -> None:
    user = await make_user()
    job_id, token = await start_job(api, api_app, user)

    # The job stays active: the stream shows its state and ends at its time bound.
    first = await api.get(f"/v1/jobs/{job_id}/events", headers=user)
    assert first.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(first.text)
    assert [e["event"] for e in events] == ["log", "log", "status"]
    assert [e["data"]["line"] for e in events[:2]] == ["one", "two"]
    assert (events[2]["data"]["state"], events[2]["data"]["progress"]) == ("active", 40)

    engine: Engine = api_app.state.services.engine
    await engine.report([ProgressUpdate(job_id=job_id, token=token, logs=["three"])])
    await engine.finish([Outcome(job_id=job_id, token=token, status="completed", result={"ok": True})])

    resumed = await api.get(f"/v1/jobs/{job_id}/events", headers={**user, "Last-Event-ID": events[2]["id"]})
    events = parse_sse(resumed.text)
    assert [e["event"] for e in events] == ["log", "status"]
    assert events[0]["data"]["line"] == "three"
    assert (events[1]["data"]["state"], events[1]["data"]["result"]) == ("completed", {"ok": True})

    done = await api.get(f"/v1/jobs/{job_id}/events", headers={**user, "Last-Event-ID": events[1]["id"]})
    assert done.status_code == 204  # tells EventSource to stop reconnecting


async def test_stream_follows_a_job_live_to_its_end_over_uvicorn(
    api: httpx.AsyncClient, api_app: FastAPI, api_server: ServedApp, make_user: MakeUser
) -> None:
    user = await make_user()
    job_id, token = await start_job(api, api_app, user)
    engine: Engine = api_app.state.services.engine
    received: list[dict[str, Any]] = []
    async with (
        httpx.AsyncClient(base_url=api_server.url, timeout=10) as client,
        client.stream("GET", f"/v1/jobs/{job_id}/events", headers=user) as stream,
    ):
        buffer = ""
        async for chunk in stream.aiter_text():
            buffer += chunk
            received = parse_sse(buffer)
            if received and received[-1]["event"] == "status" and received[-1]["data"]["state"] == "active":
                await engine.finish([Outcome(job_id=job_id, token=token, status="completed", result=7)])
    assert received[-1]["data"]["state"] == "completed"
    assert received[-1]["data"]["result"] == 7


async def test_long_poll_answers_at_once_on_news_or_after_the_wait(
    api: httpx.AsyncClient, api_app: FastAPI, make_user: MakeUser
) -> None:
    user = await make_user()
    job_id, token = await start_job(api, api_app, user)
    first = (await api.get(f"/v1/jobs/{job_id}/events", params={"wait": 5}, headers=user)).json()
    assert (first["changed"], first["status"]["progress"], first["logs"]) == (True, 40, ["one", "two"])

    started = time.monotonic()
    quiet = (
        await api.get(
            f"/v1/jobs/{job_id}/events", params={"wait": 0.3, "since": first["event_id"]}, headers=user
        )
    ).json()
    assert time.monotonic() - started >= 0.3
    assert (quiet["changed"], quiet["logs"]) == (False, [])

    engine: Engine = api_app.state.services.engine

    async def finish_soon() -> None:
        await asyncio.sleep(0.2)
        await engine.finish([Outcome(job_id=job_id, token=token, status="completed", result="r")])

    waiter = api.get(
        f"/v1/jobs/{job_id}/events", params={"wait": 10}, headers={**user, "Last-Event-ID": first["event_id"]}
    )
    started = time.monotonic()
    news, _ = await asyncio.gather(waiter, finish_soon())
    assert time.monotonic() - started < 5
    body = news.json()
    assert (body["changed"], body["terminal"], body["status"]["state"]) == (True, True, "completed")

    too_long = await api.get(f"/v1/jobs/{job_id}/events", params={"wait": 1000}, headers=user)
    assert (too_long.status_code, too_long.json()["error"]["field"]) == (422, "wait")
