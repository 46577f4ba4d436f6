"""Hostile input and tenant isolation, one regression test per finding of the API probe: each hostile
request answers a 4xx JSON error naming the field (never a 500), writes nothing, and no owner sees or
evicts another's jobs. In process over ASGI, through the REST gateway on real Redis; "writes nothing" is
checked on every key under the test's prefix (rate-limit buckets aside: they count the abuse).
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI
from pydantic import BaseModel, SecretStr

from functions.api.app import create_app
from shared.codec import unpack_m
from shared.ids import split_id
from shared.limits import MAX_JSON_DEPTH, MAX_METADATA_BYTES
from shared.models import Outcome
from shared.registry import Registry
from shared.settings import Settings
from tests.abuse.conftest import Snapshot
from tests.support.api_fixtures import ADMIN_HEADERS, MakeUser, api_test_registry, asgi_client, engine_of

pytestmark = pytest.mark.realredis

ECHO = {"type": "echo", "payload": {"message": "hi"}}
JSON = {"Content-Type": "application/json"}


class AgentTask(BaseModel):
    repo: str
    github_token: SecretStr


async def _never_run(payload: Any, ctx: Any) -> None:
    raise AssertionError("API tests never run handlers")


@pytest.fixture
def api_registry() -> Registry:
    registry = api_test_registry()
    registry.job_type("agent", payload=AgentTask)(_never_run)
    return registry


def error_of(response: httpx.Response) -> dict[str, Any]:
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    detail: dict[str, Any] = response.json()["error"]
    assert detail["code"] and detail["message"], detail
    return detail


async def post_raw(api: httpx.AsyncClient, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return await api.post(path, content=body, headers={**headers, **JSON})


# 1. A run_at past year 9999 once in UTC.


async def test_run_at_beyond_year_9999_in_utc_is_422_and_writes_nothing(
    api: httpx.AsyncClient, make_user: MakeUser, key_snapshot: Snapshot
) -> None:
    user = await make_user("alice")
    before = await key_snapshot()
    for run_at in ("9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00+14:00"):
        response = await api.post("/v1/jobs", json={**ECHO, "run_at": run_at}, headers=user)
        assert (response.status_code, error_of(response)["field"]) == (422, "run_at"), response.text
        batch = await api.post(
            "/v1/jobs/batch", json={"jobs": [ECHO, {**ECHO, "run_at": run_at}]}, headers=user
        )
        assert (batch.status_code, error_of(batch)["field"]) == (422, "jobs[1].run_at"), batch.text
    assert await key_snapshot() == before
    latest = await api.post("/v1/jobs", json={**ECHO, "run_at": "9999-12-31T23:59:59+00:00"}, headers=user)
    assert (latest.status_code, latest.json()["state"]) == (201, "delayed")


async def test_a_stored_run_at_beyond_datetime_breaks_no_read(
    api: httpx.AsyncClient, api_app: FastAPI, make_user: MakeUser
) -> None:
    """A record written before the range check: every read of it, the admin's views included, still works."""
    user = await make_user("alice")
    job = (await api.post("/v1/jobs", json={**ECHO, "delay_seconds": 60}, headers=user)).json()
    engine = engine_of(api_app)
    unique, queue = split_id(job["id"])
    jobs, field = engine.keys.queue(queue).jobs(), f"{unique}:m"
    m = unpack_m(await engine.store.command("HGET", jobs, field))
    m["ra"] = str(253402300799000 + 12 * 3600 * 1000)  # 9999-12-31T23:59:59-12:00 as it used to be stored
    await engine.store.command("HSET", jobs, field, "|".join(m.values()))
    reads = [
        ("GET", f"/v1/jobs/{job['id']}", user),
        ("GET", "/v1/jobs", user),
        ("GET", f"/v1/jobs/{job['id']}/events?wait=0", user),
        ("GET", "/v1/queues/echo/jobs?state=delayed", ADMIN_HEADERS),
        ("GET", "/v1/queues/echo/jobs?state=delayed&view=summary", ADMIN_HEADERS),
        ("DELETE", f"/v1/jobs/{job['id']}", user),
    ]
    for method, path, headers in reads:
        response = await api.request(method, path, headers=headers)
        assert response.status_code < 300, (path, response.status_code, response.text[:300])


