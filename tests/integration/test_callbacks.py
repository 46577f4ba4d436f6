"""Completion callbacks and hooks on real Redis through the gateway: a real receiver on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel

from shared.engine import Engine
from shared.errors import PermanentJobError
from shared.limits import CALLBACK_TYPE
from shared.models import Job, Outcome, State
from shared.registry import Registry
from shared.settings import get_settings
from shared.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from tests.support.consumer_fixtures import MakeRuntime, Submit, poll
from tests.support.receiver import Receiver, callback_receiver

pytestmark = pytest.mark.realredis

SECRET = "callback-secret-0123456789"


class Value(BaseModel):
    value: int = 0


class Hooked:
    def __init__(self) -> None:
        self.completed: list[Job] = []
        self.failed: list[Job] = []


@pytest.fixture
def hooked() -> Hooked:
    return Hooked()


@pytest.fixture
def consumer_registry(hooked: Hooked) -> Registry:
    registry = Registry()

    @registry.job_type("double", payload=Value, queue="cbq", timeout=10)
    async def double(payload: Value, ctx: Any) -> dict[str, int]:
        if payload.value < 0:
            raise PermanentJobError("negative")
        return {"doubled": payload.value * 2}

    @registry.job_type("plain", payload=Value, queue="cbq", timeout=10)
    async def plain(payload: Value, ctx: Any) -> int:
        return payload.value

    @registry.on_complete("double")
    def broken_hook(job: Job) -> None:
        raise RuntimeError("a bug in the app's hook")

    @registry.on_complete("double")
    async def record_completed(job: Job) -> None:
        hooked.completed.append(job)

    @registry.on_failed("double")
    def record_failed(job: Job) -> None:
        hooked.failed.append(job)

    return registry


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    with callback_receiver(monkeypatch, SECRET) as server:
        yield server


def sent(receiver: Receiver, index: int = 0) -> tuple[dict[str, str], dict[str, Any]]:
    """The headers and JSON body of a request the receiver got, its signature checked."""
    _, _, headers, body = receiver.requests[index]
    assert verify(SECRET, body, headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER])
    return headers, json.loads(body)


async def test_completed_job_posts_a_signed_callback_and_runs_its_hooks(
    receiver: Receiver, make_runtime: MakeRuntime, submit: Submit, hooked: Hooked, wait_for: Any
) -> None:
    [job_id] = await submit("double", {"value": 21}, callback_url=receiver.url + "/done?k=1", notify=True)
    runtime = make_runtime()
    await runtime.consumer.drain(60)
    assert len(receiver.requests) == 1
    method, path, _, _ = receiver.requests[0]
    headers, body = sent(receiver)
    assert (method, path, headers["Jobq-Event"], headers["Jobq-Job-Id"]) == (
        "POST",
        "/done?k=1",
        "job.completed",
        job_id,
    )
    assert (body["id"], body["state"], body["result"], body["type"]) == (
        job_id,
        "completed",
        {"doubled": 42},
        "double",
    )
    assert "payload" not in body
    # The broken hook was logged and did not stop the next one.
    assert [job.id for job in hooked.completed] == [job_id] and hooked.completed[0].result == {"doubled": 42}
    delivery = await runtime.engine.get(headers["Jobq-Delivery"])
    assert (delivery.type, delivery.state, delivery.queue, delivery.owner) == (
        CALLBACK_TYPE,
        State.COMPLETED,
        "cbq",
        "@jobq",
    )


async def test_a_5xx_is_retried_with_backoff_and_hooks_run_once(
    receiver: Receiver, make_runtime: MakeRuntime, submit: Submit, hooked: Hooked
) -> None:
    receiver.answers.append((503, {}, b"busy"))
    [job_id] = await submit("double", {"value": 1}, callback_url=receiver.url, notify=True)
    runtime = make_runtime()

    async def delivered() -> bool:
        await runtime.consumer.drain(60)
        return len(receiver.requests) == 2

    await poll(delivered, within=40, every=0.2)  # a loaded machine stretches the 1 s backoff
    first, _ = sent(receiver, 0)
    second, body = sent(receiver, 1)
    assert first["Jobq-Delivery"] == second["Jobq-Delivery"]  # one delivery, attempted twice
    assert body["state"] == "completed"
    delivery = await runtime.engine.get(second["Jobq-Delivery"])
    assert (delivery.state, delivery.attempts) == (State.COMPLETED, 2)
    assert "HTTP 503" in delivery.errors[0].message
    assert [job.id for job in hooked.completed] == [job_id]  # not again on the retry


async def test_failed_and_cancelled_jobs_call_back_too(
    receiver: Receiver, make_runtime: MakeRuntime, submit: Submit, hooked: Hooked
) -> None:
    [failing] = await submit("double", {"value": -1}, callback_url=receiver.url, notify=True)
    [waiting] = await submit("plain", {"value": 1}, callback_url=receiver.url, delay=60)
    runtime = make_runtime()
    await runtime.engine.cancel(waiting)
    await runtime.consumer.drain(60)
    bodies = {sent(receiver, i)[1]["id"]: sent(receiver, i)[1] for i in range(len(receiver.requests))}
    assert set(bodies) == {failing, waiting}
    assert bodies[failing]["state"] == "failed" and bodies[failing]["error"]["message"] == "negative"
    assert bodies[waiting]["state"] == "cancelled"
    assert [job.id for job in hooked.failed] == [failing]


async def test_the_finish_itself_enqueues_the_delivery(
    receiver: Receiver, make_runtime: MakeRuntime, submit: Submit
) -> None:
    """A consumer that dies right after recording the outcome loses no callback: the delivery job was
    written by the same script call, and the next consumer sends it."""
    [job_id] = await submit("plain", {"value": 5}, callback_url=receiver.url)
    engine: Engine = make_runtime().engine
    [claimed] = await engine.claim("cbq", 1)
    [finished] = await engine.finish(
        [Outcome(job_id=job_id, token=claimed.token, status="completed", result=5)]
    )
    assert finished.ok and receiver.requests == []  # the "dead" consumer never delivered
    page = await engine.list_jobs(queue="cbq", state=State.WAITING)
    assert [job.type for job in page.jobs] == [CALLBACK_TYPE]
    await make_runtime().consumer.drain(60)
    assert (sent(receiver)[1]["id"], sent(receiver)[1]["result"]) == (job_id, 5)


async def test_a_job_without_callback_or_hooks_gets_no_delivery(
    make_runtime: MakeRuntime, submit: Submit
) -> None:
    [job_id] = await submit("plain", {"value": 5})
    runtime = make_runtime()
    await runtime.consumer.drain(60)
    assert (await runtime.engine.get(job_id)).state is State.COMPLETED
    stats = await runtime.engine.stats("cbq")
    assert stats.counts[State.WAITING] == 0 and stats.counts[State.COMPLETED] == 1


async def test_a_private_callback_url_is_refused_when_it_runs(
    monkeypatch: pytest.MonkeyPatch, make_runtime: MakeRuntime, submit: Submit
) -> None:
    """The API refuses a literal private address at submit; a URL that reaches the engine some other way
    (or a name resolving to one) meets the webhook type's guard at delivery: a permanent failure."""
    monkeypatch.delenv("JOBQ_ALLOW_PRIVATE_URLS", raising=False)
    get_settings.cache_clear()
    with Receiver() as receiver:
        await submit("plain", {"value": 1}, callback_url=receiver.url)
        runtime = make_runtime()
        await runtime.consumer.drain(60)
        [delivery] = (await runtime.engine.list_jobs(queue="cbq", state=State.FAILED)).jobs
        assert (delivery.type, delivery.attempts) == (CALLBACK_TYPE, 1)
        assert delivery.error is not None and "non-public" in delivery.error.message
        assert receiver.requests == []
    get_settings.cache_clear()


