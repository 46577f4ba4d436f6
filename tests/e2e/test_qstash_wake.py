"""Delayed wakes through a local QStash: QStashTrigger publishes with the real SDK, the emulator holds the
message, signs it and delivers it to a real consumer push app on loopback, which verifies the signature
with `qstash.Receiver` and drains. Also the emulator's own contract: auth, loopback-only destinations,
delays, deduplication, forwarded headers and retries."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from qstash import AsyncQStash, Receiver

from functions.consumer.push import create_push_app
from functions.consumer.runtime import PUSH_PATH, ConsumerRuntime, build_runtime, run_bounded
from shared.consumer import ConsumerConfig
from shared.models import State
from shared.registry import Registry
from shared.settings import Settings
from shared.triggers import QStashTrigger, build_trigger
from tests.support.consumer_fixtures import Submit
from tests.support.engine_fixtures import FakeClock
from tests.support.qstash_server import LoopbackServer, QStashEmulator
from tests.support.receiver import Receiver as Destination


@dataclass
class PushConsumer:
    url: str  # the push endpoint, as QStash is told to call it
    settings: Settings
    runtime: ConsumerRuntime


@pytest.fixture
def push_consumer(
    qstash: QStashEmulator, consumer_settings: Settings, consumer_registry: Registry
) -> Iterator[PushConsumer]:
    """The consumer's push app on a loopback port, configured with the emulator's token and signing keys."""
    server = LoopbackServer()
    url = f"{server.url}{PUSH_PATH}"
    # Budget: the "echo" test type (timeout 5 s) needs its timeout + 2 s left to be claimed.
    settings = qstash.configure(consumer_settings, consumer_url=url, push_budget=10.0)
    runtime = build_runtime(settings, registry=consumer_registry)
    # The runtime's Redis client is used, and closed, on the server's event loop only.
    with server.start(create_push_app(runtime), cleanup=runtime.redis.close):
        yield PushConsumer(url=url, settings=settings, runtime=runtime)


async def test_a_delayed_wake_reaches_the_consumer_when_the_job_is_due(
    qstash: QStashEmulator, push_consumer: PushConsumer, submit: Submit, make_runtime: Any
) -> None:
    [job_id] = await submit("echo", {"value": "woken"}, delay=1.0)
    trigger = build_trigger(push_consumer.settings)
    assert isinstance(trigger, QStashTrigger)
    fired = time.time()
    await trigger.fire("standard", delay=1.0)

    [publish] = qstash.publishes
    assert publish.destination == push_consumer.url and not publish.deduplicated
    assert publish.deduplication_id is not None and publish.deduplication_id.startswith("wake-standard-")
    assert 1.0 <= publish.delay <= 2.0  # whole seconds, rounded up into the wake second
    delivery = await qstash.delivered(publish.message_id, within=15)
    assert delivery.status == 200, delivery.reply
    assert delivery.retried == 0 and delivery.headers["Upstash-Message-Id"] == publish.message_id
    assert delivery.at - fired >= 1.0  # never before the due time
    assert delivery.at - fired < 10.0  # "about a second": a generous bound for a loaded machine
    reply = json.loads(delivery.reply)
    assert reply["duplicate"] is False and reply["report"]["completed"] == 1
    job = await make_runtime().engine.get(job_id)
    assert job.state == State.COMPLETED and job.result == "woken"


async def test_two_wakes_for_the_same_second_publish_one_message(
    qstash: QStashEmulator, push_consumer: PushConsumer
) -> None:
    settings = push_consumer.settings
    now = time.time()
    token = settings.qstash_token.get_secret_value() if settings.qstash_token else ""
    first = QStashTrigger(settings.push_url, token, settings.qstash_url, clock=lambda: now)
    second = QStashTrigger(settings.push_url, token, settings.qstash_url, clock=lambda: now + 0.01)
    await first.fire("standard", delay=1.0)
    await second.fire("standard", delay=1.0)  # another run, asking for the same wake second

    publishes = qstash.publishes
    assert [p.deduplicated for p in publishes] == [False, True]
    assert publishes[0].message_id == publishes[1].message_id
    delivery = await qstash.delivered(within=15)  # fails if more than one message was kept
    assert delivery.status == 200
    assert len(qstash.deliveries) == 1


async def test_a_replayed_signature_with_another_body_is_refused(
    qstash: QStashEmulator, push_consumer: PushConsumer
) -> None:
    await build_trigger(push_consumer.settings).fire("standard")
    delivery = await qstash.delivered(within=15)
    assert delivery.status == 200
    headers = {"Upstash-Signature": delivery.signature, "Upstash-Message-Id": "msg_replayed"}
    async with httpx.AsyncClient(timeout=10) as client:
        tampered = await client.post(push_consumer.url, headers=headers, content=b'{"lane":"long"}')
    assert tampered.status_code == 401
    assert tampered.json()["error"]["code"] == "unauthorized"


async def test_after_key_rotation_the_next_key_signs_and_is_accepted(
    qstash: QStashEmulator, push_consumer: PushConsumer
) -> None:
    qstash.rotate_keys()  # the push app still holds the old (current, next) pair
    await build_trigger(push_consumer.settings).fire("standard")
    assert (await qstash.delivered(within=15)).status == 200


# The emulator's own contract, against a plain recording HTTP server.


@pytest.fixture
def destination() -> Iterator[Destination]:
    with Destination() as server:
        yield server


def quick_emulator(**options: Any) -> QStashEmulator:
    return QStashEmulator(backoff=lambda retried: 0.02, **options)


async def publish(emulator: QStashEmulator, url: str, **options: Any) -> Any:
    client = AsyncQStash(emulator.token, retry=False, base_url=emulator.url)
    try:
        return await client.message.publish_json(url=url, body={"hello": "world"}, **options)
    finally:
        await client.http._client.aclose()


async def test_publish_needs_the_token_and_a_loopback_destination(qstash: QStashEmulator) -> None:
    async with httpx.AsyncClient(base_url=qstash.url, timeout=10) as client:
        target = "/v2/publish/http://127.0.0.1:9/consume"
        assert (await client.post(target, content=b"{}")).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert (await client.post(target, content=b"{}", headers=wrong)).status_code == 401
        auth = {"Authorization": f"Bearer {qstash.token}"}
        for outside in ("https://example.com/consume", "http://10.0.0.1/consume", "http://169.254.169.254/"):
            refused = await client.post(f"/v2/publish/{outside}", content=b"{}", headers=auth)
            assert refused.status_code == 400, outside
        bad_delay = await client.post(target, content=b"{}", headers={**auth, "Upstash-Delay": "soon"})
        assert bad_delay.status_code == 400
    assert qstash.publishes == []


async def test_delivery_is_signed_as_qstash_signs_with_headers_forwarded(
    qstash: QStashEmulator, destination: Destination
) -> None:
    url = f"{destination.url}/hook?x=1"
    reply = await publish(qstash, url, headers={"X-Trace": "abc"})
    delivery = await qstash.delivered(reply.message_id)
    assert delivery.ok
    [(method, path, headers, body)] = destination.requests
    assert method == "POST" and path == "/hook?x=1" and body == b'{"hello": "world"}'
    received = {name.lower(): value for name, value in headers.items()}
    assert received["x-trace"] == "abc" and received["content-type"] == "application/json"
    assert received["upstash-message-id"] == reply.message_id and received["upstash-retried"] == "0"
    assert received["user-agent"] == "Upstash-QStash"
    verifier = Receiver(qstash.current_signing_key, qstash.next_signing_key)
    verifier.verify(signature=received["upstash-signature"], body=body.decode(), url=url)


async def test_retries_5xx_with_the_same_message_id_then_stops_at_success(destination: Destination) -> None:
    destination.answers = [(503, {}, b"busy"), (500, {}, b"oops")]  # then the default 200
    with quick_emulator() as emulator:
        reply = await publish(emulator, destination.url)
        final = await emulator.delivered(reply.message_id)
        attempts = emulator.attempts(reply.message_id)
    assert final.ok
    assert [(a.retried, a.status) for a in attempts] == [(0, 503), (1, 500), (2, 200)]
    sent = [{name.lower(): value for name, value in request[2].items()} for request in destination.requests]
    assert [h["upstash-message-id"] for h in sent] == [reply.message_id] * 3


async def test_a_4xx_is_final_and_an_unreachable_destination_is_retried_a_bounded_number_of_times(
    destination: Destination,
) -> None:
    destination.answers = [(401, {}, b"no")]
    unreachable = LoopbackServer()  # bound, never served: connections are refused once it is closed
    dead_url = unreachable.url
    unreachable.stop()
    with quick_emulator(retries=2) as emulator:
        refused = await publish(emulator, destination.url)
        dead = await publish(emulator, dead_url)
        assert (await emulator.delivered(refused.message_id)).status == 401
        last = await emulator.delivered(dead.message_id)
        assert emulator.message(dead.message_id).state == "failed"
    assert len(emulator.attempts(refused.message_id)) == 1
    assert [a.retried for a in emulator.attempts(dead.message_id)] == [0, 1, 2]
    assert last.status is None and last.error is not None


async def test_a_delay_holds_the_message_until_the_clock_reaches_it(destination: Destination) -> None:
    clock = FakeClock()
    with quick_emulator(clock=clock) as emulator:
        reply = await publish(emulator, destination.url, delay="1m")
        message = emulator.message(reply.message_id)
        assert message.state == "scheduled" and message.due_at == message.published_at + 60
        clock.advance(59)
        assert emulator.message(reply.message_id).state == "scheduled"
        clock.advance(1)
        delivery = await emulator.delivered(reply.message_id)
    assert delivery.ok and delivery.at - message.published_at == 60


async def test_deduplication_lasts_for_its_window(destination: Destination) -> None:
    clock = FakeClock()
    with quick_emulator(clock=clock, dedupe_window=600) as emulator:
        first = await publish(emulator, destination.url, deduplication_id="wake-x")
        again = await publish(emulator, destination.url, deduplication_id="wake-x")
        clock.advance(601)
        later = await publish(emulator, destination.url, deduplication_id="wake-x")
    assert again.message_id == first.message_id and again.deduplicated
    assert later.message_id != first.message_id and not later.deduplicated


async def test_a_serverless_run_books_one_wake_up_for_a_retry_due_before_the_tick(
    qstash: QStashEmulator,
    push_consumer: PushConsumer,
    submit: Submit,
    consumer_registry: Registry,
    wait_for: Any,
) -> None:
    # A scheduled run fails the job's first attempt (fixed 1 s backoff) and ends at once (no in-run
    # wait): the retry is due long before the next tick, so the run books a delayed push to its lane.
    [job_id] = await submit("retry1s")
    runtime = build_runtime(
        push_consumer.settings, registry=consumer_registry, config=ConsumerConfig(wait_due=0)
    )
    try:
        report = await run_bounded(runtime, 10)
        assert (report.claimed, report.retried) == (1, 1)
        again = await run_bounded(runtime, 10)  # nothing due yet: the pending wake-up is not booked twice
        assert again.claimed == 0
        [publish] = qstash.publishes
        assert publish.destination == push_consumer.url and 0 <= publish.delay <= 2.0

        async def completed() -> bool:
            return (await runtime.engine.get(job_id)).state == State.COMPLETED

        await wait_for(completed, within=15)  # by the woken push run, not a tick a minute later
        job = await runtime.engine.get(job_id)
        assert job.attempts == 2 and job.result == 2
    finally:
        await runtime.redis.close()
