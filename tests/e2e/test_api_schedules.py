"""End to end over HTTP (ASGI) against the gateway on real Redis: the schedule routes, and consumers (with
an injected clock) firing what the API created."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from shared.engine import Engine
from shared.models import JobSpec
from shared.schedules import ScheduleSpec
from shared.settings import Settings
from tests.support.api_fixtures import MakeUser
from tests.support.engine_fixtures import FakeClock

pytestmark = pytest.mark.realredis

NIGHTLY = {
    "cron": "0 3 * * *",
    "timezone": "Europe/Berlin",
    "job": {"type": "echo", "payload": {"message": "hi"}},
}


async def create(api: httpx.AsyncClient, headers: dict[str, str], **body: Any) -> httpx.Response:
    return await api.post("/v1/schedules", json={**NIGHTLY, **body}, headers=headers)


def error_of(response: httpx.Response) -> dict[str, Any]:
    detail: dict[str, Any] = response.json()["error"]
    assert set(detail) <= {"code", "message", "field", "request_id"}
    return detail


async def test_create_read_list_change_delete(api: httpx.AsyncClient, make_user: MakeUser) -> None:
    alice = await make_user("alice")
    created = await create(api, alice, job={"type": "echo", "payload": {"message": "hi"}, "priority": "high"})
    assert created.status_code == 201, created.text
    schedule = created.json()
    assert created.headers["location"] == f"/v1/schedules/{schedule['id']}"
    assert (schedule["owner"], schedule["queue"], schedule["type"], schedule["priority"]) == (
        "alice",
        "echo",
        "echo",
        3,
    )
    assert (schedule["cron"], schedule["timezone"], schedule["catch_up"], schedule["fired"]) == (
        "0 3 * * *",
        "Europe/Berlin",
        "once",
        0,
    )
    assert schedule["type_registered"] is True and schedule["next_run_at"] is not None

    read = await api.get(f"/v1/schedules/{schedule['id']}", headers=alice)
    assert read.status_code == 200 and read.json() == schedule
    listed = await api.get("/v1/schedules", headers=alice)
    assert [s["id"] for s in listed.json()["schedules"]] == [schedule["id"]]

    changed = await api.patch(
        f"/v1/schedules/{schedule['id']}", json={"cron": None, "every_seconds": 30}, headers=alice
    )
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert body["cron"] is None and body["every_seconds"] == 30
    assert body["next_run_at"] < schedule["next_run_at"]  # in 30 s, not at tomorrow's 03:00

    deleted = await api.delete(f"/v1/schedules/{schedule['id']}", headers=alice)
    assert deleted.status_code == 204
    gone = await api.get(f"/v1/schedules/{schedule['id']}", headers=alice)
    assert gone.status_code == 404 and error_of(gone)["code"] == "not_found"
    assert (await api.get("/v1/schedules", headers=alice)).json() == {"schedules": []}


async def test_owners_are_kept_apart_and_admins_see_all(
    api: httpx.AsyncClient, make_user: MakeUser, admin_headers: dict[str, str]
) -> None:
    alice, bob = await make_user("alice"), await make_user("bob")
    theirs = (await create(api, alice)).json()
    path = f"/v1/schedules/{theirs['id']}"
    assert (await api.get(path, headers=bob)).status_code == 404
    assert (await api.patch(path, json={"limit": 1}, headers=bob)).status_code == 404
    assert (await api.delete(path, headers=bob)).status_code == 404
    assert (await api.get("/v1/schedules", headers=bob)).json() == {"schedules": []}
    refused = await api.get("/v1/schedules", params={"owner": "alice"}, headers=bob)
    assert refused.status_code == 403 and error_of(refused)["field"] == "owner"
    assert (await api.get(path, headers=alice)).json()["fired"] == 0  # unchanged by bob

    # Admins manage any owner's schedules.
    assert (await api.get(path, headers=admin_headers)).status_code == 200
    listed = await api.get("/v1/schedules", params={"owner": "alice"}, headers=admin_headers)
    assert [s["id"] for s in listed.json()["schedules"]] == [theirs["id"]]
    made = await create(api, admin_headers, owner="bob")
    assert made.status_code == 201 and made.json()["owner"] == "bob"
    assert [s["id"] for s in (await api.get("/v1/schedules", headers=bob)).json()["schedules"]] == [
        made.json()["id"]
    ]
    changed = await api.patch(
        f"/v1/schedules/{made.json()['id']}",
        json={"job": {"type": "echo", "payload": {"message": "new"}}},
        headers=admin_headers,
    )
    assert changed.status_code == 200 and changed.json()["owner"] == "bob"
    assert changed.json()["payload"] == {"message": "new", "repeat": 1}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"cron": "61 * * * *"}, "cron"),
        ({"cron": "* * *"}, "cron"),
        ({"cron": "x" * 500}, "cron"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"timezone": "../../../etc/passwd"}, "timezone"),
        ({"cron": None, "every_seconds": 0}, "every_seconds"),
        ({"cron": None, "every_seconds": 10**9}, "every_seconds"),
        ({"cron": None, "every_seconds": "60"}, "every_seconds"),
        ({"every_seconds": 60}, "cron"),  # both
        ({"cron": None}, "cron"),  # neither
        ({"start_at": "2027-01-02T00:00:00Z", "end_at": "2027-01-01T00:00:00Z"}, "end_at"),
        ({"limit": 0}, "limit"),
        ({"catch_up": "sometimes"}, "catch_up"),
        ({"job": {"type": "echo", "payload": {"message": 5}}}, "job.payload.message"),
        ({"job": {"type": "nope", "payload": {}}}, "job.type"),
        (
            {"job": {"type": "echo", "payload": {"message": "x"}, "run_at": "2027-01-01T00:00:00Z"}},
            "job.run_at",
        ),
        (
            {"job": {"type": "echo", "payload": {"message": "x"}, "idempotency_key": "k"}},
            "job.idempotency_key",
        ),
        (
            {"job": {"type": "echo", "payload": {"message": "x"}, "timeout_seconds": 10**5}},
            "job.timeout_seconds",
        ),
        ({"surprise": 1}, "surprise"),
    ],
)
async def test_bad_input_is_a_422_naming_the_field(
    api: httpx.AsyncClient, make_user: MakeUser, body: dict[str, Any], field: str
) -> None:
    alice = await make_user("alice")
    response = await create(api, alice, **body)
    assert response.status_code == 422, response.text
    assert error_of(response)["field"] == field
    assert (await api.get("/v1/schedules", headers=alice)).json() == {"schedules": []}  # nothing half-written


async def test_a_bad_change_is_refused_and_changes_nothing(
    api: httpx.AsyncClient, make_user: MakeUser
) -> None:
    alice = await make_user("alice")
    schedule = (await create(api, alice)).json()
    path = f"/v1/schedules/{schedule['id']}"
    for body, field in (
        ({"timezone": "Nowhere/Else"}, "timezone"),
        ({"every_seconds": 60}, "cron"),
        ({"end_at": "2000-01-01T00:00:00Z", "start_at": "2001-01-01T00:00:00Z"}, "end_at"),
        ({"job": {"type": "fetch", "payload": {"url": "https://example.com"}}}, "job.type"),  # another queue
    ):
        response = await api.patch(path, json=body, headers=alice)
        assert response.status_code == 422, response.text
        assert error_of(response)["field"] == field
    assert (await api.get(path, headers=alice)).json() == schedule


@pytest.mark.parametrize("schedule_id", ["nope", "0" * 26 + ".echo", "../x", "A" * 300])
async def test_hostile_ids_are_404(api: httpx.AsyncClient, make_user: MakeUser, schedule_id: str) -> None:
    alice = await make_user("alice")
    for method in ("GET", "DELETE"):
        response = await api.request(method, f"/v1/schedules/{schedule_id}", headers=alice)
        assert response.status_code == 404, response.text


async def test_a_slot_created_over_http_fires_once_with_three_consumers(
    api: httpx.AsyncClient, make_user: MakeUser, rest: Any, api_settings: Settings
) -> None:
    alice = await make_user("alice")
    schedule = (await create(api, alice, cron=None, every_seconds=60)).json()
    clock = FakeClock(time.time() + 61)  # past the first slot
    consumers = [Engine(rest, prefix=api_settings.key_prefix, clock=clock) for _ in range(3)]
    took = await asyncio.gather(*(c.claim("echo", 10) for c in consumers))
    claimed = [c for part in took for c in part]
    assert len(claimed) == 1
    job = (await api.get(f"/v1/jobs/{claimed[0].job.id}", headers=alice)).json()
    assert job["owner"] == "alice" and job["payload"] == {"message": "hi", "repeat": 1}
    assert job["idempotency_key"].startswith(f"schedule:{schedule['id']}:")
    read = (await api.get(f"/v1/schedules/{schedule['id']}", headers=alice)).json()
    assert read["fired"] == 1 and read["last_run_at"] is not None


async def test_a_schedule_whose_type_is_gone_says_so(
    api: httpx.AsyncClient, api_app: FastAPI, make_user: MakeUser
) -> None:
    alice = await make_user("alice")
    engine: Engine = api_app.state.services.engine
    job = JobSpec(type="retired", payload={"x": 1}, owner="alice")
    schedule = await engine.scheduler.create(ScheduleSpec(job=job, every_seconds=3600))
    read = await api.get(f"/v1/schedules/{schedule.id}", headers=alice)
    assert read.status_code == 200, read.text
    assert (read.json()["type"], read.json()["type_registered"], read.json()["payload"]) == (
        "retired",
        False,
        {"x": 1},
    )