# 2. Lone surrogates, escaped and raw.


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (b'{"type":"echo","payload":{"message":"\\ud800"}}', 422, "payload.message"),
        (b'{"type":"echo","payload":{"message":"x"},"metadata":{"\\udfff":1}}', 422, "metadata.\\udfff"),
        (b'{"type":"echo","payload":{"message":"\xed\xa0\x80"}}', 400, "body"),
        (
            b'{"jobs":[{"type":"echo","payload":{"message":"x"}},{"type":"echo","payload":{"message":"\\ud800"}}]}',
            422,
            "jobs[1].payload.message",
        ),
        (b'{"jobs":[{"type":"echo","payload":{"message":"\xed\xa0\x80"}}]}', 400, "body"),
    ],
)
async def test_lone_surrogates_are_4xx_naming_the_field(
    api: httpx.AsyncClient, make_user: MakeUser, key_snapshot: Snapshot, body: bytes, status: int, field: str
) -> None:
    user = await make_user("alice")
    before = await key_snapshot()
    path = "/v1/jobs/batch" if body.startswith(b'{"jobs"') else "/v1/jobs"
    response = await post_raw(api, path, body, user)
    assert (response.status_code, error_of(response)["field"]) == (status, field), response.text
    assert await key_snapshot() == before


# 3. Deep nesting.


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 256, 600, 950, 5000])
@pytest.mark.parametrize("member", ["payload", "metadata"])
async def test_deep_nesting_is_422_naming_the_field_and_the_limit(
    api: httpx.AsyncClient, make_user: MakeUser, key_snapshot: Snapshot, depth: int, member: str
) -> None:
    user = await make_user("alice")
    before = await key_snapshot()
    deep = b"[" * depth + b"]" * depth
    inner = (
        b'"payload":{"message":"x","deep":' + deep + b"}"
        if member == "payload"
        else (b'"payload":{"message":"x"},"metadata":{"deep":' + deep + b"}")
    )
    for path, body in [
        ("/v1/jobs", b'{"type":"echo",' + inner + b"}"),
        ("/v1/jobs/batch", b'{"jobs":[{"type":"echo",' + inner + b"}]}"),
    ]:
        response = await post_raw(api, path, body, user)
        detail = error_of(response)
        assert response.status_code == 422, response.text
        assert str(MAX_JSON_DEPTH) in detail["message"]
        expected = f"{member}.deep" if path == "/v1/jobs" else f"jobs[0].{member}.deep"
        assert detail["field"] in (expected, "body"), detail  # "body": too deep for the parser to walk
        if depth < 900:
            assert detail["field"] == expected
    assert await key_snapshot() == before
    ok = b"[" * (MAX_JSON_DEPTH - 3) + b"]" * (MAX_JSON_DEPTH - 3)
    accepted = await post_raw(
        api, "/v1/jobs", b'{"type":"echo","payload":{"message":"x"},"metadata":{"a":' + ok + b"}}", user
    )
    assert accepted.status_code == 201, accepted.text


# 4. NaN and Infinity; and numbers too large for a float.


