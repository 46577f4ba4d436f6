"""Built-in job types run by the real consumer and engine (real Redis and embedded, through the gateway)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from shared.models import Backoff, ErrorKind, State
from shared.registry import Registry
from shared.registry import registry as builtin_registry
from shared.settings import get_settings
from shared.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from tests.support.consumer_fixtures import MakeRuntime, Submit, poll
from tests.support.receiver import Receiver

SECRET = "whsec_integration_0123456789abcdef"
FAST = {"backoff": Backoff(kind="fixed", delay=0.1, jitter=0)}


@pytest.fixture
def consumer_registry() -> Registry:
    builtin_registry.load([])
    return builtin_registry


@pytest.fixture
def outbound(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    monkeypatch.setenv("JOBQ_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("JOBQ_ALLOW_PRIVATE_URLS", "true")
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as server:
        yield server


async def test_echo_and_sleep_complete_with_result_and_progress(
    make_runtime: MakeRuntime, submit: Submit
) -> None:
    [echo_id] = await submit("echo", {"hello": ["world", 1]})
    [sleep_id] = await submit("sleep", {"seconds": 0.2})
    runtime = make_runtime()
    report = await runtime.consumer.drain(20)
    assert report.completed == 2
    echo = await runtime.engine.get(echo_id)
    assert (echo.state, echo.result) == (State.COMPLETED, {"hello": ["world", 1]})
    slept = await runtime.engine.get(sleep_id)
    assert (slept.state, slept.progress, slept.result) == (State.COMPLETED, 100, {"slept": 0.2})


async def test_signed_webhook_delivered_and_recorded(
    outbound: pytest.MonkeyPatch, receiver: Receiver, make_runtime: MakeRuntime, submit: Submit
) -> None:
    [job_id] = await submit("webhook", {"url": receiver.url + "/hook", "body": {"order": 7}})
    runtime = make_runtime()
    await runtime.consumer.drain(20)
    job = await runtime.engine.get(job_id)
    assert job.state == State.COMPLETED, job.error
    assert job.result["status"] == 200 and job.result["body"] == "ok"
    _, path, headers, body = receiver.requests[0]
    assert path == "/hook" and headers["Jobq-Job-Id"] == job_id
    assert verify(SECRET, body, headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER])


async def test_webhook_retry_after_is_honoured_then_succeeds(
    outbound: pytest.MonkeyPatch, receiver: Receiver, make_runtime: MakeRuntime, submit: Submit
) -> None:
    receiver.answers.append((503, {"Retry-After": "1"}, b"busy"))
    [job_id] = await submit("webhook", {"url": receiver.url}, **FAST)
    runtime = make_runtime()
    started = time.monotonic()

    async def completed() -> bool:
        await runtime.consumer.drain(20)
        return (await runtime.engine.get(job_id)).state == State.COMPLETED

    await poll(completed, within=15, every=0.1)
    job = await runtime.engine.get(job_id)
    assert job.attempts == 2 and len(receiver.requests) == 2
    assert time.monotonic() - started >= 1.0  # Retry-After (1 s), not the type's 0.1 s backoff
    assert job.errors[0].kind == ErrorKind.RETRYABLE and "503" in job.errors[0].message


async def test_webhook_404_fails_permanently_without_retries(
    outbound: pytest.MonkeyPatch, receiver: Receiver, make_runtime: MakeRuntime, submit: Submit
) -> None:
    receiver.answers.append((404, {}, b"no such hook"))
    [job_id] = await submit("webhook", {"url": receiver.url}, **FAST)
    runtime = make_runtime()
    await runtime.consumer.drain(20)
    job = await runtime.engine.get(job_id)
    assert (job.state, job.attempts) == (State.FAILED, 1)
    assert job.error is not None and job.error.kind == ErrorKind.PERMANENT and "404" in job.error.message


async def test_webhook_to_loopback_is_refused_by_default(
    monkeypatch: pytest.MonkeyPatch, receiver: Receiver, make_runtime: MakeRuntime, submit: Submit
) -> None:
    monkeypatch.delenv("JOBQ_ALLOW_PRIVATE_URLS", raising=False)
    get_settings.cache_clear()
    [job_id] = await submit("webhook", {"url": receiver.url}, **FAST)
    runtime = make_runtime()
    await runtime.consumer.drain(20)
    job = await runtime.engine.get(job_id)
    assert (job.state, job.attempts) == (State.FAILED, 1)
    # A literal loopback address fails the payload model's check when the consumer validates the job
    # (the API would have refused it at submit); a host name would meet the run-time guard instead.
    assert job.error is not None and job.error.kind == ErrorKind.PERMANENT
    assert "not allowed" in job.error.message or "non-public" in job.error.message
    assert receiver.requests == []
    get_settings.cache_clear()
