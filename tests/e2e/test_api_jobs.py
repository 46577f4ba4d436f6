"""End to end over HTTP (ASGI) against the gateway on real Redis: the job routes a user calls."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from shared.models import ErrorKind, JobError, Outcome
from tests.support.api_fixtures import MakeUser, engine_of, submit

pytestmark = pytest.mark.realredis

API_DOCS = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def error_of(response: httpx.Response) -> dict[str, Any]:
    detail: dict[str, Any] = response.json()["error"]
    assert set(detail) <= {"code", "message", "field", "request_id"}
    return detail


async def test_submit_then_read_the_job(api: httpx.AsyncClient, make_user: MakeUser) -> None:
    alice = await make_user("alice")
    created = await submit(
        api, alice, payload={"message": "hello", "repeat": 2}, priority="high", metadata={"a": 1}
    )
    assert created.status_code == 201, created.text
    job = created.json()
    assert created.headers["location"] == f"/v1/jobs/{job['id']}"
    assert (job["state"], job["owner"], job["queue"], job["priority"]) == ("waiting", "alice", "echo", 3)
    assert job["payload"] == {"message": "hello", "repeat": 2}

    read = await api.get(f"/v1/jobs/{job['id']}", headers=alice)
    assert read.status_code == 200
    assert read.json()["id"] == job["id"]
    assert read.json()["metadata"] == {"a": 1}


async def test_job_type_defaults_fill_what_the_caller_leaves_out(
    api: httpx.AsyncClient, make_user: MakeUser
) -> None:
    user = await make_user()
    response = await submit(api, user, type="fetch", payload={"url": "https://example.com/x"})
    assert response.status_code == 201, response.text
    assert (response.json()["queue"], response.json()["max_attempts"]) == ("outbound", 5)
    delayed = await submit(api, user, delay_seconds=3600)
    assert delayed.json()["state"] == "delayed"


async def test_idempotent_submit_by_header_or_body(api: httpx.AsyncClient, make_user: MakeUser) -> None:
    user = await make_user()
    first = await api.post(
        "/v1/jobs",
        json={"type": "echo", "payload": {"message": "a"}},
        headers={**user, "Idempotency-Key": "k1"},
    )
    again = await submit(api, user, payload={"message": "a"}, idempotency_key="k1")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    conflict = await submit(api, user, payload={"message": "b"}, idempotency_key="k1")
    assert conflict.status_code == 409
    assert error_of(conflict)["code"] == "idempotency_conflict"
    differ = await api.post(
        "/v1/jobs",
        json={"type": "echo", "payload": {"message": "a"}, "idempotency_key": "k2"},
        headers={**user, "Idempotency-Key": "k3"},
    )
    assert (differ.status_code, error_of(differ)["field"]) == (422, "idempotency_key")
    listed = (await api.get("/v1/jobs", headers=user)).json()["jobs"]
    assert [job["id"] for job in listed] == [first.json()["id"]]


async def test_batch_submit_is_all_or_nothing_with_per_item_results(
    api: httpx.AsyncClient, make_user: MakeUser
) -> None:
    user = await make_user()
    items = [{"type": "echo", "payload": {"message": str(i)}} for i in range(3)]
    response = await api.post("/v1/jobs/batch", json={"jobs": items}, headers=user)
    assert response.status_code == 201, response.text
    results = response.json()["results"]
    assert [(r["index"], r["created"], r["job"]["payload"]["message"]) for r in results] == [
        (0, True, "0"),
        (1, True, "1"),
        (2, True, "2"),
    ]
    bad = [items[0], {"type": "fetch", "payload": {"url": "not a url"}}]
    refused = await api.post("/v1/jobs/batch", json={"jobs": bad}, headers=user)
    assert refused.status_code == 422
    assert error_of(refused)["field"] == "jobs[1].payload.url"
    assert len((await api.get("/v1/jobs", headers=user)).json()["jobs"]) == 3


async def test_batch_over_the_bound_is_refused(
    api: httpx.AsyncClient, api_app: FastAPI, make_user: MakeUser
) -> None:
    user = await make_user()
    bound = api_app.state.services.settings.max_batch
    items = [{"type": "echo", "payload": {"message": "x"}}] * (bound + 1)
    response = await api.post("/v1/jobs/batch", json={"jobs": items}, headers=user)
    assert response.status_code == 413
    assert error_of(response)["field"] == "jobs"
    empty = await api.post("/v1/jobs/batch", json={"jobs": []}, headers=user)
    assert (empty.status_code, error_of(empty)["field"]) == (422, "jobs")


async def test_list_is_newest_first_with_a_cursor_and_filters(
    api: httpx.AsyncClient, make_user: MakeUser
) -> None:
    user = await make_user()
    ids = [(await submit(api, user, payload={"message": str(i)})).json()["id"] for i in range(5)]
    await submit(api, user, type="fetch", payload={"url": "https://example.com"})
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        params: dict[str, Any] = {"type": "echo", "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await api.get("/v1/jobs", params=params, headers=user)).json()
        seen += [job["id"] for job in page["jobs"]]
        cursor = page["cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]
    waiting = (await api.get("/v1/jobs", params={"state": "waiting"}, headers=user)).json()["jobs"]
    assert len(waiting) == 6
    none = (await api.get("/v1/jobs", params={"state": "completed"}, headers=user)).json()
    assert none == {"jobs": [], "cursor": None}


async def test_cancel_waiting_now_and_active_by_request(
    api: httpx.AsyncClient, api_app: FastAPI, make_user: MakeUser
) -> None:
    user = await make_user()
    waiting = (await submit(api, user)).json()
    cancelled = await api.delete(f"/v1/jobs/{waiting['id']}", headers=user)
    assert (cancelled.status_code, cancelled.json()["state"]) == (200, "cancelled")

    active = (await submit(api, user)).json()
    claimed = await engine_of(api_app).claim("echo", 10)
    assert [c.job.id for c in claimed] == [active["id"]]
    requested = await api.delete(f"/v1/jobs/{active['id']}", headers=user)
    assert requested.status_code == 202
    assert (requested.json()["state"], requested.json()["cancel_requested"]) == ("active", True)


async def test_retry_a_failed_job_and_refuse_a_waiting_one(
    api: httpx.AsyncClient, api_app: FastAPI, make_user: MakeUser
) -> None:
    user = await make_user()
    job = (await submit(api, user)).json()
    engine = engine_of(api_app)
    [claimed] = await engine.claim("echo", 1)
    error = JobError(kind=ErrorKind.PERMANENT, message="bad input")
    await engine.finish([Outcome(job_id=job["id"], token=claimed.token, status="failed", error=error)])
    failed = (await api.get(f"/v1/jobs/{job['id']}", headers=user)).json()
    assert (failed["state"], failed["error"]["message"]) == ("failed", "bad input")

    retried = await api.post(f"/v1/jobs/{job['id']}/retry", headers=user)
    assert (retried.status_code, retried.json()["state"]) == (200, "waiting")
    again = await api.post(f"/v1/jobs/{job['id']}/retry", headers=user)
    assert (again.status_code, error_of(again)["code"]) == (409, "invalid_transition")


async def test_another_users_job_is_exactly_a_missing_job(
    api: httpx.AsyncClient, make_user: MakeUser
) -> None:
    alice, bob = await make_user("alice"), await make_user("bob")
    job_id = (await submit(api, alice)).json()["id"]
    missing_id = job_id[:-1] + ("0" if job_id[-1] != "0" else "1")
    for method, path in [
        ("GET", "/v1/jobs/{}"),
        ("DELETE", "/v1/jobs/{}"),
        ("POST", "/v1/jobs/{}/retry"),
        ("GET", "/v1/jobs/{}/events?wait=0"),
    ]:
        theirs = await api.request(method, path.format(job_id), headers=bob)
        missing = await api.request(method, path.format(missing_id), headers=bob)
        assert (theirs.status_code, theirs.json()) == (404, missing.json()), (method, path)
    assert (await api.get("/v1/jobs", headers=bob)).json()["jobs"] == []
    assert (await api.get(f"/v1/jobs/{job_id}", headers=alice)).json()["state"] == "waiting"


@pytest.mark.parametrize("hostile", ["..%2F..%2Fetc", "a" * 300, "%00", "j%20x", "%E2%98%83", "*", "a:b:*"])
async def test_hostile_ids_are_404(api: httpx.AsyncClient, make_user: MakeUser, hostile: str) -> None:
    user = await make_user()
    for method, path in [("GET", "/v1/jobs/{}"), ("DELETE", "/v1/jobs/{}"), ("POST", "/v1/jobs/{}/retry")]:
        response = await api.request(method, path.format(hostile), headers=user)
        assert response.status_code == 404, (method, hostile, response.text)
        assert error_of(response)["code"] == "not_found"


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"type": "nope", "payload": {}}, 422, "type"),
        ({"type": "fetch", "payload": {"url": "ftp:/x"}}, 422, "payload.url"),
        ({"type": "echo", "payload": {"message": 5}}, 422, "payload.message"),
        ({"type": "echo", "payload": {"message": "x"}, "priority": "asap"}, 422, "priority"),
        ({"type": "echo", "payload": {"message": "x"}, "priority": 10}, 422, "priority"),
        ({"type": "echo", "payload": {"message": "x"}, "max_attempts": "many"}, 422, "max_attempts"),
        ({"type": "echo", "payload": {"message": "x"}, "delay_seconds": -1}, 422, "delay_seconds"),
        ({"type": "echo", "payload": {"message": "x"}, "surprise": 1}, 422, "surprise"),
        ({"type": "echo", "payload": {"message": "x"}, "tags": ["bad tag!"]}, 422, "tags"),
        ({"type": ["echo"]}, 422, "type"),
        ([1, 2], 422, "body"),
    ],
)
async def test_bad_submits_are_4xx_naming_the_field(
    api: httpx.AsyncClient, make_user: MakeUser, body: Any, status: int, field: str | None
) -> None:
    user = await make_user()
    response = await api.post("/v1/jobs", json=body, headers=user)
    assert response.status_code == status, response.text
    assert error_of(response).get("field") == field


async def test_malformed_json_and_wrong_content_are_400_or_422(
    api: httpx.AsyncClient, make_user: MakeUser
) -> None:
    user = await make_user()
    broken = await api.post(
        "/v1/jobs", content=b'{"type": "echo",', headers={**user, "Content-Type": "application/json"}
    )
    assert (broken.status_code, error_of(broken)["code"]) == (400, "invalid_json")
    not_json = await api.post(
        "/v1/jobs", content=b"type=echo", headers={**user, "Content-Type": "text/plain"}
    )
    assert (not_json.status_code, error_of(not_json)["code"]) == (415, "unsupported_media_type")


async def test_errors_name_the_field_and_the_problem_in_the_callers_terms(
    api: httpx.AsyncClient, make_user: MakeUser
) -> None:
    user = await make_user()
    body = b'{"type": "echo", "payload": {"message": "hi"}}'
    no_header = await api.post("/v1/jobs", content=body, headers=user)  # no Content-Type at all
    form = await api.post(  # what `curl -d` sends without -H 'Content-Type: application/json'
        "/v1/jobs", content=body, headers={**user, "Content-Type": "application/x-www-form-urlencoded"}
    )
    for refused in (no_header, form):
        detail = error_of(refused)
        assert (refused.status_code, detail["code"], detail["field"]) == (
            415,
            "unsupported_media_type",
            "content-type",
        )
        assert "Content-Type: application/json" in detail["message"]

    for payload in ({}, {"payload": None}):  # a payload left out, or null, where a model wants an object
        missing = await api.post("/v1/jobs", json={"type": "fetch", **payload}, headers=user)
        detail = error_of(missing)
        assert (missing.status_code, detail["field"]) == (422, "payload"), missing.text
        assert detail["message"] == "Input should be a JSON object"  # not the model's class name

    wrong_method = await api.put("/v1/jobs", headers=user)
    detail = error_of(wrong_method)
    assert (wrong_method.status_code, detail["code"]) == (405, "method_not_allowed")
    assert wrong_method.headers["Allow"] == "GET, POST"  # every method of the path, not one route's
    assert detail["message"] == "PUT is not allowed on /v1/jobs; allowed: GET, POST"
    documented = API_DOCS.read_text()
    for row in ("| 405 | `method_not_allowed` |", "| 415 | `unsupported_media_type` |"):
        assert row in documented, f"docs/api.md's error table lacks {row}"


async def test_oversize_bodies_and_payloads_are_413(
    api: httpx.AsyncClient, api_app: FastAPI, make_user: MakeUser
) -> None:
    user = await make_user()
    settings = api_app.state.services.settings
    huge = await submit(api, user, payload={"message": "x" * settings.max_body_bytes})
    assert (huge.status_code, error_of(huge)["code"]) == (413, "too_large")
    app_settings = settings.model_copy(update={"max_payload_bytes": 100})
    api_app.state.services.settings = app_settings
    big_payload = await submit(api, user, payload={"message": "y" * 200})
    assert (big_payload.status_code, error_of(big_payload)["field"]) == (413, "payload")


async def test_a_bug_in_a_job_type_is_a_bare_500_with_a_request_id(
    api_app: FastAPI, make_user: MakeUser, caplog: pytest.LogCaptureFixture
) -> None:
    user = await make_user()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=api_app, raise_app_exceptions=False), base_url="http://jobq.test"
    ) as client:
        response = await client.post(
            "/v1/jobs", json={"type": "broken", "payload": {"value": 13}}, headers=user
        )
    assert response.status_code == 500
    detail = error_of(response)
    assert (detail["code"], detail["message"]) == ("internal", "internal error")
    assert "validator" not in response.text
    assert any(getattr(r, "request_id", None) == detail["request_id"] for r in caplog.records)


async def test_health_reports_the_redis_round_trip(api: httpx.AsyncClient) -> None:
    response = await api.get("/health")
    assert response.status_code == 200
    assert response.json()["redis"]["ok"] is True
    assert response.json()["redis"]["latency_ms"] >= 0


async def test_unknown_routes_and_methods_use_the_error_shape(api: httpx.AsyncClient) -> None:
    assert error_of(await api.get("/v1/nothing"))["code"] == "not_found"
    assert error_of(await api.put("/v1/jobs"))["code"] == "method_not_allowed"
