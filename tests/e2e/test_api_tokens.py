"""End to end: browser tokens (POST /v1/tokens) and their scopes, on every route a browser reaches.

A read-only token reads but cannot submit, retry or cancel; a tag-narrowed token sees only its tag's jobs
(list, get, cancel, events); expired, forged and tampered tokens are 401 with the one error shape; a
token in a URL works on the event routes only and is never logged.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from functions.api.tokens import BrowserTokens, Grant
from shared.logs import ACCESS_LOGGER
from tests.e2e.test_api_events import parse_sse
from tests.support.api_fixtures import MakeUser

pytestmark = pytest.mark.realredis

FROM_START = {"Last-Event-ID": "0~"}


def echo(message: str, *tags: str) -> dict[str, Any]:
    return {"type": "echo", "payload": {"message": message}, "tags": list(tags)}


async def mint(api: httpx.AsyncClient, key: dict[str, str], **body: Any) -> str:
    response = await api.post("/v1/tokens", json=body, headers=key)
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    token: str = response.json()["token"]
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"]


async def test_a_token_names_the_keys_owner_for_at_most_an_hour(
    api: httpx.AsyncClient, make_user: MakeUser
) -> None:
    alice = await make_user("alice")
    response = await api.post("/v1/tokens", json={"scopes": ["cancel"], "ttl_seconds": 600}, headers=alice)
    assert response.status_code == 201
    body = response.json()
    assert body["owner"] == "alice" and body["scopes"] == ["cancel", "read"] and body["tag"] is None
    lifetime = time.mktime(time.strptime(body["expires_at"][:19], "%Y-%m-%dT%H:%M:%S")) - time.mktime(
        time.gmtime()
    )
    assert 590 <= lifetime <= 610
    too_long = await api.post("/v1/tokens", json={"ttl_seconds": 3601}, headers=alice)
    assert_error(too_long, 422, "invalid")
    assert too_long.json()["error"]["field"] == "ttl_seconds"
    bad_scope = await api.post("/v1/tokens", json={"scopes": ["admin"]}, headers=alice)
    assert_error(bad_scope, 422, "invalid")
    # A browser token cannot mint another (nor outlive its own hour that way).
    again = await api.post("/v1/tokens", json={}, headers=bearer(body["token"]))
    assert_error(again, 403, "forbidden")
    assert_error(await api.post("/v1/tokens", json={}), 401, "unauthorized")


async def test_a_read_only_token_reads_but_cannot_submit_retry_or_cancel(
    api: httpx.AsyncClient, make_user: MakeUser
) -> None:
    alice = await make_user("alice")
    job = (await api.post("/v1/jobs", json=echo("mine"), headers=alice)).json()["id"]
    reader = bearer(await mint(api, alice))
    assert (await api.get(f"/v1/jobs/{job}", headers=reader)).status_code == 200
    assert [j["id"] for j in (await api.get("/v1/jobs", headers=reader)).json()["jobs"]] == [job]
    assert_error(await api.post("/v1/jobs", json=echo("no"), headers=reader), 403, "forbidden")
    assert_error(
        await api.post("/v1/jobs/batch", json={"jobs": [echo("no")]}, headers=reader), 403, "forbidden"
    )
    assert_error(await api.delete(f"/v1/jobs/{job}", headers=reader), 403, "forbidden")
    assert_error(await api.post(f"/v1/jobs/{job}/retry", headers=reader), 403, "forbidden")
    assert (await api.get(f"/v1/jobs/{job}", headers=alice)).json()["state"] == "waiting"  # untouched
    assert_error(await api.get("/v1/queues", headers=reader), 403, "forbidden")  # never admin

    writer = bearer(await mint(api, alice, scopes=["submit", "cancel"]))
    second = await api.post("/v1/jobs", json=echo("yes"), headers=writer)
    assert second.status_code == 201 and second.json()["owner"] == "alice"
    assert (await api.delete(f"/v1/jobs/{job}", headers=writer)).json()["state"] == "cancelled"
    assert (await api.post(f"/v1/jobs/{job}/retry", headers=writer)).json()["state"] == "waiting"
    bob = await make_user("bob")  # alice's token never reaches bob's jobs
    bobs = (await api.post("/v1/jobs", json=echo("bob's"), headers=bob)).json()["id"]
    assert_error(await api.delete(f"/v1/jobs/{bobs}", headers=writer), 404, "not_found")


async def test_a_tag_narrowed_token_sees_only_its_tags_jobs(
    api: httpx.AsyncClient, make_user: MakeUser
) -> None:
    alice = await make_user("alice")
    room = (await api.post("/v1/jobs", json=echo("here", "session:1"), headers=alice)).json()["id"]
    other = (await api.post("/v1/jobs", json=echo("there", "session:2"), headers=alice)).json()["id"]
    token = await mint(api, alice, tag="session:1", scopes=["submit", "cancel"])
    narrow = bearer(token)

    assert [j["id"] for j in (await api.get("/v1/jobs", headers=narrow)).json()["jobs"]] == [room]
    assert_error(await api.get("/v1/jobs", params={"tag": "session:2"}, headers=narrow), 403, "forbidden")
    assert_error(await api.get(f"/v1/jobs/{other}", headers=narrow), 404, "not_found")
    assert_error(await api.delete(f"/v1/jobs/{other}", headers=narrow), 404, "not_found")
    assert_error(await api.post(f"/v1/jobs/{other}/retry", headers=narrow), 404, "not_found")
    assert_error(
        await api.get(f"/v1/jobs/{other}/events", params={"wait": 0}, headers=narrow), 404, "not_found"
    )
    assert (await api.get(f"/v1/jobs/{other}", headers=alice)).json()["state"] == "waiting"
    # What it submits carries its tag, so it sees it.
    made = (await api.post("/v1/jobs", json=echo("new"), headers=narrow)).json()
    assert made["tags"] == ["session:1"]

    stream = await api.get("/v1/events", params={"access_token": token}, headers=FROM_START)
    ids = {e["data"]["id"] for e in parse_sse(stream.text) if e["event"] == "job"}
    assert ids == {room, made["id"]}
    other_tag = await api.get("/v1/events", params={"access_token": token, "tag": "session:2"})
    assert_error(other_tag, 403, "forbidden")


async def test_expired_forged_and_tampered_tokens_are_401(
    api: httpx.AsyncClient, api_app: FastAPI, make_user: MakeUser
) -> None:
    alice = await make_user("alice")
    token = await mint(api, alice)
    settings = api_app.state.services.settings
    grant = Grant("alice", "key:x", frozenset({"read"}))
    expired, _ = BrowserTokens(settings, clock=lambda: time.time() - 3600).mint(grant, 600)
    head, body, signature = token.split(".")
    tampered = f"{head}.{body[:-2]}{'A' if body[-2] != 'A' else 'B'}{body[-1]}.{signature}"
    # Forged: signed with a key that is not this deployment's (here: the admin token itself).
    other_key = BrowserTokens(settings.model_copy(update={"browser_token_secret": settings.admin_token}))
    forged, _ = other_key.mint(grant, 600)
    for bad in (expired, tampered, forged, token + "x", "jqt_"):
        assert_error(await api.get("/v1/jobs", headers=bearer(bad)), 401, "unauthorized")
        assert_error(await api.get("/v1/events", params={"access_token": bad}), 401, "unauthorized")
    assert "expired" in (await api.get("/v1/jobs", headers=bearer(expired))).json()["error"]["message"]


async def test_a_token_in_a_url_works_only_on_event_routes_and_is_never_logged(
    api: httpx.AsyncClient, make_user: MakeUser, caplog: pytest.LogCaptureFixture
) -> None:
    alice = await make_user("alice")
    job = (await api.post("/v1/jobs", json=echo("watch"), headers=alice)).json()["id"]
    token = await mint(api, alice)
    caplog.set_level(logging.DEBUG)
    job_stream = await api.get(f"/v1/jobs/{job}/events", params={"wait": 0, "access_token": token})
    assert job_stream.status_code == 200 and job_stream.json()["status"]["id"] == job
    assert (await api.get("/v1/events", params={"wait": 0, "access_token": token})).status_code == 200
    # Anywhere else the query parameter is no credential; and a long-lived key is refused in a URL.
    assert_error(await api.get("/v1/jobs", params={"access_token": token}), 401, "unauthorized")
    assert_error(await api.get(f"/v1/jobs/{job}", params={"access_token": token}), 401, "unauthorized")
    key = alice["Authorization"].removeprefix("Bearer ")
    assert_error(await api.get("/v1/events", params={"access_token": key}), 401, "unauthorized")
    logged = [r for r in caplog.records if r.name == ACCESS_LOGGER]
    assert len(logged) >= 6
    everything = caplog.text + " ".join(str(vars(r)) for r in caplog.records)
    assert token not in everything and key not in everything
    assert "access_token" not in everything
