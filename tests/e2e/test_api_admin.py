"""End to end: credentials (keys, admin token, JWT), admin routes for keys and queues, CORS."""

from __future__ import annotations

import time

import httpx
import jwt
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from functions.api.app import create_app
from shared.engine import Engine
from shared.models import ErrorKind, JobError, Outcome
from shared.registry import Registry
from shared.settings import Settings
from tests.support.api_fixtures import ADMIN_HEADERS, MakeUser, asgi_client

pytestmark = pytest.mark.realredis

ECHO = {"type": "echo", "payload": {"message": "hi"}}


async def test_missing_bad_and_malformed_credentials_are_401(api: httpx.AsyncClient) -> None:
    for headers in [
        {},
        {"Authorization": "Bearer jq_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
        {"Authorization": "Bearer not-a-key"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer"},
    ]:
        response = await api.get("/v1/jobs", headers=headers)
        assert response.status_code == 401, headers
        assert response.json()["error"]["code"] == "unauthorized"
        assert response.headers["www-authenticate"] == "Bearer"


async def test_keys_are_created_listed_and_revoked_by_admins_only(api: httpx.AsyncClient) -> None:
    created = await api.post("/v1/keys", json={"owner": "erin", "rate": "10/minute"}, headers=ADMIN_HEADERS)
    assert created.status_code == 201
    assert created.headers["cache-control"] == "no-store"
    key = created.json()
    assert key["key"].startswith(f"jq_{key['id']}_")
    erin = {"Authorization": f"Bearer {key['key']}"}
    assert (await api.post("/v1/jobs", json=ECHO, headers=erin)).json()["owner"] == "erin"

    listed = (await api.get("/v1/keys", headers=ADMIN_HEADERS)).json()["keys"]
    assert [k["owner"] for k in listed] == ["erin"]
    assert "key" not in listed[0] and "hash" not in listed[0]

    for method, path in [("GET", "/v1/keys"), ("POST", "/v1/keys"), ("DELETE", f"/v1/keys/{key['id']}")]:
        response = await api.request(method, path, headers=erin, json={"owner": "x"})
        assert response.status_code == 403, (method, path)

    revoked = await api.delete(f"/v1/keys/{key['id']}", headers=ADMIN_HEADERS)
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None
    assert (await api.get("/v1/jobs", headers=erin)).status_code == 401
    assert (await api.delete("/v1/keys/0123456789abcdef", headers=ADMIN_HEADERS)).status_code == 404
    assert (await api.delete("/v1/keys/../../x", headers=ADMIN_HEADERS)).status_code == 404


async def test_key_input_is_validated(api: httpx.AsyncClient) -> None:
    for body, field in [
        ({"owner": ""}, "owner"),
        ({"owner": "a b"}, "owner"),
        ({"owner": "a", "rate": "lots"}, "rate"),
    ]:
        response = await api.post("/v1/keys", json=body, headers=ADMIN_HEADERS)
        assert (response.status_code, response.json()["error"]["field"]) == (422, field)


async def test_an_admin_key_may_use_admin_routes(api: httpx.AsyncClient, make_user: MakeUser) -> None:
    admin = await make_user("ops", admin=True)
    assert (await api.get("/v1/queues", headers=admin)).status_code == 200
    assert (await api.get("/v1/keys", headers=admin)).status_code == 200


async def test_revocation_reaches_other_warm_instances_within_the_cache_time(
    api_settings: Settings, api_registry: Registry
) -> None:
    creator = create_app(api_settings, registry=api_registry)
    other = create_app(api_settings.model_copy(update={"key_cache_seconds": 0.3}), registry=api_registry)
    async with asgi_client(creator) as first, asgi_client(other) as second:
        key = (await first.post("/v1/keys", json={"owner": "gil"}, headers=ADMIN_HEADERS)).json()
        headers = {"Authorization": f"Bearer {key['key']}"}
        assert (await second.get("/v1/jobs", headers=headers)).status_code == 200  # now cached there
        await first.delete(f"/v1/keys/{key['id']}", headers=ADMIN_HEADERS)
        assert (await second.get("/v1/jobs", headers=headers)).status_code == 200  # still cached
        deadline = time.monotonic() + 5
        while (await second.get("/v1/jobs", headers=headers)).status_code != 401:
            assert time.monotonic() < deadline, "revocation never took effect"
    await creator.state.services.redis.close()
    await other.state.services.redis.close()


async def test_jwt_users_own_jobs_by_sub_and_admin_by_claim(
    api_settings: Settings, api_registry: Registry
) -> None:
    secret = "jwt-secret-" + "k" * 32
    app = create_app(
        api_settings.model_copy(update={"jwt_secret": SecretStr(secret), "jwt_audience": "jobq"}),
        registry=api_registry,
    )

    def bearer(**claims: object) -> dict[str, str]:
        token = jwt.encode({"aud": "jobq", "exp": int(time.time()) + 60, **claims}, secret, algorithm="HS256")
        return {"Authorization": f"Bearer {token}"}

    async with asgi_client(app) as client:
        job = (await client.post("/v1/jobs", json=ECHO, headers=bearer(sub="hana"))).json()
        assert job["owner"] == "hana"
        assert (await client.get(f"/v1/jobs/{job['id']}", headers=bearer(sub="ivan"))).status_code == 404
        assert (await client.get("/v1/queues", headers=bearer(sub="hana"))).status_code == 403
        assert (
            await client.get("/v1/queues", headers=bearer(sub="root", jobq_admin=True))
        ).status_code == 200
        assert (await client.get("/v1/jobs", headers=bearer(sub="hana", aud="other"))).status_code == 401
    await app.state.services.redis.close()


async def test_queue_stats_jobs_pause_resume(
    api: httpx.AsyncClient, api_app: FastAPI, make_user: MakeUser
) -> None:
    user = await make_user()
    for _ in range(3):
        await api.post("/v1/jobs", json=ECHO, headers=user)
    queues = (await api.get("/v1/queues", headers=ADMIN_HEADERS)).json()["queues"]
    echo = next(q for q in queues if q["queue"] == "echo")
    assert (echo["counts"]["waiting"], echo["paused"]) == (3, False)

    assert (await api.post("/v1/queues/echo/pause", headers=ADMIN_HEADERS)).json()["paused"] is True
    assert (await api.get("/v1/queues/echo", headers=ADMIN_HEADERS)).json()["paused"] is True
    engine: Engine = api_app.state.services.engine
    assert await engine.claim("echo", 10) == []
    assert (await api.post("/v1/queues/echo/resume", headers=ADMIN_HEADERS)).json()["paused"] is False
    assert len(await engine.claim("echo", 1)) == 1

    page = (await api.get("/v1/queues/echo/jobs", params={"state": "waiting"}, headers=ADMIN_HEADERS)).json()
    assert len(page["jobs"]) == 2
    assert (await api.get("/v1/queues/echo", headers=user)).status_code == 403
    bad = await api.get("/v1/queues/bad%20name", headers=ADMIN_HEADERS)
    assert (bad.status_code, bad.json()["error"]["field"]) == (422, "queue")


async def test_dead_letter_inspect_retry_failed_and_clean(
    api: httpx.AsyncClient, api_app: FastAPI, make_user: MakeUser
) -> None:
    user = await make_user()
    engine: Engine = api_app.state.services.engine
    for _ in range(2):
        await api.post("/v1/jobs", json=ECHO, headers=user)
    claimed = await engine.claim("echo", 10)
    error = JobError(kind=ErrorKind.PERMANENT, message="no")
    await engine.finish(
        [Outcome(job_id=c.job.id, token=c.token, status="failed", error=error) for c in claimed]
    )
    dead = (await api.get("/v1/queues/echo/jobs", params={"state": "failed"}, headers=ADMIN_HEADERS)).json()
    assert len(dead["jobs"]) == 2

    retried = await api.post("/v1/queues/echo/retry-failed", json={"limit": 10}, headers=ADMIN_HEADERS)
    assert retried.json()["count"] == 2
    claimed = await engine.claim("echo", 10)
    await engine.finish(
        [Outcome(job_id=c.job.id, token=c.token, status="completed", result=1) for c in claimed]
    )
    cleaned = await api.post("/v1/queues/echo/clean", json={"state": "completed"}, headers=ADMIN_HEADERS)
    assert (cleaned.status_code, cleaned.json()["count"]) == (200, 2)
    stats = (await api.get("/v1/queues/echo", headers=ADMIN_HEADERS)).json()
    assert stats["counts"]["completed"] == 0
    bad = await api.post("/v1/queues/echo/clean", json={"state": "gone"}, headers=ADMIN_HEADERS)
    assert (bad.status_code, bad.json()["error"]["field"]) == (422, "state")


async def test_cors_answers_the_configured_origin_only(
    api_settings: Settings, api_registry: Registry
) -> None:
    app = create_app(
        api_settings.model_copy(update={"cors_origins": ["https://app.example"]}), registry=api_registry
    )
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
    async with asgi_client(app) as client:
        ok = await client.options("/v1/jobs", headers={"Origin": "https://app.example", **preflight})
        assert ok.headers["access-control-allow-origin"] == "https://app.example"
        other = await client.options("/v1/jobs", headers={"Origin": "https://evil.example", **preflight})
        assert "access-control-allow-origin" not in other.headers
    await app.state.services.redis.close()


async def test_admins_list_any_owners_jobs_and_users_only_their_own(
    api: httpx.AsyncClient, make_user: MakeUser
) -> None:
    alice, bob = await make_user("alice"), await make_user("bob")
    mine = (await api.post("/v1/jobs", json=ECHO, headers=alice)).json()["id"]
    await api.post("/v1/jobs", json=ECHO, headers=bob)
    listed = (await api.get("/v1/jobs", params={"owner": "alice"}, headers=ADMIN_HEADERS)).json()
    assert [job["id"] for job in listed["jobs"]] == [mine]
    own = await api.get("/v1/jobs", params={"owner": "alice"}, headers=alice)
    assert [job["id"] for job in own.json()["jobs"]] == [mine]
    other = await api.get("/v1/jobs", params={"owner": "alice"}, headers=bob)
    assert (other.status_code, other.json()["error"]["field"]) == (403, "owner")
    bad = await api.get("/v1/jobs", params={"owner": "no spaces"}, headers=ADMIN_HEADERS)
    assert (bad.status_code, bad.json()["error"]["field"]) == (422, "owner")


async def test_a_queues_waiting_jobs_list_in_claim_order(
    api: httpx.AsyncClient, api_app: FastAPI, make_user: MakeUser
) -> None:
    """Priority first, FIFO within a level (the order BullMQ's getWaiting gives): what a claim takes next."""
    user = await make_user()
    submitted = []
    for priority in ("low", "normal", "urgent", "normal", 0):
        body = {**ECHO, "priority": priority}
        submitted.append((await api.post("/v1/jobs", json=body, headers=user)).json())
    page = (await api.get("/v1/queues/echo/jobs", params={"state": "waiting"}, headers=ADMIN_HEADERS)).json()
    listed = [job["id"] for job in page["jobs"]]
    by_claim_order = sorted(submitted, key=lambda job: job["priority"])  # sorted() keeps FIFO within a level
    assert listed == [job["id"] for job in by_claim_order]
    assert submitted[2]["priority"] == 0  # "urgent" is the top level
    engine: Engine = api_app.state.services.engine
    assert [c.job.id for c in await engine.claim("echo", 5)] == listed