@pytest.mark.parametrize("token", [b"NaN", b"Infinity", b"-Infinity"])
async def test_nan_and_infinity_are_400_invalid_json(
    api: httpx.AsyncClient, make_user: MakeUser, key_snapshot: Snapshot, token: bytes
) -> None:
    user = await make_user("alice")
    before = await key_snapshot()
    for body in [
        b'{"type":"echo","payload":{"message":"x"},"metadata":{"score":' + token + b"}}",
        b'{"type":"echo","payload":{"message":"x"},"delay_seconds":' + token + b"}",
    ]:
        response = await post_raw(api, "/v1/jobs", body, user)
        assert (response.status_code, error_of(response)["code"]) == (400, "invalid_json"), response.text
    huge = await post_raw(
        api, "/v1/jobs", b'{"type":"echo","payload":{"message":"x"},"metadata":{"n":1e400}}', user
    )
    assert (huge.status_code, error_of(huge)["field"]) == (422, "metadata.n")
    assert await key_snapshot() == before


# 5. Tag listings are per owner.


async def test_tag_listings_are_per_owner(api: httpx.AsyncClient, make_user: MakeUser) -> None:
    alice, bob = await make_user("alice"), await make_user("bob")
    mine = [
        (await api.post("/v1/jobs", json={**ECHO, "tags": ["t"]}, headers=alice)).json()["id"]
        for _ in range(2)
    ]
    peek = (await api.get("/v1/jobs?tag=t&limit=1", headers=bob)).json()
    assert peek == {"jobs": [], "cursor": None}  # no cursor that is one of alice's ids
    batch = {"jobs": [{**ECHO, "tags": ["t"]}] * 20}
    for _ in range(3):
        assert (await api.post("/v1/jobs/batch", json=batch, headers=bob)).status_code == 201
    listed = (await api.get("/v1/jobs?tag=t&limit=200", headers=alice)).json()
    assert [job["id"] for job in listed["jobs"]] == mine[::-1]
    assert len((await api.get("/v1/jobs?tag=t&limit=200", headers=bob)).json()["jobs"]) == 60


# 6. The bootstrap admin's owner cannot be claimed.


async def test_an_owner_named_admin_cannot_reach_the_bootstrap_admins_jobs(
    api: httpx.AsyncClient, make_user: MakeUser
) -> None:
    impostor = await make_user("admin")
    job = (await api.post("/v1/jobs", json=ECHO, headers=ADMIN_HEADERS)).json()
    assert job["owner"] == "@admin"
    assert (await api.get(f"/v1/jobs/{job['id']}", headers=impostor)).status_code == 404
    assert (await api.delete(f"/v1/jobs/{job['id']}", headers=impostor)).status_code == 404
    assert (await api.get("/v1/jobs", headers=impostor)).json()["jobs"] == []
    reserved = await api.post("/v1/keys", json={"owner": "@admin"}, headers=ADMIN_HEADERS)
    assert (reserved.status_code, error_of(reserved)["field"]) == (422, "owner")
    assert (await api.get(f"/v1/jobs/{job['id']}", headers=ADMIN_HEADERS)).json()["state"] == "waiting"


async def test_jwts_naming_the_admin_owner_or_with_a_string_exp_are_401(
    api_settings: Settings, api_registry: Registry
) -> None:
    secret = "jwt-secret-" + "k" * 32
    app = create_app(api_settings.model_copy(update={"jwt_secret": SecretStr(secret)}), registry=api_registry)

    def bearer(**claims: object) -> dict[str, str]:
        token = jwt.encode({"sub": "hana", "exp": int(time.time()) + 60, **claims}, secret, algorithm="HS256")
        return {"Authorization": f"Bearer {token}"}

    async with asgi_client(app) as client:
        assert (await client.get("/v1/jobs", headers=bearer())).status_code == 200
        for claims in [{"sub": "@admin"}, {"exp": str(int(time.time()) + 60)}, {"nbf": "0"}, {"exp": True}]:
            response = await client.get("/v1/jobs", headers=bearer(**claims))
            assert (response.status_code, error_of(response)["code"]) == (401, "unauthorized"), claims
    await app.state.services.redis.close()


# 7. DELETE of a finished job.