async def test_a_job_whose_last_lease_expires_calls_back_failed(
    receiver: Receiver, make_runtime: MakeRuntime, submit: Submit
) -> None:
    """A consumer that dies holding the job's last attempt: the claim that reaps the lease records the
    failure and writes the delivery."""
    [job_id] = await submit("plain", {"value": 1}, callback_url=receiver.url, max_attempts=1)
    runtime = make_runtime()
    [claimed] = await runtime.engine.claim("cbq", 1, lease=0.05)  # then this "consumer" dies
    assert claimed.job.id == job_id

    async def delivered() -> bool:  # a later run reaps the lease once it has passed
        await runtime.consumer.drain(60)
        return bool(receiver.requests)

    await poll(delivered, within=10, every=0.05)
    _, body = sent(receiver)
    assert (body["id"], body["state"], body["error"]["kind"]) == (job_id, "failed", "lease_expired")


async def test_a_flow_parent_failed_by_its_child_calls_back(
    receiver: Receiver, make_runtime: MakeRuntime, consumer_registry: Registry
) -> None:
    """A job ended by its flow (a child failed, so the parent fails without running) is an end too."""
    runtime = make_runtime()
    child = consumer_registry.get("double").spec({"value": -1}, owner="alice")
    parent = consumer_registry.get("plain").spec({"value": 1}, owner="alice", callback_url=receiver.url)
    reply = await runtime.engine.enqueue([parent.model_copy(update={"children": [child]})])
    parent_id = reply.results[0].job.id

    async def delivered() -> bool:
        await runtime.consumer.drain(60)
        return bool(receiver.requests)

    await poll(delivered, within=10, every=0.05)
    _, body = sent(receiver)
    assert (body["id"], body["state"], body["error"]["kind"]) == (parent_id, "failed", "child_failed")
