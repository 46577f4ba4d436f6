"""Singleton and debounce keys through the API on real Redis (the gateway), under concurrent submits."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError

from shared.engine import Engine
from shared.errors import SingletonConflictError
from shared.keys import BLOCK
from shared.models import ClaimedJob, Debounce, ErrorKind, JobError, JobSpec, Outcome, State
from tests.support.api_fixtures import MakeUser, engine_of, submit
from tests.support.consumer_fixtures import poll
from tests.support.engine_fixtures import EngineFactory, FakeClock

pytestmark = pytest.mark.realredis

BURST = 20


async def held(engine: Engine, queue: str) -> int:
    """Singleton and debounce keys held in the queue (its dedup hash, in the queue's block)."""
    return int(await engine.store.command("HLEN", engine.keys.queue(queue).block()[BLOCK.index("dedup")]))


# Singleton.


async def test_concurrent_singleton_submits_make_one_job(api: httpx.AsyncClient, make_user: MakeUser) -> None:
    alice, bob = await make_user("alice"), await make_user("bob")
    burst = await asyncio.gather(*(submit(api, alice, singleton_key="deploy") for _ in range(BURST)))
    statuses = Counter(r.status_code for r in burst)
    assert statuses == {201: 1, 409: BURST - 1}, statuses
    [created] = [r.json()["id"] for r in burst if r.status_code == 201]
    for refused in (r for r in burst if r.status_code == 409):
        error = refused.json()["error"]
        assert (error["code"], error["field"], error["job_id"]) == (
            "singleton_conflict",
            "singleton_key",
            created,
        )
        assert created in error["message"] and refused.headers["location"] == f"/v1/jobs/{created}"
    # Per owner: another owner's key of the same text is another key; another key of alice's is free.
    assert (await submit(api, bob, singleton_key="deploy")).status_code == 201
    assert (await submit(api, alice, singleton_key="other")).status_code == 201
    job = (await api.get(f"/v1/jobs/{created}", headers=alice)).json()
    assert job["singleton_key"] == "deploy"


async def finish(engine: Engine, claimed: ClaimedJob, status: str, **fields: Any) -> None:
    outcome = Outcome(job_id=claimed.job.id, token=claimed.token, status=status, **fields)
    [result] = await engine.finish([outcome])
    assert result.ok


PERMANENT = JobError(kind=ErrorKind.PERMANENT, message="no")
RETRYABLE = JobError(kind=ErrorKind.RETRYABLE, message="again")


async def test_a_singleton_key_is_held_while_waiting_or_running_and_released_on_every_exit(
    api: httpx.AsyncClient, api_app: FastAPI, make_user: MakeUser
) -> None:
    alice = await make_user("alice")
    engine = engine_of(api_app)

    async def take(lease: float | None = None, **body: Any) -> ClaimedJob:
        response = await submit(api, alice, singleton_key="k", **body)
        assert response.status_code == 201, response.text
        assert (await submit(api, alice, singleton_key="k")).status_code == 409  # held while waiting
        [claimed] = await engine.claim("echo", 1, lease=lease)
        assert (await submit(api, alice, singleton_key="k")).status_code == 409  # and while running
        return claimed

    async def free() -> None:
        assert await held(engine, "echo") == 0

    await finish(engine, await take(), "completed")
    await free()
    await finish(engine, await take(), "failed", error=PERMANENT)
    await free()
    # A retry waiting out its backoff, and a sleep, still hold the key.
    claimed = await take(max_attempts=3)
    await finish(engine, claimed, "failed", error=RETRYABLE)
    assert (await submit(api, alice, singleton_key="k")).status_code == 409
    assert (await engine.get(claimed.job.id)).state == State.DELAYED
    await engine.cancel(claimed.job.id)  # cancelled while delayed
    await free()
    claimed = await take()
    await finish(engine, claimed, "sleep", retry_after=3600.0, step="nap")
    assert (await submit(api, alice, singleton_key="k")).status_code == 409
    await engine.cancel(claimed.job.id)
    await free()
    # Cancelled while running: the consumer's next outcome ends it.
    claimed = await take()
    assert (await api.delete(f"/v1/jobs/{claimed.job.id}", headers=alice)).status_code == 202
    await finish(engine, claimed, "completed")
    assert (await engine.get(claimed.job.id)).state == State.CANCELLED
    await free()
    # A lease that runs out on the job's last attempt fails it: the claim that reaps it releases the key.
    claimed = await take(max_attempts=1, lease=0.05)

    async def reaped() -> bool:
        await engine.claim("echo", 1)
        return (await engine.get(claimed.job.id)).state == State.FAILED

    await poll(reaped, within=10)
    await free()
    assert (await submit(api, alice, singleton_key="k")).status_code == 201


async def test_a_singleton_batch_is_all_or_nothing(engine: Engine) -> None:
    spec = JobSpec(type="t", queue="single", singleton_key="k")
    with pytest.raises(SingletonConflictError) as refused:
        await engine.enqueue([spec, JobSpec(type="t", queue="single"), spec])
    assert refused.value.field == "jobs[2].singleton_key"
    assert (await engine.stats("single")).counts[State.WAITING] == 0
    [first] = (await engine.enqueue([spec])).results
    with pytest.raises(SingletonConflictError) as again:
        await engine.enqueue([spec])
    assert again.value.job_id == first.job.id


# Debounce.


async def test_a_concurrent_debounce_burst_makes_one_run(
    api: httpx.AsyncClient, api_app: FastAPI, make_user: MakeUser
) -> None:
    alice, bob = await make_user("alice"), await make_user("bob")
    debounce = {"key": "reindex", "seconds": 1.0}
    burst = await asyncio.gather(
        *(submit(api, alice, payload={"message": f"m{i}"}, debounce=debounce) for i in range(BURST))
    )
    assert Counter(r.status_code for r in burst) == {201: 1, 200: BURST - 1}
    ids = {r.json()["id"] for r in burst}
    assert len(ids) == 1
    [job_id] = ids
    job = (await api.get(f"/v1/jobs/{job_id}", headers=alice)).json()
    assert job["state"] == "delayed" and job["debounce_key"] == "reindex"
    assert job["payload"] in [{"message": f"m{i}", "repeat": 1} for i in range(BURST)]
    assert job["run_at"] == max(r.json()["run_at"] for r in burst)  # the window never moves back
    listed = (await api.get("/v1/jobs", headers=alice)).json()["jobs"]
    assert [j["id"] for j in listed] == [job_id]
    # A joining submit's tags list the job it joined.
    tagged = await submit(api, alice, payload={"message": "tagged"}, debounce=debounce, tags=["late"])
    assert tagged.json()["id"] == job_id
    assert [j["id"] for j in (await api.get("/v1/jobs?tag=late", headers=alice)).json()["jobs"]] == [job_id]
    # Another owner's key of the same text is another key.
    assert (await submit(api, bob, debounce=debounce)).json()["id"] != job_id

    # Once the window passes without a submit the job is due; a new submit starts a new window.
    async def due() -> bool:
        state: str = (await api.get(f"/v1/jobs/{job_id}", headers=alice)).json()["state"]
        return state == "waiting"

    await poll(due, within=10)
    later = await submit(api, alice, payload={"message": "later"}, debounce=debounce)
    assert later.status_code == 201 and later.json()["id"] != job_id


async def test_debounce_keeps_the_last_payload_and_a_longest_wait(
    engine_factory: EngineFactory, fake_clock: FakeClock
) -> None:
    engine = engine_factory(clock=fake_clock)
    start = fake_clock()

    def spec(message: str) -> JobSpec:
        window = Debounce(key="k", seconds=10, max_wait_seconds=15)
        return JobSpec(type="t", queue="deb", payload={"m": message}, debounce=window)

    [first] = (await engine.enqueue([spec("one")])).results
    fake_clock.advance(8)
    [second] = (await engine.enqueue([spec("two")])).results
    assert (second.created, second.debounced, second.job.id) == (False, True, first.job.id)
    job = await engine.get(first.job.id)
    assert job.payload == {"m": "two"} and job.state == State.DELAYED
    assert job.run_at is not None and job.run_at.timestamp() == pytest.approx(start + 15, abs=0.01)  # capped
    fake_clock.advance(7.5)  # past the longest wait: the job is due, a submit starts another
    [third] = (await engine.enqueue([spec("three")])).results
    assert third.created and third.job.id != first.job.id
    [claimed] = await engine.claim("deb", 10)
    assert claimed.job.id == first.job.id and claimed.job.payload == {"m": "two"}
    assert await held(engine, "deb") == 1  # the claim released the first key; the third job holds its own
    await engine.cancel(third.job.id)
    assert await held(engine, "deb") == 0


async def test_debounce_and_singleton_refuse_what_they_cannot_mean(
    api: httpx.AsyncClient, make_user: MakeUser, engine: Engine
) -> None:
    alice = await make_user("alice")
    window = {"key": "k", "seconds": 1.0}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"debounce": window, "singleton_key": "k"}, "debounce"),
        ({"debounce": window, "delay_seconds": 5.0}, "debounce"),
        ({"debounce": window, "idempotency_key": "i"}, "debounce"),
        ({"debounce": {"key": "k", "seconds": 0}}, "debounce.seconds"),
        ({"debounce": {"key": "k", "seconds": 5.0, "max_wait_seconds": 1.0}}, "debounce"),
        ({"debounce": {"key": "", "seconds": 5.0}}, "debounce.key"),
        ({"singleton_key": "x" * 256}, "singleton_key"),
    ]
    for body, field in cases:
        response = await submit(api, alice, **body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["error"]["field"] == field, (body, response.json())
    batch = {"jobs": [{"type": "echo", "payload": {"message": "a"}, "debounce": window}] * 2}
    response = await api.post("/v1/jobs/batch", json=batch, headers=alice)
    assert response.status_code == 422 and response.json()["error"]["field"] == "jobs[1].debounce.key"
    with pytest.raises(ValidationError):
        JobSpec(type="t", debounce=Debounce(key="k", seconds=1), run_at=None, delay=1.0)
