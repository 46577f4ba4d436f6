"""The consumer's real entry points: API submit then drain, the Lambda dispatcher with EventBridge and
API Gateway v2 events (QStash-signed pushes), the worker loop, and `jobq worker` stopped by SIGTERM."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import secrets
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import jwt
import pytest
from pydantic import SecretStr

from functions.consumer import lambda_handler
from functions.consumer.runtime import build_runtime
from shared.consumer.worker import Worker
from shared.models import JobSpec, State
from shared.registry import Registry
from shared.settings import Settings, get_settings
from tests.support.consumer_fixtures import MakeRuntime, Submit, poll, prefix_for

ROOT = Path(__file__).resolve().parents[2]
CURRENT = "sig_current_for_tests_0123456789abcdef"
NEXT = "sig_next_for_tests_0123456789abcdef01"
CONSUMER_URL = "https://consumer.jobq.test/consume"
SECRET = "consumer-secret-0123456789abcdef"

SCHEDULED_EVENT = {
    "version": "0",
    "id": "7bf73129-1428-4cd3-a780-95db273d1602",
    "detail-type": "Scheduled Event",
    "source": "aws.events",
    "account": "123456789012",
    "time": "2026-11-22T18:00:00Z",
    "region": "eu-west-1",
    "resources": ["arn:aws:events:eu-west-1:123456789012:rule/jobq-dev-ConsumerEventsRuleSchedule1"],
    "detail": {},
}


class LambdaContext(SimpleNamespace):
    def get_remaining_time_in_millis(self) -> int:
        return int(self.millis)


# API submit, consumer drain, API status.


@pytest.fixture
def api_registry(consumer_registry: Registry) -> Registry:
    """The API validates payloads against the same test types the consumer runs."""
    return consumer_registry


async def test_submit_via_api_drain_status_completed(
    api: httpx.AsyncClient, make_user: Any, api_settings: Settings, consumer_registry: Registry
) -> None:
    headers = await make_user("alice")
    created = await api.post("/v1/jobs", json={"type": "echo", "payload": {"value": [1, 2]}}, headers=headers)
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    runtime = build_runtime(api_settings, registry=consumer_registry)
    try:
        report = await runtime.consumer.drain(10)
    finally:
        await runtime.redis.close()
    assert report.completed == 1
    status = await api.get(f"/v1/jobs/{job_id}", headers=headers)
    assert status.status_code == 200
    assert status.json()["state"] == "completed" and status.json()["result"] == [1, 2]


# The Lambda dispatcher, configured from the environment as in a deployment.


@pytest.fixture
def lambda_env(gateway: Any, unique_name: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    yield from configure_lambda(gateway, unique_name, monkeypatch)


@pytest.fixture
def real_lambda_env(real_gateway: Any, unique_name: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    yield from configure_lambda(real_gateway, unique_name, monkeypatch)


def configure_lambda(gateway: Any, unique_name: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Environment of a deployed consumer function on `gateway`; the dispatcher's caches reset around."""
    prefix = prefix_for("lambda" + unique_name)
    env = {
        "JOBQ_ENV": "test",
        "JOBQ_REDIS_REST_URL": gateway.url,
        "JOBQ_REDIS_REST_TOKEN": gateway.token,
        "JOBQ_KEY_PREFIX": prefix,
        "JOBQ_JOB_MODULES": json.dumps(["tests.support.consumer_job_types"]),
        "JOBQ_QSTASH_CURRENT_SIGNING_KEY": CURRENT,
        "JOBQ_QSTASH_NEXT_SIGNING_KEY": NEXT,
        "JOBQ_CONSUMER_URL": CONSUMER_URL,
        "JOBQ_PUSH_BUDGET": "15",  # consumer_echo (timeout 10 s) must fit
        "JOBQ_REDIS_CLUSTER": "true" if gateway.backend == "cluster" else "false",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    caches = (get_settings, lambda_handler.runtime, lambda_handler.adapter, lambda_handler.event_loop)
    for cache in caches:
        cache.cache_clear()
    yield prefix
    loop = lambda_handler.event_loop()
    loop.run_until_complete(lambda_handler.runtime().redis.close())
    loop.close()
    asyncio.set_event_loop(None)
    for cache in caches:
        cache.cache_clear()


def run(coro: Any) -> Any:
    """Run on the dispatcher's own loop, where its Redis client lives."""
    return lambda_handler.event_loop().run_until_complete(coro)


def enqueue_echo(message: str) -> str:
    spec = JobSpec(type="consumer_echo", queue="consumer_echo", payload={"message": message}, timeout=10)
    reply = run(lambda_handler.runtime().engine.enqueue([spec]))
    return str(reply.results[0].job.id)


def test_scheduled_event_drains(lambda_env: str, gateway: Any) -> None:
    job_id = enqueue_echo("tick")
    result = lambda_handler.handler(SCHEDULED_EVENT, LambdaContext(millis=60_000))
    assert result["ok"] and result["report"]["completed"] == 1
    job = run(lambda_handler.runtime().engine.get(job_id))
    assert job.state == State.COMPLETED and job.result == "tick"


def test_idle_scheduled_tick_is_one_round_trip(lambda_env: str, gateway: Any) -> None:
    lambda_handler.handler(SCHEDULED_EVENT, LambdaContext(millis=60_000))  # warm: build the runtime
    before = gateway.command_count()
    result = lambda_handler.handler(SCHEDULED_EVENT, LambdaContext(millis=60_000))
    # One MGET of its queues' due keys; on a cluster one GET per queue (its registry's).
    queues = len(lambda_handler.runtime().engine._known_queues)
    assert gateway.command_count() - before == (queues if gateway.backend == "cluster" else 1)
    assert result["report"]["claimed"] == 0


async def test_idle_scheduled_tick_is_one_billed_command(real_lambda_env: str, real_gateway: Any) -> None:
    from tests.support.billing import measure_billed

    context = LambdaContext(millis=60_000)

    async def tick() -> None:  # the dispatcher runs its own event loop: call it from a thread
        await asyncio.to_thread(lambda_handler.handler, SCHEDULED_EVENT, context)

    await tick()  # warm: build the runtime
    counts = []
    for _ in range(3):  # the count is server-wide: the least of three filters out other clients' commands
        async with measure_billed(real_gateway.redis_url) as billed:
            await tick()
        counts.append(billed.count)
    assert min(counts) == 1, counts


def test_unknown_events_are_ignored(lambda_env: str) -> None:
    assert lambda_handler.handler({"Records": [{"eventSource": "aws:sqs"}]}, LambdaContext(millis=1000)) == {
        "ok": False,
        "error": "unsupported event",
    }


def qstash_signature(key: str, body: bytes, *, url: str = CONSUMER_URL, expires_in: int = 300) -> str:
    now = int(time.time())
    claims = {
        "iss": "Upstash",
        "sub": url,
        "iat": now,
        "nbf": now,
        "exp": now + expires_in,
        "jti": f"jwt_{secrets.token_hex(8)}",  # unique per signature, as QStash makes it
        "body": base64.urlsafe_b64encode(hashlib.sha256(body).digest()).decode().rstrip("="),
    }
    return jwt.encode(claims, key, algorithm="HS256")


def http_event(body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    """An API Gateway v2 (httpApi) event for POST /consume."""
    return {
        "version": "2.0",
        "routeKey": "POST /consume",
        "rawPath": "/consume",
        "rawQueryString": "",
        "headers": {"content-type": "application/json", "host": "consumer.jobq.test", **headers},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "api",
            "domainName": "consumer.jobq.test",
            "http": {
                "method": "POST",
                "path": "/consume",
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.9",
                "userAgent": "Upstash-QStash",
            },
            "requestId": "req-1",
            "routeKey": "POST /consume",
            "stage": "$default",
            "time": "22/Nov/2026:18:00:00 +0000",
            "timeEpoch": 1795370400000,
        },
        "body": body.decode(),
        "isBase64Encoded": False,
    }


def push(body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    response = lambda_handler.handler(http_event(body, headers), LambdaContext(millis=30_000))
    return int(response["statusCode"]), json.loads(response["body"])


def test_signed_push_drains_and_is_deduplicated(lambda_env: str) -> None:
    job_id = enqueue_echo("pushed")
    body = b'{"reason":"submit"}'
    headers = {"upstash-signature": qstash_signature(CURRENT, body), "upstash-message-id": "msg_1"}
    status, reply = push(body, headers)
    assert status == 200 and reply["report"]["completed"] == 1 and reply["duplicate"] is False
    assert run(lambda_handler.runtime().engine.get(job_id)).state == State.COMPLETED
    status, reply = push(body, headers)  # QStash redelivers the same message
    assert status == 200 and reply == {"duplicate": True}


def test_a_replayed_push_is_a_duplicate_whatever_message_id_it_carries(lambda_env: str) -> None:
    """The message id header is not signed: a captured push replayed with another or none starts no run."""
    body = b'{"reason":"submit"}'
    signature = qstash_signature(CURRENT, body)
    status, reply = push(body, {"upstash-signature": signature, "upstash-message-id": "msg_a"})
    assert status == 200 and reply["duplicate"] is False
    job_id = enqueue_echo("must wait for a real trigger")
    for headers in ({"upstash-message-id": "msg_b"}, {}):
        status, reply = push(body, {"upstash-signature": signature, **headers})
        assert status == 200 and reply == {"duplicate": True}, headers
    assert run(lambda_handler.runtime().engine.get(job_id)).state == State.WAITING


def test_push_signed_with_the_next_key_is_accepted(lambda_env: str) -> None:
    body = b"{}"
    status, reply = push(
        body, {"upstash-signature": qstash_signature(NEXT, body), "upstash-message-id": "m2"}
    )
    assert status == 200 and reply["duplicate"] is False


@pytest.mark.parametrize("case", ["forged", "expired", "unsigned", "tampered body"])
def test_bad_pushes_are_rejected_without_draining(lambda_env: str, gateway: Any, case: str) -> None:
    job_id = enqueue_echo("must wait")
    body = b'{"reason":"submit"}'
    signature = {
        "forged": qstash_signature("sig_forged_key_0123456789abcdef012345", body),
        "expired": qstash_signature(CURRENT, body, expires_in=-120),
        "unsigned": None,
        "tampered body": qstash_signature(CURRENT, b'{"reason":"other"}'),
    }[case]
    headers = {"upstash-message-id": f"msg_{case}"}
    if signature is not None:
        headers["upstash-signature"] = signature
    before = gateway.command_count()
    status, reply = push(body, headers)
    assert status == 401 and reply["error"]["code"] == "unauthorized"
    assert gateway.command_count() == before  # rejected before any Redis command
    assert run(lambda_handler.runtime().engine.get(job_id)).state == State.WAITING


async def test_http_trigger_with_shared_secret(
    consumer_settings: Settings, consumer_registry: Registry, submit: Submit
) -> None:
    from functions.consumer.push import create_push_app

    settings = consumer_settings.model_copy(update={"consumer_secret": SecretStr(SECRET)})
    [job_id] = await submit("echo", {"value": "secret"})
    runtime = build_runtime(settings, registry=consumer_registry)
    app = create_push_app(runtime)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://consumer.test") as client:
            assert (
                await client.post("/consume", headers={"Authorization": "Bearer nope"})
            ).status_code == 401
            ok = await client.post("/consume", headers={"Authorization": f"Bearer {SECRET}"})
            assert ok.status_code == 200 and ok.json()["report"]["completed"] == 1
        assert (await runtime.engine.get(job_id)).state == State.COMPLETED
    finally:
        await runtime.redis.close()


# The worker loop.


async def test_worker_runs_jobs_and_idles_at_one_command_per_poll(
    make_runtime: MakeRuntime, submit: Submit, gateway: Any
) -> None:
    runtime = make_runtime()
    worker = Worker(runtime.consumer, idle_min=0.05, idle_max=0.1)
    task = asyncio.create_task(worker.run())
    ids = await submit("echo", {"value": 1}, n=5)

    async def all_done() -> bool:
        jobs = [await runtime.engine.get(i) for i in ids]
        return all(job.state == State.COMPLETED for job in jobs)

    await poll(all_done)
    await poll(lambda: _true_after(worker.stats.idle_polls >= 1))
    polls, commands = worker.stats.idle_polls, gateway.command_count()
    # Let it idle for a few more polls and count what they cost.
    await poll(lambda: _true_after(worker.stats.idle_polls >= polls + 3))
    idle_polls, idle_commands = worker.stats.idle_polls - polls, gateway.command_count() - commands
    worker.stop()
    stats = await asyncio.wait_for(task, 5)
    assert stats.completed == 5
    # One due() read per idle poll (one may be in flight); on a cluster one GET per queue it reads.
    per_poll = len(await runtime.engine.tick_queues()) if gateway.backend == "cluster" else 1
    assert abs(idle_commands - idle_polls * per_poll) <= per_poll


async def _true_after(value: bool) -> bool:
    return value


async def test_jobq_worker_stops_gracefully_on_sigterm(
    gateway: Any, unique_name: str, tmp_path: Path
) -> None:
    prefix = prefix_for("worker" + unique_name)
    env = {
        **os.environ,
        "JOBQ_ENV": "test",
        "JOBQ_REDIS_REST_URL": gateway.url,
        "JOBQ_REDIS_REST_TOKEN": gateway.token,
        "JOBQ_KEY_PREFIX": prefix,
        "JOBQ_JOB_MODULES": json.dumps(["tests.support.consumer_job_types"]),
        "JOBQ_REDIS_CLUSTER": "true" if gateway.backend == "cluster" else "false",
    }
    settings = Settings(
        JOBQ_REDIS_REST_URL=gateway.url,
        JOBQ_REDIS_REST_TOKEN=gateway.token,
        key_prefix=prefix,
        env="test",
        redis_cluster=gateway.backend == "cluster",
    )
    runtime = build_runtime(settings, registry=_global_registry())
    process = None
    try:
        started = tmp_path / "started"
        payload = {"seconds": 1.0, "started_marker": str(started)}
        spec = JobSpec(type="consumer_nap", queue="consumer_nap", payload=payload, timeout=20)
        [result] = (await runtime.engine.enqueue([spec])).results
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-c", "from infra.cli import app; app()", "worker", "--idle-max", "0.2"),
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )

        # Wait for the handler itself to run: a job claimed but not yet started is handed back on SIGTERM.
        await poll(lambda: _true_after(started.exists()), within=20)
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(process.communicate(), 20)
        assert process.returncode == 0, output.decode()
        assert b"worker stopped" in output
        job = await runtime.engine.get(result.job.id)
        assert job.state == State.COMPLETED and job.result == "rested"  # it finished within the grace
    finally:
        if process is not None and process.returncode is None:
            process.kill()
            await process.wait()
        await runtime.redis.close()


def _global_registry() -> Registry:
    from shared.registry import registry

    registry.load(["tests.support.consumer_job_types"])
    return registry


async def test_push_app_answers_unknown_routes_and_methods_in_the_api_error_shape(
    consumer_settings: Settings, consumer_registry: Registry
) -> None:
    from functions.consumer.push import create_push_app

    runtime = build_runtime(consumer_settings, registry=consumer_registry)
    transport = httpx.ASGITransport(app=create_push_app(runtime))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://consumer.test") as client:
            wrong_method = await client.get("/consume")
            unknown = await client.post("/nowhere")
            health = await client.get("/health")
        assert wrong_method.status_code == 405
        assert wrong_method.json()["error"]["code"] == "method_not_allowed"
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
        assert health.status_code == 200 and health.json() == {"ok": True}
    finally:
        await runtime.redis.close()


async def test_pushed_run_answers_within_its_budget_and_leaves_the_rest(
    consumer_settings: Settings, consumer_registry: Registry, submit: Submit
) -> None:
    from functions.consumer.push import create_push_app

    budget = 3.5  # a "nap" job needs its timeout (1 s) + 2 s reserve left to be claimed: one cycle fits
    settings = consumer_settings.model_copy(
        update={"consumer_secret": SecretStr(SECRET), "push_budget": budget}
    )
    ids = await submit("nap", {"seconds": 0.3}, n=10)
    runtime = build_runtime(settings, registry=consumer_registry)
    transport = httpx.ASGITransport(app=create_push_app(runtime))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://consumer.test") as client:
            started = time.monotonic()
            response = await client.post("/consume", headers={"Authorization": f"Bearer {SECRET}"})
            took = time.monotonic() - started
        assert response.status_code == 200
        report = response.json()["report"]
        assert took < budget
        assert report["stopped"] == "budget" and 0 < report["completed"] < 10
        states = [(await runtime.engine.get(i)).state for i in ids]
        assert states.count(State.COMPLETED) == report["completed"]
        assert states.count(State.WAITING) == 10 - report["completed"]  # for the next trigger or tick
    finally:
        await runtime.redis.close()


async def test_worker_backs_off_while_the_store_is_unreachable(consumer_registry: Registry) -> None:
    import socket

    with socket.socket() as probe:  # a loopback port with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = Settings(
        env="test", JOBQ_REDIS_REST_URL=f"http://127.0.0.1:{port}", JOBQ_REDIS_REST_TOKEN="x", redis_timeout=1
    )
    runtime = build_runtime(settings, registry=consumer_registry)
    worker = Worker(runtime.consumer, idle_min=0.01, idle_max=0.05)
    task = asyncio.create_task(worker.run())
    try:
        await poll(lambda: _true_after(worker.stats.store_errors >= 3))
        assert not task.done()  # still running: an outage is waited out, not fatal
    finally:
        worker.stop()
        stats = await asyncio.wait_for(task, 5)
        await runtime.redis.close()
    assert stats.drains == 0
