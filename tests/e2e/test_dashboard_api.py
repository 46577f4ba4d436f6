"""End to end: the dashboard page and the admin routes it reads (queues, a queue's jobs, the live stream)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from functions.api.routes.dashboard import STATIC
from functions.api.schemas import QUEUE_CURSOR_PATTERN
from shared.engine import _QUEUE_CURSOR
from shared.models import HISTOGRAM_BOUNDS, TERMINAL_STATES, ErrorKind, JobError, Outcome, State
from shared.percentiles import percentile
from tests.support.api_fixtures import ADMIN_HEADERS, MakeUser, ServedApp, engine_of

pytestmark = pytest.mark.realredis

DATA_ROUTES = ["/v1/queues", "/v1/queues/echo", "/v1/queues/echo/jobs", "/v1/events/queues"]


async def submit(
    api: httpx.AsyncClient, headers: dict[str, str], n: int = 1, kind: str = "echo"
) -> list[str]:
    payload = {"message": "hi"} if kind == "echo" else {"url": "https://example.com/"}
    ids = []
    for _ in range(n):
        response = await api.post("/v1/jobs", json={"type": kind, "payload": payload}, headers=headers)
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return ids


# -- the page -------------------------------------------------------------------------------------------


async def test_page_and_assets_need_no_credentials_and_forbid_foreign_code(api: httpx.AsyncClient) -> None:
    page = await api.get("/dashboard")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/dashboard/main.js"></script>' in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert (await api.get("/dashboard/app.css")).headers["content-type"].startswith("text/css")
    # Every module the page imports, followed from main.js, is served as JavaScript.
    pending, seen = ["main.js"], set()
    while pending:
        module = pending.pop()
        seen.add(module)
        response = await api.get(f"/dashboard/{module}")
        assert response.status_code == 200, module
        assert response.headers["content-type"].startswith("text/javascript"), module
        pending += [
            m for m in re.findall(r'^import .* from "\./([\w.]+)";$', response.text, re.M) if m not in seen
        ]
    assert {"api.js", "stream.js", "states.js", "overview.js", "queue.js", "job.js"} <= seen
    for path in [
        "/dashboard/index.py",
        "/dashboard/..%2Fapp.py",
        "/dashboard/%2e%2e%2froutes",
        "/dashboard/app.js",
    ]:
        assert (await api.get(path)).status_code == 404, path


async def test_the_page_learns_the_states_from_the_server(api: httpx.AsyncClient) -> None:
    module = (await api.get("/dashboard/states.js")).text
    states = json.loads(re.search(r"^export const STATES = (.*);$", module, re.M).group(1))  # type: ignore[union-attr]
    terminal = json.loads(re.search(r"^export const TERMINAL = new Set\((.*)\);$", module, re.M).group(1))  # type: ignore[union-attr]
    assert states == [state.value for state in State]
    assert set(terminal) == {state.value for state in TERMINAL_STATES}


def test_no_module_keeps_its_own_list_of_states() -> None:
    for module in STATIC.glob("*.js"):
        assert '"waiting", "delayed"' not in module.read_text(), module.name


async def test_data_routes_need_admin_credentials(api: httpx.AsyncClient, make_user: MakeUser) -> None:
    user = await make_user("carol")
    for path in DATA_ROUTES:
        assert (await api.get(path)).status_code == 401, path
        assert (await api.get(path, headers={"Authorization": "Bearer nope"})).status_code == 401, path
        forbidden = await api.get(path, headers=user)
        assert forbidden.status_code == 403, path
        assert forbidden.json()["error"]["code"] == "forbidden"


# -- percentiles ----------------------------------------------------------------------------------------


def test_percentiles_interpolate_within_buckets() -> None:
    bounds = list(HISTOGRAM_BOUNDS)  # 0.05, 0.1, 0.25, 0.5, 1.0, ...
    buckets = [0] * (len(bounds) + 1)
    buckets[1] = 10  # ten runs in (0.05, 0.1]
    buckets[4] = 10  # ten runs in (0.5, 1.0]
    # rank 10 of 20 is the last of bucket 1: its upper bound
    assert percentile(bounds, buckets, 0.5) == pytest.approx(0.1)
    # rank 19 is the 9th of 10 in (0.5, 1.0]: 0.5 + 0.5 * 9/10
    assert percentile(bounds, buckets, 0.95) == pytest.approx(0.95)
    # rank 5 is halfway through bucket 1
    assert percentile(bounds, buckets, 0.25) == pytest.approx(0.075)
    first = [4] + [0] * len(bounds)  # the first bucket starts at zero
    assert percentile(bounds, first, 0.5) == pytest.approx(0.025)
    overflow = [0] * len(bounds) + [3]  # above the largest bound: the bound is all we know
    assert percentile(bounds, overflow, 0.5) == bounds[-1]
    assert percentile(bounds, [0] * (len(bounds) + 1), 0.5) is None
    with pytest.raises(ValueError, match="one bucket per bound"):
        percentile(bounds, [1], 0.5)
    with pytest.raises(ValueError, match="q must be"):
        percentile(bounds, buckets, 0)


# -- overview -------------------------------------------------------------------------------------------


async def test_overview_counts_equal_the_engine_and_times_come_from_its_histograms(
    api: httpx.AsyncClient, api_app: FastAPI
) -> None:
    engine = engine_of(api_app)
    await submit(api, ADMIN_HEADERS, 4)
    await submit(api, ADMIN_HEADERS, 1, kind="fetch")  # queue "outbound"
    claimed = await engine.claim("echo", 2)
    done, failed = claimed
    await engine.finish(
        [
            Outcome(job_id=done.job.id, token=done.token, status="completed", result="ok"),
            Outcome(
                job_id=failed.job.id,
                token=failed.token,
                status="failed",
                error=JobError(kind=ErrorKind.PERMANENT, message="no"),
            ),
        ]
    )
    await engine.pause("outbound")

    response = await api.get("/v1/queues", headers=ADMIN_HEADERS)
    assert response.status_code == 200
    body = response.json()
    by_name = {q["queue"]: q for q in body["queues"]}
    for name, queue in by_name.items():  # one queue reads as it does in the list
        one = await api.get(f"/v1/queues/{name}", headers=ADMIN_HEADERS)
        assert one.status_code == 200
        assert {k: v for k, v in one.json().items() if k != "oldest_waiting_age"} == {
            k: v for k, v in queue.items() if k != "oldest_waiting_age"
        }
        assert list(queue["counts"]) == [state.value for state in State]
    assert sorted(by_name) == ["echo", "outbound"]
    metrics = {m.queue: m for m in await engine.metrics()}
    for name, queue in by_name.items():
        stats = await engine.stats(name)
        assert queue["counts"] == {state.value: n for state, n in stats.counts.items()}
        assert queue["paused"] is stats.paused
        m = metrics[name]
        assert queue["run_p50_seconds"] == percentile(m.bounds, m.run_buckets, 0.5)
        assert queue["run_p95_seconds"] == percentile(m.bounds, m.run_buckets, 0.95)
        assert queue["wait_p95_seconds"] == percentile(m.bounds, m.wait_buckets, 0.95)
        assert len(queue["throughput"]) == 60
    echo = by_name["echo"]
    assert (
        echo["counts"]["waiting"] == 2 and echo["counts"]["completed"] == 1 and echo["counts"]["failed"] == 1
    )
    assert echo["run_p50_seconds"] is not None and echo["wait_p50_seconds"] is not None
    assert sum(p["completed"] for p in echo["throughput"]) == 1
    assert sum(p["failed"] for p in echo["throughput"]) == 1
    assert by_name["outbound"]["paused"] is True and by_name["outbound"]["run_p50_seconds"] is None
    totals = body["totals"]
    assert totals["counts"]["waiting"] == 3
    assert totals["completed_total"] == 1 and totals["failed_total"] == 1
    assert sum(p["completed"] + p["failed"] for p in totals["throughput"]) == 2


# -- a queue's jobs -------------------------------------------------------------------------------------


async def test_queue_jobs_filter_by_state_type_and_owner_in_claim_order(
    api: httpx.AsyncClient, make_user: MakeUser
) -> None:
    alice, bob = await make_user("alice"), await make_user("bob")
    alice_ids = await submit(api, alice, 3)
    bob_ids = await submit(api, bob, 2)

    async def page(**params: Any) -> dict[str, Any]:
        query = {"view": "summary"} | params
        response = await api.get("/v1/queues/echo/jobs", params=query, headers=ADMIN_HEADERS)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    everyone = await page(state="waiting")
    assert [j["id"] for j in everyone["jobs"]] == sorted(alice_ids + bob_ids)  # waiting: next to run first
    assert "payload" not in everyone["jobs"][0]  # rows are summaries: the detail view loads payloads
    assert (await page(state="waiting", view="full"))["jobs"][0]["payload"]["message"] == "hi"
    assert [j["id"] for j in (await page(state="waiting", owner="alice"))["jobs"]] == alice_ids
    assert (await page(state="waiting", type="fetch"))["jobs"] == []
    assert (await page(state="completed"))["jobs"] == []

    seen: list[str] = []
    cursor = None
    while True:
        params = {"state": "waiting", "owner": "bob", "limit": 1} | ({"cursor": cursor} if cursor else {})
        result = await page(**params)
        seen += [j["id"] for j in result["jobs"]]
        cursor = result["cursor"]
        if cursor is None:
            break
    assert seen == bob_ids
    for cursor in ["<script>", "8.1", "1.", "1.1234567890"]:
        path = "/v1/queues/echo/jobs"
        bad = await api.get(path, params={"cursor": cursor}, headers=ADMIN_HEADERS)
        assert bad.status_code == 422, cursor
    assert _QUEUE_CURSOR.pattern == QUEUE_CURSOR_PATTERN  # the schema allows exactly the engine's cursors


# -- live stream ----------------------------------------------------------------------------------------


async def read_events(response: httpx.Response) -> AsyncIterator[tuple[str, str | None, Any]]:
    """(event, id, data) of each server-sent event until the server ends the stream."""
    event, event_id, data = "message", None, ""
    async for line in response.aiter_lines():
        if line == "":
            if data:
                yield event, event_id, json.loads(data)
            event, event_id, data = "message", None, ""
        elif line.startswith("event: "):
            event = line[7:]
        elif line.startswith("id: "):
            event_id = line[4:]
        elif line.startswith("data: "):
            data = line[6:]


async def collect(
    client: httpx.AsyncClient, headers: dict[str, str], until: set[str] | None = None
) -> tuple[list[Any], str]:
    """Job events of one bounded stream (until the `until` job ids are seen, or it ends) and its last id."""
    found: list[Any] = []
    last_id = ""
    async with client.stream("GET", "/v1/events/queues", headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for event, event_id, data in read_events(response):
            last_id = event_id or last_id
            if event == "jobs":
                found += data["events"]
            if until and until <= {e["job_id"] for e in found}:
                break
    return found, last_id


async def test_stream_sends_state_changes_live_and_resumes_after_last_event_id(api_server: ServedApp) -> None:
    async with httpx.AsyncClient(base_url=api_server.url, timeout=30) as client:
        before = await submit(client, ADMIN_HEADERS)  # the queue exists before the stream starts
        async with client.stream("GET", "/v1/events/queues", headers=ADMIN_HEADERS) as response:
            events = read_events(response)
            event, hello_id, data = await anext(events)
            assert event == "hello" and data == {"queues": ["echo"]} and hello_id
            [live] = await submit(client, ADMIN_HEADERS)
            event, last_id, data = await anext(events)
        assert event == "jobs"
        assert [(e["queue"], e["job_id"], e["state"]) for e in data["events"]] == [("echo", live, "waiting")]
        assert before[0] not in {e["job_id"] for e in data["events"]}  # from the stream's start, not history

        [later] = await submit(client, ADMIN_HEADERS)  # while no stream is open
        assert last_id is not None
        resumed, _ = await collect(client, ADMIN_HEADERS | {"Last-Event-ID": last_id}, until={later})
        assert [e["job_id"] for e in resumed] == [later]

        # A malformed id starts afresh from now: nothing old is replayed.
        fresh, _ = await collect(client, ADMIN_HEADERS | {"Last-Event-ID": "garbage~x=1"})
        assert fresh == []
