"""Flows through the HTTP API and the real consumer, on every gateway backend (real Redis, embedded,
and a Redis Cluster when JOBQ_TEST_REDIS_CLUSTER_URL is set).

The orchestrator fan-out: an orchestrator parent with flight-search, proposal-analysis and communication
children. The consumer runs children first; the parent's handler reads their results with
`ctx.children()`. On a cluster a flow holds one queue's jobs, so every type there shares one queue.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from functions.consumer.runtime import ConsumerRuntime
from shared.context import JobContext
from shared.errors import PermanentJobError
from shared.limits import MAX_FLOW_DEPTH, MAX_FLOW_NODES
from shared.registry import Registry
from shared.settings import Settings
from tests.support.api_fixtures import MakeUser
from tests.support.consumer_fixtures import MakeRuntime

AGENTS = ("flight-search", "proposal-analysis", "communication")


class Task(BaseModel):
    topic: str = "trip"
    fail: bool = False


def job(type_: str, **fields: Any) -> dict[str, Any]:
    return {"type": type_, "payload": {}, **fields}


def flow_registry(one_queue: bool) -> Registry:
    registry = Registry()

    async def agent(payload: Task, ctx: JobContext) -> dict[str, str]:
        if payload.fail:
            raise PermanentJobError(f"{ctx.job.type} gave up")
        return {"agent": ctx.job.type, "topic": payload.topic}

    async def orchestrator(payload: Task, ctx: JobContext) -> dict[str, Any]:
        children = await ctx.children()
        return {c.type: c.result if c.state == "completed" else c.state.value for c in children}

    registry.job_type("orchestrator", payload=Task, queue="agents", timeout=10)(orchestrator)
    for name in AGENTS:
        queue = "agents" if one_queue else name
        registry.job_type(name, payload=Task, queue=queue, max_attempts=1, timeout=10)(agent)
    return registry


@pytest.fixture
def api_registry(gateway: Any) -> Registry:
    return flow_registry(gateway.backend == "cluster")


@pytest.fixture
def consumer_registry(api_registry: Registry) -> Registry:
    return api_registry


@pytest.fixture
def consumer_settings(api_settings: Settings) -> Settings:
    return api_settings  # the consumer works on the API's keys


def fan_out(**flight: Any) -> dict[str, Any]:
    children = [{"type": name, "payload": {"topic": "lisbon"}} for name in AGENTS]
    children[0] = {**children[0], **flight}
    return {"type": "orchestrator", "payload": {"topic": "lisbon"}, "children": children}


async def drain(runtime: ConsumerRuntime) -> None:
    """Run the consumer until nothing is due (children first, then the parents they release)."""
    await runtime.consumer.drain(20)


async def test_orchestrator_fans_out_and_reads_its_childrens_results(
    api: httpx.AsyncClient, make_user: MakeUser, make_runtime: MakeRuntime, admin_headers: dict[str, str]
) -> None:
    alice = await make_user("alice")
    created = await api.post("/v1/flows", json=fan_out(), headers=alice)
    assert created.status_code == 201, created.text
    tree = created.json()
    parent = tree["job"]
    assert parent["state"] == "waiting-children" and parent["pending_children"] == 3
    assert [c["job"]["type"] for c in tree["children"]] == list(AGENTS)
    assert all(c["job"]["parents"] == [{"id": parent["id"], "policy": "fail"}] for c in tree["children"])
    stats = (await api.get(f"/v1/queues/{parent['queue']}", headers=admin_headers)).json()
    assert stats["counts"]["waiting-children"] == 1, stats

    await drain(make_runtime())
    done = (await api.get(f"/v1/jobs/{parent['id']}", headers=alice)).json()
    assert done["state"] == "completed", done
    assert done["result"] == {name: {"agent": name, "topic": "lisbon"} for name in AGENTS}
    assert done["children"] == [c["job"]["id"] for c in tree["children"]]
    read = (await api.get(f"/v1/flows/{parent['id']}", headers=alice)).json()
    assert [c["job"]["state"] for c in read["children"]] == ["completed"] * 3


@pytest.mark.parametrize(
    ("policy", "parent_state", "seen"),
    [
        ("fail", "failed", None),
        ("ignore", "completed", {"proposal-analysis", "communication"}),
        ("continue", "completed", set(AGENTS)),
    ],
)
async def test_each_failure_policy(
    api: httpx.AsyncClient,
    make_user: MakeUser,
    make_runtime: MakeRuntime,
    policy: str,
    parent_state: str,
    seen: set[str] | None,
) -> None:
    alice = await make_user("alice")
    flow = fan_out(payload={"fail": True}, on_failure=policy)
    tree = (await api.post("/v1/flows", json=flow, headers=alice)).json()
    await drain(make_runtime())
    parent = (await api.get(f"/v1/jobs/{tree['job']['id']}", headers=alice)).json()
    assert parent["state"] == parent_state, parent
    if seen is None:
        assert parent["error"]["kind"] == "child_failed"
        assert tree["children"][0]["job"]["id"] in parent["error"]["message"]
        return
    assert set(parent["result"]) == seen
    if policy == "continue":
        assert parent["result"]["flight-search"] == "failed"


async def test_retrying_the_failed_child_revives_and_completes_the_flow(
    api: httpx.AsyncClient, make_user: MakeUser, make_runtime: MakeRuntime
) -> None:
    alice = await make_user("alice")
    tree = (await api.post("/v1/flows", json=fan_out(payload={"fail": True}), headers=alice)).json()
    parent_id, flight_id = tree["job"]["id"], tree["children"][0]["job"]["id"]
    runtime = make_runtime()
    await drain(runtime)
    assert (await api.get(f"/v1/jobs/{parent_id}", headers=alice)).json()["state"] == "failed"
    retried = await api.post(f"/v1/jobs/{flight_id}/retry", headers=alice)
    assert retried.status_code == 200 and retried.json()["state"] == "waiting", retried.text
    parent = (await api.get(f"/v1/jobs/{parent_id}", headers=alice)).json()
    assert parent["state"] == "waiting-children" and parent["pending_children"] == 1
    # The retried child fails again (its payload says so): the parent fails again, never runs.
    await drain(runtime)
    assert (await api.get(f"/v1/jobs/{parent_id}", headers=alice)).json()["state"] == "failed"


async def test_cancelling_the_parent_cancels_its_pending_children(
    api: httpx.AsyncClient, make_user: MakeUser
) -> None:
    alice = await make_user("alice")
    tree = (await api.post("/v1/flows", json=fan_out(), headers=alice)).json()
    cancelled = await api.delete(f"/v1/jobs/{tree['job']['id']}", headers=alice)
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled", cancelled.text
    read = (await api.get(f"/v1/flows/{tree['job']['id']}", headers=alice)).json()
    assert [c["job"]["state"] for c in read["children"]] == ["cancelled"] * 3


async def test_depends_on_chain_runs_in_order(
    api: httpx.AsyncClient, make_user: MakeUser, make_runtime: MakeRuntime
) -> None:
    alice = await make_user("alice")
    first = (await api.post("/v1/jobs", json=job("flight-search"), headers=alice)).json()
    second = await api.post("/v1/jobs", json=job("orchestrator", depends_on=[first["id"]]), headers=alice)
    assert second.status_code == 201, second.text
    assert second.json()["state"] == "waiting-children" and second.json()["depends_on"] == [first["id"]]
    await drain(make_runtime())
    done = (await api.get(f"/v1/jobs/{second.json()['id']}", headers=alice)).json()
    assert done["state"] == "completed" and done["result"] == {
        "flight-search": {"agent": "flight-search", "topic": "trip"}
    }


async def test_ownership_holds_across_a_flow(api: httpx.AsyncClient, make_user: MakeUser) -> None:
    alice, mallory = await make_user("alice"), await make_user("mallory")
    tree = (await api.post("/v1/flows", json=fan_out(), headers=alice)).json()
    child_id = tree["children"][0]["job"]["id"]
    assert (await api.get(f"/v1/flows/{tree['job']['id']}", headers=mallory)).status_code == 404
    assert (await api.get(f"/v1/jobs/{child_id}", headers=mallory)).status_code == 404
    depends = await api.post("/v1/jobs", json=job("orchestrator", depends_on=[child_id]), headers=mallory)
    assert depends.status_code == 422, depends.text
    assert depends.json()["error"]["field"] == "depends_on[0]"
    assert (await api.get(f"/v1/jobs/{child_id}", headers=alice)).json()["parents"] == [
        {"id": tree["job"]["id"], "policy": "fail"}
    ]


def nested(depth: int) -> dict[str, Any]:
    node = job("flight-search")
    for _ in range(depth):
        node = job("orchestrator", children=[node])
    return node


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (nested(MAX_FLOW_DEPTH), 201, None),
        (nested(MAX_FLOW_DEPTH + 1), 422, "children[0]." * MAX_FLOW_DEPTH + "children"),
        (job("orchestrator", children=[job("communication")] * (MAX_FLOW_NODES + 1)), 422, "children"),
        (job("orchestrator", children=[job("nope")]), 422, "children[0].type"),
        (
            job("orchestrator", children=[job("communication", payload={"fail": "x"})]),
            422,
            "children[0].payload.fail",
        ),
        (job("orchestrator", depends_on=["garbage"]), 422, "depends_on[0]"),
        (job("orchestrator", depends_on=["x" * 200]), 422, "depends_on[0]"),
        (
            job("orchestrator", children=[job("communication", on_failure="explode")]),
            422,
            "children[0].on_failure",
        ),
        (job("orchestrator", delay_seconds=5, children=[job("communication")]), 422, "delay"),
        (job("orchestrator", idempotency_key="k", children=[job("communication")]), 422, "idempotency_key"),
    ],
)
async def test_hostile_flows_are_refused_naming_the_field(
    api: httpx.AsyncClient, make_user: MakeUser, body: dict[str, Any], status: int, field: str | None
) -> None:
    alice = await make_user("alice")
    answer = await api.post("/v1/flows", json=body, headers=alice)
    assert answer.status_code == status, answer.text
    if field is None:  # the limit itself is accepted
        return
    assert answer.json()["error"]["field"] == field, answer.json()
    listed = (await api.get("/v1/jobs", headers=alice)).json()
    assert listed["jobs"] == []  # nothing half-written


async def test_a_batch_answers_once_per_item_with_its_root(
    api: httpx.AsyncClient, make_user: MakeUser
) -> None:
    alice = await make_user("alice")
    batch = {"jobs": [fan_out(), job("communication"), fan_out()]}
    answer = await api.post("/v1/jobs/batch", json=batch, headers=alice)
    assert answer.status_code == 201, answer.text
    items = answer.json()["results"]
    assert [(i["index"], i["job"]["type"]) for i in items] == [
        (0, "orchestrator"),
        (1, "communication"),
        (2, "orchestrator"),
    ]
    assert items[0]["job"]["state"] == "waiting-children" and len(items[2]["job"]["children"]) == 3
