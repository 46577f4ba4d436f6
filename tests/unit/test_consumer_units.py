"""Pure parts of the consumer: job context buffers, outcome mapping, limits, push auth, event routing."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import jwt
import pytest
from pydantic import BaseModel, SecretStr

from functions.consumer.auth import PushAuth
from functions.consumer.lambda_handler import is_http, is_schedule
from functions.consumer.push import dedupe_key
from functions.consumer.runtime import run_budget
from shared.consumer import outcomes
from shared.consumer.limits import DEFAULT_CONCURRENCY, Limits
from shared.context import JobContext, clip_line
from shared.errors import AuthError, PermanentJobError, RetryJobError
from shared.lanes import DEFAULT_LANES, Lanes
from shared.limits import MAX_LOG_LINE_BYTES, MAX_LOG_LINES
from shared.models import (
    ClaimedJob,
    ErrorKind,
    Job,
    State,
)
from shared.registry import Registry
from shared.settings import Settings

CURRENT, NEXT = "sig_current_0123456789abcdef0123456789", "sig_next_0123456789abcdef0123456789abcd"
URL = "https://consumer.example.com/consume"


def claimed(job_id: str = "j1", **fields: Any) -> ClaimedJob:
    job = Job(
        id=job_id,
        queue="q",
        type="t",
        owner="alice",
        state=State.ACTIVE,
        attempts=2,
        idempotency_key="k",
        created_at=datetime.now(UTC),
        **fields,
    )
    return ClaimedJob(job=job, token="tok", lease_until=datetime.now(UTC))


# Job context.


async def test_context_exposes_the_job() -> None:
    ctx = JobContext(claimed())
    assert (ctx.job_id, ctx.attempt, ctx.owner, ctx.idempotency_key) == ("j1", 2, "alice", "k")
    assert not ctx.cancelled


async def test_progress_and_logs_are_buffered_until_taken() -> None:
    ctx = JobContext(claimed())
    assert ctx.take_update() is None
    await ctx.progress(10)
    await ctx.progress(40)
    await ctx.log("one")
    await ctx.log("two")
    update = ctx.take_update()
    assert update is not None
    assert (update.job_id, update.token, update.progress, update.logs) == ("j1", "tok", 40, ["one", "two"])
    assert ctx.take_update() is None


@pytest.mark.parametrize("bad", [-1, 101, 50.5, True, "50"])
async def test_progress_rejects_values_outside_0_100(bad: Any) -> None:
    with pytest.raises(ValueError, match="progress"):
        await JobContext(claimed()).progress(bad)


async def test_log_buffer_keeps_the_last_lines_and_clips_each() -> None:
    ctx = JobContext(claimed())
    for i in range(MAX_LOG_LINES + 5):
        await ctx.log(f"line {i}")
    await ctx.log("é" * MAX_LOG_LINE_BYTES)
    update = ctx.take_update()
    assert update is not None
    assert len(update.logs) == MAX_LOG_LINES
    assert update.logs[0] == "line 6"
    assert len(update.logs[-1].encode()) <= MAX_LOG_LINE_BYTES
    assert set(update.logs[-1]) == {"é"}  # never half a character


def test_clip_line_leaves_short_lines_alone() -> None:
    assert clip_line("short") == "short"
    assert clip_line("abcdef", 3) == "abc"


async def test_failed_flush_is_restored_without_overwriting_newer_progress() -> None:
    ctx = JobContext(claimed())
    await ctx.progress(10)
    await ctx.log("a")
    update = ctx.take_update()
    assert update is not None
    await ctx.progress(20)
    await ctx.log("b")
    ctx.restore(update)
    again = ctx.take_update()
    assert again is not None
    assert (again.progress, again.logs) == (20, ["a", "b"])


async def test_cancellation_wakes_a_waiting_handler() -> None:
    ctx = JobContext(claimed())
    waiter = asyncio.create_task(ctx.wait_cancelled())
    await asyncio.sleep(0)
    assert not waiter.done()
    ctx.mark_cancelled(requested=True)
    await asyncio.wait_for(waiter, 1)
    assert ctx.cancelled and ctx.cancel_requested and not ctx.lease_lost


def test_remaining_counts_down_on_the_clock() -> None:
    now = [100.0]
    ctx = JobContext(claimed(), deadline=130.0, clock=lambda: now[0])
    assert ctx.remaining == 30.0
    now[0] = 200.0
    assert ctx.remaining == 0.0


# Outcomes.


def test_permanent_error_fails_without_retry() -> None:
    outcome = outcomes.from_error("j", "t", PermanentJobError("bad input"), 1)
    assert outcome.status == "failed"
    assert outcome.error is not None and outcome.error.kind == ErrorKind.PERMANENT
    assert outcome.error.message == "bad input"


def test_retry_after_error_carries_its_delay() -> None:
    outcome = outcomes.from_error("j", "t", RetryJobError("busy", after=42), 1)
    assert (outcome.status, outcome.retry_after) == ("retry", 42)


def test_retry_after_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="after"):
        RetryJobError(after=-1)


def test_any_other_error_is_retryable_and_named() -> None:
    outcome = outcomes.from_error("j", "t", KeyError("x" * 5000), 3)
    assert outcome.status == "failed"
    assert outcome.error is not None and outcome.error.kind == ErrorKind.RETRYABLE
    assert outcome.error.message.startswith("KeyError: ") and len(outcome.error.message) <= 1000
    assert outcome.error.attempt == 3


def test_a_result_that_is_not_json_fails_permanently() -> None:
    assert outcomes.completed("j", "t", {"ok": [1, 2]}, 1).status == "completed"
    for result in ({1, 2}, float("nan"), {"x": float("inf")}):
        bad = outcomes.completed("j", "t", result, 1)
        assert bad.status == "failed" and bad.error is not None and bad.error.kind == ErrorKind.PERMANENT
        assert "result is not JSON" in bad.error.message


def test_timeout_and_interrupt_outcomes() -> None:
    timeout = outcomes.timed_out("j", "t", 2.5, 1)
    assert (
        timeout.error is not None
        and timeout.error.kind == ErrorKind.TIMEOUT
        and "2.5 s" in timeout.error.message
    )
    interrupted = outcomes.interrupted("j", "t", 1)
    assert (interrupted.status, interrupted.retry_after) == ("retry", 0.0)


# Limits.


class Empty(BaseModel):
    pass


async def _noop(payload: Any, ctx: Any) -> None:
    return None


def registry_with_types() -> Registry:
    registry = Registry()
    registry.job_type("a", payload=Empty, queue="shared", concurrency=2)(_noop)
    registry.job_type("b", payload=Empty, queue="shared", concurrency=3)(_noop)
    registry.job_type("c", payload=Empty, concurrency=1)(_noop)
    return registry


def test_queue_capacity_sums_its_types_and_respects_the_total() -> None:
    limits = Limits(registry_with_types())
    assert limits.free("shared") == 5
    assert limits.free("c") == 1
    assert limits.free("unknown") == DEFAULT_CONCURRENCY
    assert Limits(registry_with_types(), total=4).free("shared") == 4


def test_slots_are_taken_per_type_queue_and_total_and_given_back() -> None:
    limits = Limits(registry_with_types(), total=4)
    assert [limits.take("shared", "a") for _ in range(3)] == [True, True, False]  # type a runs 2
    assert limits.free("shared") == 2  # 5 for the queue, but the process has 2 of 4 left
    assert limits.take("shared", "b") and limits.take("c", "c")
    assert limits.free_total() == 0 and not limits.take("shared", "b")  # the process is full
    limits.give("shared", "a")
    assert limits.free("shared") == 1 and limits.take("shared", "a")


def test_a_type_longer_than_every_lane_is_refused_at_start_up() -> None:
    registry = Registry()
    registry.job_type("tests", payload=Empty, timeout=1200)(_noop)
    with pytest.raises(ValueError, match=r"'tests' has timeout=1200 s.*longest consumer lane \(long\)"):
        registry.check_lanes(Lanes.of(DEFAULT_LANES))
    registry.check_lanes(Lanes.of({"worker": 3600}))  # a container worker's lane holds it


def test_total_concurrency_must_be_positive() -> None:
    with pytest.raises(ValueError, match="concurrency"):
        Limits(Registry(), total=0)


# Push authentication (QStash's token format: HS256, iss Upstash, sub = URL, body = base64url sha256).


def qstash_token(key: str, body: bytes, *, url: str = URL, expires_in: float = 300) -> str:
    now = int(time.time())
    claims = {
        "iss": "Upstash",
        "sub": url,
        "iat": now,
        "nbf": now,
        "exp": now + int(expires_in),
        "jti": "jwt_1",
        "body": base64.urlsafe_b64encode(hashlib.sha256(body).digest()).decode().rstrip("="),
    }
    return jwt.encode(claims, key, algorithm="HS256")


def push_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "env": "test",
        "qstash_current_signing_key": SecretStr(CURRENT),
        "qstash_next_signing_key": SecretStr(NEXT),
        "consumer_url": URL,
        "consumer_secret": SecretStr("shared-secret-0123456789"),
    }
    return Settings(**{**values, **overrides})


def test_qstash_signature_with_current_or_next_key_is_accepted() -> None:
    auth, body = PushAuth(push_settings()), b'{"hello":1}'
    for key in (CURRENT, NEXT):
        assert auth.verify(signature=qstash_token(key, body), authorization=None, body=body) == "qstash"


@pytest.mark.parametrize(
    "case",
    ["forged key", "expired", "other body", "other url", "garbage", "empty"],
)
def test_bad_qstash_signatures_are_rejected(case: str) -> None:
    auth, body = PushAuth(push_settings()), b"{}"
    signature = {
        "forged key": qstash_token("sig_forged_0123456789abcdef0123456789", body),
        "expired": qstash_token(CURRENT, body, expires_in=-60),
        "other body": qstash_token(CURRENT, b'{"evil":1}'),
        "other url": qstash_token(CURRENT, body, url="https://evil.example.com/consume"),
        "garbage": "a.b.c",
        "empty": "",
    }[case]
    with pytest.raises(AuthError):
        auth.verify(signature=signature, authorization=None, body=body)


def test_shared_secret_is_checked() -> None:
    auth = PushAuth(push_settings())
    assert auth.verify(signature=None, authorization="Bearer shared-secret-0123456789", body=b"") == "secret"
    for bad in ("Bearer wrong", "Basic shared-secret-0123456789", "shared-secret-0123456789"):
        with pytest.raises(AuthError):
            auth.verify(signature=None, authorization=bad, body=b"")
    with pytest.raises(AuthError, match="missing"):
        auth.verify(signature=None, authorization=None, body=b"")


def test_unconfigured_push_endpoint_rejects_everything() -> None:
    auth = PushAuth(Settings(env="test"))
    body = b"{}"
    with pytest.raises(AuthError, match="not configured"):
        auth.verify(signature=None, authorization="Bearer x", body=body)
    with pytest.raises(AuthError, match="not configured"):
        auth.verify(signature=qstash_token(CURRENT, body), authorization=None, body=body)


def test_dedupe_key_is_prefixed_and_hashed() -> None:
    key = dedupe_key("jobq", "msg_weird key:with*glob")
    assert key.startswith("jobq:push:") and len(key) == len("jobq:push:") + 32


# Event routing in the Lambda dispatcher.

SCHEDULED_EVENT = {
    "version": "0",
    "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
    "detail-type": "Scheduled Event",
    "source": "aws.events",
    "account": "123456789012",
    "time": "2026-11-22T18:00:00Z",
    "region": "eu-west-1",
    "resources": ["arn:aws:events:eu-west-1:123456789012:rule/jobq-consumer-schedule"],
    "detail": {},
}


def test_event_routing() -> None:
    http_v2 = {"version": "2.0", "routeKey": "POST /consume", "requestContext": {"http": {"method": "POST"}}}
    assert is_http(http_v2) and not is_schedule(http_v2)
    assert is_schedule(SCHEDULED_EVENT) and not is_http(SCHEDULED_EVENT)
    assert not is_http({"Records": []}) and not is_schedule({"Records": []})


def test_run_budget_keeps_a_margin_for_grace_and_reply() -> None:
    context = SimpleNamespace(get_remaining_time_in_millis=lambda: 60_000)
    assert run_budget(context, grace=10, default=20) == 45.0
    assert run_budget(SimpleNamespace(get_remaining_time_in_millis=lambda: 3_000), grace=10, default=20) == 0
    assert run_budget(None, grace=10, default=20) == 20  # off Lambda


def test_a_blocking_handler_can_report_without_await() -> None:
    ctx = JobContext(claimed())
    ctx.progress(30)
    ctx.log("from a thread")
    update = ctx.take_update()
    assert update is not None and (update.progress, update.logs) == (30, ["from a thread"])
