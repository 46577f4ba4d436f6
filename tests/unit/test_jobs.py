"""Built-in job types: a real HTTP server on 127.0.0.1 (private URLs opted in), and respx for faults."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
import respx
from pydantic import ValidationError as PydanticValidationError

from functions.jobs.demo import SleepPayload, echo, sleep
from functions.jobs.http import HttpPayload, http
from functions.jobs.outbound import EXCERPT_BYTES, UpstreamError, retry_after
from functions.jobs.webhook import WebhookPayload, webhook
from shared.context import JobContext
from shared.errors import PermanentJobError, RetryJobError, ValidationError
from shared.models import ClaimedJob, Job, State
from shared.registry import Registry
from shared.settings import get_settings
from shared.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from shared.urlguard import BlockedURLError
from tests.support.receiver import Receiver

SECRET = "whsec_unit_0123456789abcdef"
PUBLIC = "http://93.184.215.14"  # a literal public address: the guard needs no DNS, respx answers


def context(job_id: str = "job-1") -> JobContext:
    job = Job(
        id=job_id,
        queue="q",
        type="t",
        owner="alice",
        state=State.ACTIVE,
        attempts=1,
        created_at=datetime.now(UTC),
    )
    return JobContext(ClaimedJob(job=job, token="tok", lease_until=datetime.now(UTC)))


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    monkeypatch.setenv("JOBQ_WEBHOOK_SECRET", SECRET)
    monkeypatch.delenv("JOBQ_ALLOW_PRIVATE_URLS", raising=False)
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


@pytest.fixture
def private_ok(env: pytest.MonkeyPatch) -> None:
    env.setenv("JOBQ_ALLOW_PRIVATE_URLS", "true")
    get_settings.cache_clear()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as server:
        yield server


# Registration.


def test_builtins_register_on_load() -> None:
    default = Registry()
    default.load([])  # imports the built-in package; its decorators registered on the global registry
    from shared.registry import registry as default

    assert {"echo", "sleep", "webhook", "http"} <= {t.name for t in default.types()}
    with pytest.raises(ValidationError) as caught:
        default.get("webhook").parse({"url": "not a url"})
    assert caught.value.field == "payload.url"
    with pytest.raises(ValidationError) as caught:
        default.get("sleep").parse({"seconds": -1})
    assert caught.value.field == "payload.seconds"


@pytest.mark.parametrize(
    ("payload", "field", "message"),
    [
        (None, "payload", "Input should be a JSON object"),  # a submit without a payload
        ([], "payload", "Input should be a JSON object"),
        ({}, "payload.seconds", "Field required"),
        ({"seconds": 11}, "payload.seconds", "Input should be less than or equal to 10"),  # the 10 s cap
    ],
)
def test_a_bad_sleep_payload_names_the_field_not_the_model(payload: object, field: str, message: str) -> None:
    Registry().load([])
    from shared.registry import registry as default

    with pytest.raises(ValidationError) as caught:
        default.get("sleep").parse(payload)
    assert (caught.value.field, caught.value.message) == (field, message)
    assert "SleepPayload" not in caught.value.message


# Demo types.


async def test_echo_returns_its_payload() -> None:
    from functions.jobs.demo import EchoPayload

    payload = {"a": [1, 2, {"b": None}], "s": "é"}
    assert await echo(EchoPayload.model_validate(payload), context()) == payload


async def test_sleep_reports_progress_to_100() -> None:
    ctx = context()
    result = await sleep(SleepPayload(seconds=0.05), ctx)
    assert result == {"slept": 0.05}
    update = ctx.take_update()
    assert update is not None and update.progress == 100


async def test_sleep_stops_early_when_cancelled() -> None:
    ctx = context()
    ctx.mark_cancelled(requested=True)
    await sleep(SleepPayload(seconds=10), ctx)  # returns at once instead of after 10 s
    update = ctx.take_update()
    assert update is None or (update.progress or 0) < 100


# Webhook against a real server.


async def test_webhook_is_signed_and_verifiable_by_the_receiver(private_ok: None, receiver: Receiver) -> None:
    receiver.answers.append((201, {}, b'{"received":true}'))
    result = await webhook(
        WebhookPayload.model_validate({"url": receiver.url + "/hook", "body": {"n": 1}}), context()
    )
    assert result["status"] == 201 and result["body"] == '{"received":true}'
    method, path, headers, body = receiver.requests[0]
    assert (method, path, json.loads(body)) == ("POST", "/hook", {"n": 1})
    assert headers["Jobq-Job-Id"] == "job-1"
    assert verify(SECRET, body, headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER])
    assert not verify("wrong", body, headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER])


async def test_webhook_5xx_with_retry_after_is_a_timed_retry(private_ok: None, receiver: Receiver) -> None:
    receiver.answers.append((503, {"Retry-After": "7"}, b"busy"))
    with pytest.raises(RetryJobError) as caught:
        await webhook(WebhookPayload.model_validate({"url": receiver.url}), context())
    assert caught.value.after == 7


@pytest.mark.parametrize("status", [500, 502, 408, 429])
async def test_webhook_retryable_statuses_without_retry_after(
    private_ok: None, receiver: Receiver, status: int
) -> None:
    receiver.answers.append((status, {}, b"nope"))
    with pytest.raises(UpstreamError, match=str(status)):
        await webhook(WebhookPayload.model_validate({"url": receiver.url}), context())


@pytest.mark.parametrize("status", [400, 401, 404, 410, 422])
async def test_webhook_other_4xx_is_permanent(private_ok: None, receiver: Receiver, status: int) -> None:
    receiver.answers.append((status, {}, b"bad"))
    with pytest.raises(PermanentJobError, match=str(status)):
        await webhook(WebhookPayload.model_validate({"url": receiver.url}), context())


async def test_webhook_connection_refused_is_retryable(private_ok: None, receiver: Receiver) -> None:
    receiver.server.shutdown()
    receiver.server.server_close()
    with pytest.raises(UpstreamError, match="ConnectError"):
        await webhook(WebhookPayload.model_validate({"url": receiver.url}), context())


async def test_response_body_excerpt_is_bounded(private_ok: None, receiver: Receiver) -> None:
    receiver.answers.append((200, {}, b"x" * (EXCERPT_BYTES * 50)))
    result = await webhook(WebhookPayload.model_validate({"url": receiver.url}), context())
    assert result["body"] == "x" * EXCERPT_BYTES


async def test_redirect_is_followed_within_the_policy(private_ok: None, receiver: Receiver) -> None:
    receiver.answers += [(307, {"Location": "/final"}, b""), (200, {}, b"done")]
    result = await webhook(WebhookPayload.model_validate({"url": receiver.url + "/start"}), context())
    assert result["body"] == "done"
    assert [r[1] for r in receiver.requests] == ["/start", "/final"]


# SSRF: refused by default (private URLs not opted in); the real server must see nothing.


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/",
        "http://localhost:{port}/",
        "http://[::1]:{port}/",
        "http://10.1.2.3/",
        "http://169.254.169.254/latest/meta-data/",
    ],
)
async def test_webhook_to_private_targets_is_refused(
    env: pytest.MonkeyPatch, receiver: Receiver, url: str
) -> None:
    url = url.format(port=receiver.server.server_address[1])
    with pytest.raises(PydanticValidationError, match="not allowed"):  # refused at submit already
        WebhookPayload.model_validate({"url": url})
    # A job already queued (say, submitted while private URLs were allowed) meets the run-time guard.
    with pytest.raises(BlockedURLError):
        await webhook(WebhookPayload.model_construct(url=url, body=None, headers={}, timeout=5.0), context())
    assert receiver.requests == []


@respx.mock(assert_all_called=False)
async def test_redirect_to_loopback_is_refused(respx_mock: respx.MockRouter, env: pytest.MonkeyPatch) -> None:
    respx_mock.post(PUBLIC + "/hook").mock(
        return_value=httpx.Response(302, headers={"Location": "http://127.0.0.1:9/steal"})
    )
    loopback = respx_mock.route(host="127.0.0.1").mock(return_value=httpx.Response(200))
    with pytest.raises(BlockedURLError, match="non-public"):
        await webhook(WebhookPayload.model_validate({"url": PUBLIC + "/hook"}), context())
    assert not loopback.called


@respx.mock
async def test_http_job_sends_method_headers_and_body(
    respx_mock: respx.MockRouter, env: pytest.MonkeyPatch
) -> None:
    route = respx_mock.put(PUBLIC + "/thing").mock(return_value=httpx.Response(200, text="stored"))
    payload = HttpPayload.model_validate(
        {"method": "PUT", "url": PUBLIC + "/thing", "headers": {"X-Key": "v"}, "body": "hello"}
    )
    result = await http(payload, context())
    assert result["status"] == 200 and result["body"] == "stored"
    sent = route.calls.last.request
    assert sent.headers["X-Key"] == "v" and sent.content == b"hello"


@respx.mock
async def test_http_job_timeout_is_retryable(respx_mock: respx.MockRouter, env: pytest.MonkeyPatch) -> None:
    respx_mock.get(PUBLIC + "/slow").mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(UpstreamError, match="ReadTimeout"):
        await http(HttpPayload.model_validate({"url": PUBLIC + "/slow"}), context())


def test_retry_after_parses_seconds_and_dates() -> None:
    assert retry_after("12") == 12
    assert retry_after("999999") == 3600
    assert retry_after(None) is None and retry_after("soon") is None
    assert retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480) == 10
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490) == 0


async def test_connection_goes_to_the_checked_address_with_the_original_host(
    private_ok: None, receiver: Receiver
) -> None:
    """The request is pinned to the address the guard checked (no second DNS lookup to rebind)."""
    port = receiver.server.server_address[1]
    result = await webhook(
        WebhookPayload.model_validate({"url": f"http://localhost:{port}/pinned"}), context()
    )
    assert result["url"] == f"http://localhost:{port}/pinned"
    _, path, headers, _ = receiver.requests[0]
    assert path == "/pinned" and headers["Host"] == f"localhost:{port}"
