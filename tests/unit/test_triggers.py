"""Push triggers: each kind reaches its lane's target, now or after a delay, and a failing target never
raises or leaks a secret."""

from __future__ import annotations

import asyncio
import json
import logging

import httpx
import pytest
import respx
from pydantic import SecretStr

from shared import triggers
from shared.settings import Settings
from shared.triggers import HttpTrigger, LocalTrigger, NoTrigger, QStashTrigger, build_trigger, wake_second

CONSUMER = "https://consumer.example.com/consume"
LONG = "https://long.example.com/consume"
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
    await trigger.fire("standard")  # no target yet: nothing happens
    trigger.target = lambda: calls.append(1)
    await trigger.fire("standard")
    await trigger.fire("long")  # the local consumer serves every lane
    assert calls == [1, 1]

    def broken() -> None:
        raise RuntimeError("boom")

    trigger.target = broken
    with caplog.at_level(logging.WARNING):
        await trigger.fire("standard")
    assert "RuntimeError" in caplog.text


async def test_http_trigger_posts_with_the_shared_secret(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(CONSUMER).mock(return_value=httpx.Response(202))
    await HttpTrigger(CONSUMER, SECRET).fire("standard")
    assert route.calls.last.request.headers["authorization"] == f"Bearer {SECRET}"
    assert json.loads(route.calls.last.request.content) == {"lane": "standard"}


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
        await HttpTrigger(CONSUMER, SECRET).fire("standard")
    assert "http trigger" in caplog.text
    assert SECRET not in caplog.text


async def test_qstash_trigger_publishes_to_the_consumer(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(f"{QSTASH}/v2/publish/{CONSUMER}").mock(
        return_value=httpx.Response(201, json={"messageId": "msg_1"})
    )
    await QStashTrigger(CONSUMER, "qstash-token-secret", base_url=QSTASH).fire("standard")
    request = route.calls.last.request
    assert request.headers["authorization"] == "Bearer qstash-token-secret"
    assert json.loads(request.content) == {"lane": "standard"}
    # An immediate wake is neither delayed nor deduplicated (the engine's pending flag coalesces submits).
    assert "upstash-delay" not in request.headers
    assert "upstash-deduplication-id" not in request.headers


async def test_qstash_trigger_failure_never_raises(
    respx_mock: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    respx_mock.post(url__startswith=QSTASH).mock(
        return_value=httpx.Response(401, json={"error": "bad token"})
    )
    with caplog.at_level(logging.DEBUG):
        await QStashTrigger(CONSUMER, "qstash-token-secret", base_url=QSTASH).fire("standard")
    assert "qstash trigger for lane standard failed: QStashError" in caplog.text
    assert "qstash-token-secret" not in caplog.text


# Delayed wakes.


@pytest.mark.parametrize(
    ("now", "delay", "second"),
    [(1000.0, 1.0, 1001), (1000.25, 1.0, 1002), (1000.9, 0.05, 1001), (1000.0, 0.001, 1001)],
)
def test_a_wake_second_is_never_before_the_due_time(now: float, delay: float, second: int) -> None:
    assert wake_second(now, delay) == second
    assert second >= now + delay


async def test_qstash_delayed_wake_carries_a_delay_and_a_deduplication_id(
    respx_mock: respx.MockRouter,
) -> None:
    route = respx_mock.post(f"{QSTASH}/v2/publish/{CONSUMER}").mock(
        return_value=httpx.Response(201, json={"messageId": "msg_1"})
    )
    clock = iter([1000.25, 1000.9])
    trigger = QStashTrigger(CONSUMER, "t", base_url=QSTASH, clock=lambda: next(clock))
    await trigger.fire("standard", delay=1.0)  # due at 1001.25: wakes in second 1002
    await trigger.fire("standard", delay=0.5)  # due at 1001.4: the same second
    first, second = (call.request for call in route.calls)
    assert first.headers["upstash-delay"] == "2s"  # 1000.25 + 2 s lands in 1002, not before
    assert second.headers["upstash-delay"] == "2s"
    assert first.headers["upstash-deduplication-id"] == "wake-standard-1002"
    assert second.headers["upstash-deduplication-id"] == "wake-standard-1002"  # QStash keeps one


async def test_qstash_wakes_of_other_lanes_or_seconds_are_distinct(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(url__startswith=QSTASH).mock(
        return_value=httpx.Response(201, json={"messageId": "msg_1"})
    )
    trigger = QStashTrigger(CONSUMER, "t", base_url=QSTASH, clock=lambda: 1000.0)
    await trigger.fire("standard", delay=1.0)
    await trigger.fire("long", delay=1.0)
    await trigger.fire("standard", delay=2.0)
    ids = [call.request.headers["upstash-deduplication-id"] for call in route.calls]
    assert ids == ["wake-standard-1001", "wake-long-1001", "wake-standard-1002"]


async def test_qstash_trigger_gives_up_after_its_timeout(
    respx_mock: respx.MockRouter, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(triggers, "HTTP_TIMEOUT", 0.05)

    async def hang(request: httpx.Request) -> httpx.Response:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    respx_mock.post(url__startswith=QSTASH).mock(side_effect=hang)
    with caplog.at_level(logging.WARNING):
        await QStashTrigger(CONSUMER, "t", base_url=QSTASH).fire("standard", delay=3.0)
    assert "qstash trigger for lane standard failed: TimeoutError" in caplog.text


async def test_http_trigger_cannot_delay_and_leaves_it_to_cron(
    respx_mock: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    route = respx_mock.post(CONSUMER).mock(return_value=httpx.Response(202))
    with caplog.at_level(logging.DEBUG, logger="shared.triggers"):
        await HttpTrigger(CONSUMER, SECRET).fire("standard", delay=5.0)
    assert not route.called
    assert "cannot delay" in caplog.text


async def test_local_trigger_leaves_a_delayed_wake_to_the_local_tick() -> None:
    calls: list[int] = []
    trigger = LocalTrigger(lambda: calls.append(1))
    await trigger.fire("standard", delay=2.0)
    assert calls == []


async def test_no_trigger_does_nothing() -> None:
    await NoTrigger().fire("standard")
    await NoTrigger().fire("long", delay=3.0)


# Per-lane push URLs, resolved when the trigger fires.


@pytest.mark.parametrize("kind", ["http", "qstash"])
async def test_each_lane_is_pushed_to_its_own_url_or_the_shared_one(
    respx_mock: respx.MockRouter, kind: str
) -> None:
    long_route = respx_mock.post(url__regex=r".*long\.example\.com/consume$").mock(
        return_value=httpx.Response(201, json={"messageId": "msg_l"})
    )
    shared_route = respx_mock.post(url__regex=r".*consumer\.example\.com/consume$").mock(
        return_value=httpx.Response(201, json={"messageId": "msg_s"})
    )
    trigger = build_trigger(
        settings(
            trigger=kind,
            consumer_url=CONSUMER,
            consumer_urls={"long": LONG},
            consumer_secret=SECRET,
            qstash_token=SecretStr("t"),
            qstash_url=QSTASH,
        )
    )
    await trigger.fire("long")
    await trigger.fire("standard")
    assert long_route.call_count == 1 and shared_route.call_count == 1


async def test_a_lane_without_a_url_is_warned_about_once_and_left_to_cron(
    respx_mock: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    route = respx_mock.post(url__startswith=QSTASH).mock(
        return_value=httpx.Response(201, json={"messageId": "msg_1"})
    )
    made = settings(
        trigger="qstash", consumer_urls={"long": LONG}, qstash_token=SecretStr("t"), qstash_url=QSTASH
    )
    trigger = build_trigger(made)
    assert isinstance(trigger, QStashTrigger)
    with caplog.at_level(logging.WARNING):
        await trigger.fire("standard")
        await trigger.fire("standard", delay=2.0)
        await trigger.fire("long")
    assert caplog.text.count("no push URL for lane standard") == 1
    assert route.call_count == 1 and route.calls.last.request.url.path.endswith("long.example.com/consume")


def test_urls_are_looked_up_at_fire_time() -> None:
    urls = {"standard": CONSUMER}
    lane_urls = triggers.LaneUrls(urls.get)
    assert lane_urls.get("standard") == CONSUMER
    urls["standard"] = LONG
    assert lane_urls.get("standard") == LONG
