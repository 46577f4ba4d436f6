"""Sync tokens per request (shared/freshness.py) and the API's Jobq-Sync-Token header, without Redis."""

from __future__ import annotations

import asyncio
import itertools

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from upstash_redis.asyncio import Redis

from functions.api.middleware import RequestIdMiddleware, SyncTokenMiddleware
from shared import freshness

UPSTASH = "Upstash-Sync-Token"


def recording_redis() -> tuple[Redis, list[str]]:
    """An SDK client whose HTTP goes to a stub: it records each request's sync token, answers a new one."""
    sent: list[str] = []
    answers = itertools.count(1)

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers.get(UPSTASH, ""))
        return httpx.Response(200, json={"result": "OK"}, headers={UPSTASH: f"t{next(answers)}"})

    redis = Redis("http://upstash.test", "token", rest_encoding=None, rest_retries=0, allow_telemetry=False)
    redis._http._client = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    freshness.install(redis)
    freshness.install(redis)  # twice is once
    return redis, sent


async def test_a_session_sends_its_token_and_notes_the_answer_leaving_the_client_token_alone() -> None:
    redis, sent = recording_redis()
    await redis.set("k", "v")  # outside a session: the SDK's own token, none yet
    with freshness.session("caller") as current:
        await redis.get("k")
    assert current.token == "t2"
    await redis.get("k")
    assert sent == ["", "caller", "t2"]  # the SDK kept its own token: the last answer's
    with freshness.session() as current:  # no caller's token: the SDK's own goes
        await redis.get("k")
    assert (sent[-1], current.token) == ("t3", "t4")


async def test_concurrent_sessions_on_one_client_send_their_own_tokens() -> None:
    redis, sent = recording_redis()

    async def read(token: str) -> None:
        with freshness.session(token):
            for _ in range(3):
                await redis.get("k")
                await asyncio.sleep(0)

    await asyncio.gather(read("a"), read("b"))
    assert sorted(sent) == ["a", "a", "a", "b", "b", "b"]


def test_install_leaves_anything_but_the_sdk_alone() -> None:
    freshness.install(object())


@pytest.mark.parametrize("text", ["0000000000000042", "AbC+/=._:-~!", "x" * freshness.MAX_TOKEN_CHARS])
def test_tokens_of_visible_ascii_are_taken(text: str) -> None:
    assert freshness.check_token(text) == text


def test_an_empty_token_is_none() -> None:
    assert freshness.check_token("") is None


@pytest.mark.parametrize("text", ["x" * (freshness.MAX_TOKEN_CHARS + 1), "a b", "a\tb", "caf\u00e9", "\x00"])
def test_other_tokens_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="Jobq-Sync-Token"):
        freshness.check_token(text)


def _client() -> tuple[httpx.AsyncClient, list[str]]:
    """An app whose one route makes one Redis call through a recording SDK client."""
    redis, sent = recording_redis()

    async def route(request: Request) -> JSONResponse:
        await redis.get("k")
        return JSONResponse({})

    app = Starlette(
        routes=[Route("/", route)],
        middleware=[Middleware(RequestIdMiddleware), Middleware(SyncTokenMiddleware)],
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api"), sent


async def test_the_middleware_passes_the_header_in_and_the_last_token_out() -> None:
    client, sent = _client()
    async with client:
        response = await client.get("/", headers={"Jobq-Sync-Token": "0042"})
        assert (sent, response.headers["Jobq-Sync-Token"]) == (["0042"], "t1")
        response = await client.get("/")
        assert (sent[-1], response.headers["Jobq-Sync-Token"]) == ("t1", "t2")  # the SDK's own token


@pytest.mark.parametrize(
    "headers",
    [
        [("Jobq-Sync-Token", b"a b")],
        [("Jobq-Sync-Token", b"\xff")],
        [("Jobq-Sync-Token", b"x" * 300)],
        [("Jobq-Sync-Token", b"a"), ("Jobq-Sync-Token", b"b")],
    ],
)
async def test_the_middleware_refuses_a_malformed_header_with_a_400_naming_it(
    headers: list[tuple[str, bytes]],
) -> None:
    client, sent = _client()
    async with client:
        response = await client.get("/", headers=headers)
    assert (response.status_code, sent) == (400, [])
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("invalid_header", "Jobq-Sync-Token")
    assert error["request_id"] == response.headers["x-request-id"]
    assert "jobq-sync-token" not in response.headers