async def test_cancel_of_a_finished_job_is_409_and_changes_nothing(
    api: httpx.AsyncClient, api_app: FastAPI, make_user: MakeUser
) -> None:
    user = await make_user("alice")
    job = (await api.post("/v1/jobs", json=ECHO, headers=user)).json()
    engine = engine_of(api_app)
    [claimed] = await engine.claim("echo", 1)
    await engine.finish(
        [Outcome(job_id=job["id"], token=claimed.token, status="completed", result={"ok": 1})]
    )
    response = await api.delete(f"/v1/jobs/{job['id']}", headers=user)
    assert (response.status_code, error_of(response)["code"]) == (409, "invalid_transition")
    assert "completed" in error_of(response)["message"]
    after = (await api.get(f"/v1/jobs/{job['id']}", headers=user)).json()
    assert (after["state"], after["cancel_requested"], after["result"]) == ("completed", False, {"ok": 1})
    waiting = (await api.post("/v1/jobs", json=ECHO, headers=user)).json()
    assert (await api.delete(f"/v1/jobs/{waiting['id']}", headers=user)).status_code == 200
    again = await api.delete(f"/v1/jobs/{waiting['id']}", headers=user)  # a repeated DELETE: unchanged, 200
    assert (again.status_code, again.json()["state"]) == (200, "cancelled")


# 8. Errors say what conflicts, and name the field as the caller sent it.


async def test_idempotency_conflict_says_what_and_names_the_field(
    api: httpx.AsyncClient, make_user: MakeUser
) -> None:
    user = await make_user("alice")
    first = {**ECHO, "idempotency_key": "k1"}
    assert (await api.post("/v1/jobs", json=first, headers=user)).status_code == 201
    other = {"type": "echo", "payload": {"message": "other"}, "idempotency_key": "k1"}
    single = await api.post("/v1/jobs", json=other, headers=user)
    detail = error_of(single)
    assert (single.status_code, detail["code"], detail["field"]) == (
        409,
        "idempotency_conflict",
        "idempotency_key",
    )
    assert "idempotency key" in detail["message"] and "jobs[0]" not in detail["message"]
    batch = await api.post("/v1/jobs/batch", json={"jobs": [ECHO, other]}, headers=user)
    assert (batch.status_code, error_of(batch)["field"]) == (409, "jobs[1].idempotency_key")


# Concerns: strict numbers, duplicate keys, the metadata limit, secrets, the outage message.


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**ECHO, "priority": True}, "priority"),
        ({**ECHO, "priority": 1.5}, "priority"),
        ({**ECHO, "delay_seconds": "10"}, "delay_seconds"),
        ({**ECHO, "max_attempts": "3"}, "max_attempts"),
        ({**ECHO, "timeout_seconds": False}, "timeout_seconds"),
        ({**ECHO, "backoff": {"delay": "1"}}, "backoff.delay"),
    ],
)
async def test_numbers_are_strict(api: httpx.AsyncClient, make_user: MakeUser, body: Any, field: str) -> None:
    user = await make_user("alice")
    response = await api.post("/v1/jobs", json=body, headers=user)
    assert (response.status_code, error_of(response)["field"]) == (422, field), response.text
    admin = await api.post("/v1/keys", json={"owner": "x", "admin": "true"}, headers=ADMIN_HEADERS)
    assert (admin.status_code, error_of(admin)["field"]) == (422, "admin")
    accepted = await api.post(
        "/v1/jobs", json={**ECHO, "delay_seconds": 10, "timeout_seconds": 5}, headers=user
    )
    assert accepted.status_code == 201, accepted.text


async def test_duplicate_json_members_are_400_naming_the_member(
    api: httpx.AsyncClient, make_user: MakeUser, key_snapshot: Snapshot
) -> None:
    user = await make_user("alice")
    before = await key_snapshot()
    body = b'{"type":"echo","payload":{"message":"a","message":"b"}}'
    response = await post_raw(api, "/v1/jobs", body, user)
    assert (response.status_code, error_of(response)["code"], error_of(response)["field"]) == (
        400,
        "invalid_json",
        "message",
    )
    assert await key_snapshot() == before


