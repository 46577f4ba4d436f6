"""Push triggers: each kind reaches its target, and a failing target never raises or leaks a secret."""

from __future__ import annotations

import json
import logging

import httpx
import pytest
import respx
from pydantic import SecretStr

from shared.settings import Settings
from shared.triggers import HttpTrigger, LocalTrigger, NoTrigger, QStashTrigger, build_trigger

CONSUMER = "https://consumer.example.com/consume"
SECRET = "consumer-secret-0123456789abcdef"
QSTASH = "https://qstash.example.com"


def settings(**fields: object) -> Settings:
    return Settings(_env_file=None, **fields)  # type: ignore[call-arg]


def test_build_picks_the_kind_and_falls_back_to_cron_when_incomplete() -> None:
    assert isinstance(build_trigger(settings()), NoTrigger)
    assert isinstance(build_trigger(settings(trigger="local")), LocalTrigger)
    assert isinstance(
        build_trigger(settings(trigger="http", consumer_url=CONSUMER, consumer_secret=SECRET)), HttpTrigger
    )
    assert isinstance(build_trigger(settings(trigger="http", consumer_url=CONSUMER)), NoTrigger)
    assert isinstance(build_trigger(settings(trigger="qstash", qstash_token=SecretStr("t"))), NoTrigger)
    made = build_trigger(settings(trigger="qstash", consumer_url=CONSUMER, qstash_token=SecretStr("t")))
    assert isinstance(made, QStashTrigger)


async def test_local_trigger_calls_its_target_and_swallows_errors(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []
    trigger = LocalTrigger()
    await trigger.fire()  # no target yet: nothing happens
    trigger.target = lambda: calls.append(1)
    await trigger.fire()
    assert calls == [1]

    def broken() -> None:
        raise RuntimeError("boom")

    trigger.target = broken
    with caplog.at_level(logging.WARNING):
        await trigger.fire()
    assert "RuntimeError" in caplog.text


async def test_http_trigger_posts_with_the_shared_secret(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(CONSUMER).mock(return_value=httpx.Response(202))
    await HttpTrigger(CONSUMER, SECRET).fire()
    assert route.calls.last.request.headers["authorization"] == f"Bearer {SECRET}"


@pytest.mark.parametrize(
    "answer", [httpx.Response(500), httpx.ConnectError("refused"), httpx.ReadTimeout("slow")]
)
async def test_http_trigger_failures_are_logged_without_the_secret(
    respx_mock: respx.MockRouter, caplog: pytest.LogCaptureFixture, answer: object
) -> None:
    route = respx_mock.post(CONSUMER)
    if isinstance(answer, httpx.Response):
        route.mock(return_value=answer)
    else:
        route.mock(side_effect=answer)
    with caplog.at_level(logging.DEBUG):
        await HttpTrigger(CONSUMER, SECRET).fire()
    assert "http trigger" in caplog.text
    assert SECRET not in caplog.text


async def test_qstash_trigger_publishes_to_the_consumer(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(f"{QSTASH}/v2/publish/{CONSUMER}").mock(
        return_value=httpx.Response(201, json={"messageId": "msg_1"})
    )
    await QStashTrigger(CONSUMER, "qstash-token-secret", base_url=QSTASH).fire()
    request = route.calls.last.request
    assert request.headers["authorization"] == "Bearer qstash-token-secret"
    assert json.loads(request.content) == {}


async def test_qstash_trigger_failure_never_raises(
    respx_mock: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    respx_mock.post(url__startswith=QSTASH).mock(
        return_value=httpx.Response(401, json={"error": "bad token"})
    )
    with caplog.at_level(logging.DEBUG):
        await QStashTrigger(CONSUMER, "qstash-token-secret", base_url=QSTASH).fire()
    assert "qstash trigger failed" in caplog.text
    assert "qstash-token-secret" not in caplog.text
