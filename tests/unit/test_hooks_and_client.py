"""Pure logic of hooks registration and of the Python client (no Redis, no server)."""

from __future__ import annotations

import httpx
import pytest
from pydantic import BaseModel

from jobq.client import calls, errors
from jobq.client.models import SseParser
from shared.errors import UnknownJobTypeError
from shared.models import Job, State
from shared.registry import Registry


class Empty(BaseModel):
    pass


async def handler(payload: Empty, ctx: object) -> None:
    return None


def test_hooks_mark_the_jobs_of_their_type() -> None:
    registry = Registry()
    registry.job_type("plain", payload=Empty)(handler)
    registry.job_type("hooked", payload=Empty)(handler)

    @registry.on_failed("hooked")
    def on_failed(job: Job) -> None:
        return None

    assert registry.get("hooked").hooks == {State.FAILED: [on_failed]}
    assert registry.get("hooked").spec({}, owner="a").notify is True
    assert registry.get("plain").spec({}, owner="a").notify is False
    assert registry.get("plain").spec({}, owner="a", callback_url="https://x.example/").callback_url
    with pytest.raises(ValueError, match="not a final state"):
        registry.on(State.ACTIVE, "hooked")
    with pytest.raises(UnknownJobTypeError):
        registry.on_complete("missing")(on_failed)


def test_error_answers_become_typed_errors() -> None:
    def answer(status: int, body: object, **headers: str) -> Exception:
        return calls.error_of(httpx.Response(status, json=body, headers=headers))

    detail = {"error": {"code": "invalid", "message": "bad", "field": "payload.n"}}
    invalid = answer(422, detail)
    assert isinstance(invalid, errors.BadRequestError)
    assert (invalid.status, invalid.code, invalid.field, invalid.message) == (
        422,
        "invalid",
        "payload.n",
        "bad",
    )
    limited = answer(429, {"error": {"code": "rate_limited", "message": "slow down"}}, **{"Retry-After": "7"})
    assert isinstance(limited, errors.RateLimitedError) and limited.retry_after == 7.0
    assert isinstance(
        answer(503, {"error": {"code": "store_unavailable", "message": "x"}}), errors.ServerError
    )
    assert isinstance(answer(404, {"error": {"code": "not_found", "message": "x"}}), errors.NotFoundError)
    assert isinstance(answer(502, {"not": "ours"}), errors.TransportError)  # a proxy's page, not the API's
    assert isinstance(calls.error_of(httpx.Response(500, text="<html>")), errors.TransportError)


def test_arguments_that_cannot_be_sent_are_refused_before_sending() -> None:
    for bad in ("", ".", "..", "a/b", "a?b", "a#b", "a%2f", "a b", "a\\b"):
        with pytest.raises(errors.InvalidArgumentError):
            calls.segment(bad)
    with pytest.raises(errors.InvalidArgumentError):
        calls.settings("ftp://example.com", None)
    with pytest.raises(errors.InvalidArgumentError, match="API key") as refused:
        calls.settings("http://x", "two words")
    assert "two words" not in str(refused.value)  # never echoed


def test_server_sent_events_are_parsed_as_sent() -> None:
    parser = SseParser()
    lines = [
        "retry: 2000",
        "",
        ": keep-alive",
        "",
        "event: log",
        'data: {"line": "hi"}',
        "",
        "id: waiting.0.0.0.1.abcdef01",
        "event: status",
        'data: {"id": "j", "state": "completed"}',
        "",
    ]
    events = [event for line in lines if (event := parser.feed(line)) is not None]
    assert [(e.event, e.id) for e in events] == [("log", None), ("status", "waiting.0.0.0.1.abcdef01")]
    assert events[0].data == {"line": "hi"} and events[1].terminal
    assert parser.last_id == "waiting.0.0.0.1.abcdef01"