async def test_one_metadata_limit_measured_as_stored(api: httpx.AsyncClient, make_user: MakeUser) -> None:
    user = await make_user("alice")
    overhead = len('{"a":""}')
    fits = {"a": "é" * ((MAX_METADATA_BYTES - overhead) // 2)}  # two UTF-8 bytes each
    assert (await api.post("/v1/jobs", json={**ECHO, "metadata": fits}, headers=user)).status_code == 201
    over = {"a": "x" * (MAX_METADATA_BYTES - overhead + 1)}
    response = await api.post("/v1/jobs", json={**ECHO, "metadata": over}, headers=user)
    assert (response.status_code, error_of(response)["field"]) == (413, "metadata")
    assert str(MAX_METADATA_BYTES) in error_of(response)["message"]


async def test_secret_payload_fields_are_masked_in_every_read_but_stored_for_the_handler(
    api: httpx.AsyncClient, api_app: FastAPI, api_registry: Registry, make_user: MakeUser
) -> None:
    user = await make_user("alice")
    token = "ghp_" + "s3cr3t" * 6
    body = {"type": "agent", "payload": {"repo": "acme/app", "github_token": token}}
    created = await api.post("/v1/jobs", json=body, headers=user)
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    batch = await api.post("/v1/jobs/batch", json={"jobs": [body]}, headers=user)
    reads = [
        created,
        batch,
        await api.get(f"/v1/jobs/{job_id}", headers=user),
        await api.get(f"/v1/jobs/{job_id}", headers=ADMIN_HEADERS),
        await api.get("/v1/jobs", headers=user),
        await api.get("/v1/queues/agent/jobs", headers=ADMIN_HEADERS),
        await api.get("/v1/queues/agent/jobs?view=summary", headers=ADMIN_HEADERS),
        await api.get(f"/v1/jobs/{job_id}/events?wait=0", headers=user),
    ]
    for response in reads:
        assert response.status_code == 200 or response.status_code == 201, response.text
        assert token not in response.text
    assert created.json()["payload"] == {"repo": "acme/app", "github_token": "**********"}
    stored = await engine_of(api_app).get(job_id)  # what a consumer claims and hands to the handler
    parsed = api_registry.get("agent").parse(stored.payload)
    assert isinstance(parsed, AgentTask) and parsed.github_token.get_secret_value() == token


class BackendDown(httpx.AsyncBaseTransport):
    """The REST endpoint answers as our gateway does when its Redis is down, naming the backend."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"error": "backend unavailable: dial tcp 10.20.30.40:6379: refused"})


async def test_an_outage_never_tells_callers_the_backends_address(
    api: httpx.AsyncClient, api_app: FastAPI
) -> None:
    http_client = api_app.state.services.redis._http._client
    real = http_client._transport
    http_client._transport = BackendDown()
    try:
        health = await api.get("/health")
        submit = await api.post("/v1/jobs", json=ECHO, headers=ADMIN_HEADERS)
    finally:
        http_client._transport = real
    for response in (health, submit):
        assert (response.status_code, response.json()["error"]["code"]) == (503, "store_unavailable")
        assert "10.20.30.40" not in response.text and "6379" not in response.text


@pytest.mark.parametrize(
    "last_event_id",
    [
        "99999999999999999999",
        "18446744073709551616~",
        "1~echo=99999999999999999999-0",
        "1~echo=1-18446744073709551616",
    ],
)
async def test_queue_stream_ids_out_of_range_start_afresh(api: httpx.AsyncClient, last_event_id: str) -> None:
    assert (await api.post("/v1/jobs", json=ECHO, headers=ADMIN_HEADERS)).status_code == 201
    response = await api.get("/v1/events/queues", headers={**ADMIN_HEADERS, "Last-Event-ID": last_event_id})
    assert response.status_code == 200
    assert "event: hello" in response.text and "event: error" not in response.text
