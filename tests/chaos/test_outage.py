"""Restart Redis and the gateway in the middle of a run.

Jobs accepted before the outage survive it (the private server keeps an fsync-always AOF, as a managed
Redis does) and all complete afterwards; every submit during the outage gets a 503 with nothing
half-written; the API recovers without a restart of its own.
"""

from __future__ import annotations

import pytest
from pydantic import BaseModel, SecretStr

from functions.api.app import create_app
from functions.consumer.runtime import build_runtime
from shared.context import JobContext
from shared.keys import Keys
from shared.models import State
from shared.registry import Registry
from tests.chaos.conftest import chaos_settings
from tests.chaos.stack import GatewayProcess, PrivateRedis
from tests.support.api_fixtures import ADMIN_HEADERS, ADMIN_TOKEN, asgi_client

pytestmark = [pytest.mark.chaos, pytest.mark.realredis]

BEFORE = 40


class Note(BaseModel):
    message: str


def registry() -> Registry:
    reg = Registry()

    @reg.job_type("note", payload=Note, timeout=10)
    async def note(payload: Note, ctx: JobContext) -> str:
        return payload.message

    return reg


def job_keys(server: PrivateRedis, prefix: str) -> set[str]:
    """Every job record under the prefix: the record fields (named by a bare id) of each queue's jobs hash."""
    client = server.client()
    try:
        hashes = client.keys(Keys(prefix).queue("*").jobs())
        return {f"{key}/{field}" for key in hashes for field in client.hkeys(key) if ":" not in str(field)}
    finally:
        client.close()


async def test_outage_gives_503_writes_nothing_and_loses_no_accepted_job(
    private_redis: PrivateRedis, private_gateway: GatewayProcess, chaos_prefix: str
) -> None:
    settings = chaos_settings(private_gateway, chaos_prefix, admin_token=SecretStr(ADMIN_TOKEN))
    app = create_app(settings, registry=registry())
    async with asgi_client(app) as api:
        created = await api.post("/v1/keys", json={"owner": "ops"}, headers=ADMIN_HEADERS)
        user = {"Authorization": f"Bearer {created.json()['key']}"}
        accepted = []
        for i in range(BEFORE):
            response = await api.post(
                "/v1/jobs", json={"type": "note", "payload": {"message": str(i)}}, headers=user
            )
            assert response.status_code == 201, response.text
            accepted.append(response.json()["id"])
        stored = job_keys(private_redis, chaos_prefix)
        assert len(stored) == BEFORE

        private_redis.stop()  # Redis down, gateway up
        refused = await api.post("/v1/jobs", json={"type": "note", "payload": {"message": "x"}}, headers=user)
        assert refused.status_code == 503, refused.text
        private_gateway.stop()  # both down
        batch = {"jobs": [{"type": "note", "payload": {"message": "y"}}] * 5}
        refused = await api.post("/v1/jobs/batch", json=batch, headers=user)
        assert refused.status_code == 503, refused.text
        assert "error" in refused.json()

        private_redis.start()
        private_gateway.start()
        assert job_keys(private_redis, chaos_prefix) == stored  # nothing half-written, nothing lost
        after = await api.post("/v1/jobs", json={"type": "note", "payload": {"message": "z"}}, headers=user)
        assert after.status_code == 201, after.text
        accepted.append(after.json()["id"])
    await app.state.services.redis.close()

    runtime = build_runtime(settings, registry=registry())
    try:
        report = await runtime.consumer.drain(budget=60)
        assert report.completed == len(accepted), report
        for job_id in accepted:
            assert (await runtime.engine.get(job_id)).state == State.COMPLETED
    finally:
        await runtime.redis.close()
