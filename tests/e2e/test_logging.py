"""Logs of real requests and real consumer runs: an access line per request, a line per job outcome, and
no credential sent to the API ever shows up in the output."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from shared.logs import JobqHandler, configure_logging
from shared.settings import Settings
from tests.support.api_fixtures import ADMIN_TOKEN, MakeUser
from tests.support.consumer_fixtures import MakeRuntime, Submit


def parse(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def capture(settings: Settings) -> io.StringIO:
    stream = io.StringIO()
    configure_logging(settings, stream=stream)
    return stream


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    yield
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, JobqHandler)]:
        root.removeHandler(handler)


@pytest.fixture
def api_output(api_app: FastAPI, api_settings: Settings) -> io.StringIO:
    return capture(api_settings)  # after create_app, which configured logging to stderr


async def test_one_access_line_per_request(
    api: httpx.AsyncClient, api_output: io.StringIO, make_user: MakeUser
) -> None:
    headers = {**await make_user("alice"), "X-Request-ID": "req-0123456789"}
    job = {"type": "echo", "payload": {"message": "hi"}}
    response = await api.post("/v1/jobs?debug=1", json=job, headers=headers)
    assert response.status_code == 201
    missing = await api.get("/v1/jobs/nope", headers=headers)
    assert missing.status_code == 404
    requests = [e for e in parse(api_output) if e["event"] == "request"]
    submit = next(e for e in requests if e["request_id"] == "req-0123456789" and e["method"] == "POST")
    assert submit["path"] == "/v1/jobs"  # no query string
    assert submit["status"] == 201 and submit["owner"] == "alice" and submit["duration_ms"] >= 0
    assert submit["logger"] == "jobq.api.access" and submit["level"] == "info"
    not_found = next(e for e in requests if e["method"] == "GET" and e["path"] == "/v1/jobs/nope")
    assert not_found["status"] == 404 and not_found["request_id"] == missing.headers["x-request-id"]
    unauthenticated = await api.get("/v1/queues")
    assert unauthenticated.status_code == 401
    line = next(e for e in parse(api_output) if e.get("path") == "/v1/queues")
    assert line["status"] == 401 and "owner" not in line


async def test_an_unhandled_error_is_logged_with_its_request_id(
    api: httpx.AsyncClient, api_output: io.StringIO, admin_headers: dict[str, str]
) -> None:
    job = {"type": "broken", "payload": {"value": 13}}
    response = await api.post("/v1/jobs", json=job, headers=admin_headers)
    assert response.status_code == 500
    request_id = response.headers["x-request-id"]
    entries = [e for e in parse(api_output) if e.get("request_id") == request_id]
    assert {e["event"] for e in entries} == {"unhandled error", "request"}
    assert next(e for e in entries if e["event"] == "request")["status"] == 500
    assert "RuntimeError" in next(e for e in entries if e["event"] == "unhandled error")["exc"]


async def test_credentials_sent_to_the_api_never_reach_the_logs(
    api: httpx.AsyncClient, api_output: io.StringIO, admin_headers: dict[str, str], make_user: MakeUser
) -> None:
    user = await make_user("bob")
    api_key = user["Authorization"].removeprefix("Bearer ")
    secret_payload = "payload-secret-4111111111111111"
    await api.post("/v1/jobs", json={"type": "echo", "payload": {"message": secret_payload}}, headers=user)
    await api.get(f"/v1/jobs?token={api_key}", headers=admin_headers)
    await api.get("/v1/queues", headers={"Authorization": f"Bearer {api_key}x"})  # wrong: 401
    await api.get("/metrics", headers=admin_headers)
    await api.post("/v1/jobs", json={"type": "broken", "payload": {"value": 13}}, headers=user)  # a 500
    text = api_output.getvalue()
    assert len(parse(api_output)) >= 6
    for secret in (ADMIN_TOKEN, api_key, secret_payload):
        assert secret not in text


async def test_one_info_line_per_run_and_job_lines_at_debug(
    submit: Submit, make_runtime: MakeRuntime, consumer_settings: Settings
) -> None:
    (ok,) = await submit("echo", {"value": "v"})
    (bad,) = await submit("permanent", {"value": "secret-value-in-payload"})
    (flaky,) = await submit("flaky", {"fail_times": 1})
    runtime = make_runtime()
    output = capture(consumer_settings)  # after build_runtime, which configured logging to stderr
    await runtime.consumer.drain(budget=20)
    info = [e for e in parse(output) if e["level"] != "debug"]
    assert [e["event"] for e in info] == [
        "consumer run: claimed 4, completed 2, failed 1, retried 1, slept 0, cancelled 0, handed back 0, "
        f"lost 0 in {info[0]['event'].split(' in ')[1]}"
    ]
    assert not any(e.get("job_id") for e in info)

    output = capture(consumer_settings.model_copy(update={"log_level": "DEBUG"}))
    (ok,) = await submit("echo", {"value": "v"})
    (bad,) = await submit("permanent", {"value": "secret-value-in-payload"})
    (flaky,) = await submit("flaky", {"fail_times": 1})
    await runtime.consumer.drain(budget=20)
    entries = [e for e in parse(output) if e.get("job_id")]
    by_event: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for entry in entries:
        by_event.setdefault((entry["event"], entry["job_id"]), []).append(entry)

    claimed = by_event[("job claimed", ok)][0]
    assert (claimed["queue"], claimed["attempt"], claimed["type"]) == ("echo", 1, "echo")
    finished = by_event[("job finished", ok)][0]
    assert finished["state"] == "completed" and finished["attempt"] == 1 and finished["duration_ms"] >= 0
    failed = by_event[("job failed", bad)][0]
    assert failed["state"] == "failed" and failed["error"] == "permanent" and failed["level"] == "debug"
    retried = by_event[("job failed", flaky)][0]
    assert retried["state"] in ("delayed", "waiting") and retried["attempt"] == 1
    assert "secret-value-in-payload" not in output.getvalue()
