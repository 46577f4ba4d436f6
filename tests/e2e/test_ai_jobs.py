"""AI jobs end to end: submit through the API, run on consumers, against a local OpenAI-compatible server
(tests/support/fake_llm.py); every Redis call through the gateway on real Redis (and the embedded one)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.ai_stack import AIStack, llm_body
from tests.support.api_fixtures import ADMIN_HEADERS, MakeUser
from tests.support.fake_llm import API_KEY, FakeLLM, Status, expected_usage

PRICE_IN, PRICE_OUT = 0.5, 2.0  # the fake_llm fixture's price of fake-mini, USD per million tokens


def cost_of(tokens_in: int, tokens_out: int) -> float:
    return (tokens_in * PRICE_IN + tokens_out * PRICE_OUT) / 1_000_000


async def metric(api: httpx.AsyncClient, name: str, queue: str) -> float:
    response = await api.get("/metrics", headers=ADMIN_HEADERS)
    assert response.status_code == 200, response.text
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == name and sample.labels.get("queue") == queue:
                return float(sample.value)
    return 0.0


async def test_a_job_records_usage_and_cost_and_never_stores_the_key(
    ai_stack: AIStack, fake_llm: FakeLLM, make_user: MakeUser
) -> None:
    alice = await make_user("alice")
    body = llm_body("Summarize: jobq runs background jobs on Redis.", temperature=0.2, max_tokens=50)
    job_id = await ai_stack.submit(alice, body)
    [job] = await ai_stack.settle(alice, job_id)
    assert job["state"] == "completed", job
    assert fake_llm.count == 1
    sent = fake_llm.calls[0]
    assert sent["model"] == "fake-mini" and sent["temperature"] == 0.2 and sent["max_tokens"] == 50
    assert fake_llm.auth == [f"Bearer {API_KEY}"]
    tokens_in, tokens_out = expected_usage(sent)
    assert job["result"]["content"] == "answer to: Summarize: jobq runs background jobs on Redis."
    assert job["result"]["cached"] is False
    assert job["usage"] == {
        "input_tokens": tokens_in,
        "output_tokens": tokens_out,
        "cost": pytest.approx(cost_of(tokens_in, tokens_out)),
        "model": "fake-mini",
    }
    assert API_KEY not in json.dumps(job)


async def test_a_cache_hit_makes_no_provider_call_and_is_counted(
    ai_stack: AIStack, fake_llm: FakeLLM, make_user: MakeUser
) -> None:
    alice = await make_user("alice")
    # The same request twice, its keys in another order the second time: one provider call.
    first = await ai_stack.submit(alice, llm_body("Write a Python function that adds two numbers."))
    await ai_stack.settle(alice, first)
    payload = {
        "max_tokens": None,
        "messages": [{"content": "Write a Python function that adds two numbers.", "role": "user"}],
    }
    second = await ai_stack.submit(alice, {"type": "llm", "payload": payload})
    [job1, job2] = await ai_stack.settle(alice, first, second)
    assert fake_llm.count == 1
    assert job1["result"]["cached"] is False and job2["result"]["cached"] is True
    assert job2["result"]["content"] == job1["result"]["content"]
    assert job2["usage"] is None  # nothing was spent
    assert await metric(ai_stack.api, "jobq_cache_hits_total", "llm") == 1
    assert await metric(ai_stack.api, "jobq_cache_misses_total", "llm") == 1
    queue = (await ai_stack.api.get("/v1/queues/llm", headers=ADMIN_HEADERS)).json()
    assert queue["ai"]["cache_hits"] == 1 and queue["ai"]["cache_misses"] == 1
    assert queue["ai"]["input_tokens"] == job1["usage"]["input_tokens"]
    # cache: false asks the provider again.
    third = await ai_stack.submit(
        alice, llm_body("Write a Python function that adds two numbers.", cache=False)
    )
    [job3] = await ai_stack.settle(alice, third)
    assert fake_llm.count == 2 and job3["result"]["cached"] is False


async def test_one_owners_cache_does_not_answer_another_unless_the_type_shares_it(
    ai_stack: AIStack, fake_llm: FakeLLM, make_user: MakeUser
) -> None:
    alice, bob = await make_user("alice"), await make_user("bob")
    a = await ai_stack.submit(alice, llm_body("Classify: I love it"))
    await ai_stack.settle(alice, a)
    b = await ai_stack.submit(bob, llm_body("Classify: I love it"))
    [job_b] = await ai_stack.settle(bob, b)
    assert fake_llm.count == 2 and job_b["result"]["cached"] is False

    shared_a = await ai_stack.submit(alice, llm_body("Sentiment: fine", type="llm-shared"))
    await ai_stack.settle(alice, shared_a)
    shared_b = await ai_stack.submit(bob, llm_body("Sentiment: fine", type="llm-shared"))
    [job] = await ai_stack.settle(bob, shared_b)
    assert fake_llm.count == 3 and job["result"]["cached"] is True


async def test_usage_totals_add_up_across_100_jobs_and_3_consumers(
    ai_stack: AIStack, fake_llm: FakeLLM, make_user: MakeUser
) -> None:
    owners = {"org-a": await make_user("org-a"), "org-b": await make_user("org-b")}
    jobs: dict[str, list[str]] = {"org-a": [], "org-b": []}
    for i in range(100):
        owner = "org-a" if i % 3 else "org-b"
        body = llm_body(f"Translate to French, item {i}: " + "word " * (i % 17), cache=False)
        jobs[owner].append(await ai_stack.submit(owners[owner], body))
    settled = {o: await ai_stack.settle(owners[o], *ids, consumers=3) for o, ids in jobs.items()}
    assert fake_llm.count == 100
    assert len(ai_stack.runtimes) == 3

    expected: dict[str, dict[str, Any]] = {}
    for owner, owner_jobs in settled.items():
        assert all(job["state"] == "completed" for job in owner_jobs)
        tokens_in = sum(job["usage"]["input_tokens"] for job in owner_jobs)
        tokens_out = sum(job["usage"]["output_tokens"] for job in owner_jobs)
        expected[owner] = {"input_tokens": tokens_in, "output_tokens": tokens_out, "jobs": len(owner_jobs)}
    # The provider's own accounting: what the fake server answered, request by request.
    provider_in = sum(expected_usage(call)[0] for call in fake_llm.calls)
    assert provider_in == sum(e["input_tokens"] for e in expected.values())

    today = datetime.now(UTC).date().isoformat()
    for owner, headers in owners.items():
        response = await ai_stack.api.get("/v1/usage", headers=headers)
        assert response.status_code == 200, response.text
        report = response.json()
        assert report["owner"] == owner
        total = report["total"]
        assert {k: total[k] for k in ("input_tokens", "output_tokens", "jobs")} == expected[owner]
        want_cost = cost_of(expected[owner]["input_tokens"], expected[owner]["output_tokens"])
        assert total["cost"] == pytest.approx(want_cost, abs=1e-5)
        assert [d["day"] for d in report["days"]] == [today]
        assert report["end"] == today
        assert [q["queue"] for q in report["queues"]] == ["llm"]
    # A user reads only their own; an admin anyone's.
    other = await ai_stack.api.get("/v1/usage", params={"owner": "org-b"}, headers=owners["org-a"])
    assert other.status_code == 403, other.text
    admin = await ai_stack.api.get("/v1/usage", params={"owner": "org-b"}, headers=ADMIN_HEADERS)
    assert admin.json()["total"]["jobs"] == expected["org-b"]["jobs"]
    all_in = sum(e["input_tokens"] for e in expected.values())
    assert await metric(ai_stack.api, "jobq_llm_input_tokens_total", "llm") == all_in
    assert await metric(ai_stack.api, "jobq_llm_cost_usd_total", "llm") == pytest.approx(
        sum(cost_of(e["input_tokens"], e["output_tokens"]) for e in expected.values()), abs=1e-5
    )


async def test_a_spent_budget_stops_the_next_job_before_any_provider_call(
    ai_stack: AIStack, fake_llm: FakeLLM, make_user: MakeUser
) -> None:
    alice, bob = await make_user("alice"), await make_user("bob")
    put = await ai_stack.api.put(
        "/v1/usage/budget",
        params={"owner": "alice"},
        json={"period": "day", "tokens": 10},
        headers=ADMIN_HEADERS,
    )
    assert put.status_code == 200, put.text
    assert put.json()["exceeded"] is False
    refused = await ai_stack.api.put(
        "/v1/usage/budget", params={"owner": "alice"}, json={"period": "day", "tokens": 10**9}, headers=alice
    )
    assert refused.status_code == 403, refused.text
    bad = await ai_stack.api.put(
        "/v1/usage/budget", params={"owner": "alice"}, json={"period": "week"}, headers=ADMIN_HEADERS
    )
    assert bad.status_code == 422 and bad.json()["error"]["field"], bad.text

    first = await ai_stack.submit(alice, llm_body("Extract the names: Ada met Grace in 1950, and so on."))
    [job1] = await ai_stack.settle(alice, first)
    assert job1["state"] == "completed" and job1["usage"]["input_tokens"] + 7 > 10  # the budget is spent
    second = await ai_stack.submit(alice, llm_body("Extract the names: Alan."))
    [job2] = await ai_stack.settle(alice, second)
    assert job2["state"] == "failed" and job2["attempts"] == 1, job2
    assert job2["error"]["kind"] == "permanent"
    assert job2["error"]["message"].startswith("budget_exceeded"), job2["error"]
    assert fake_llm.count == 1  # the refused job never reached the provider
    status = await ai_stack.api.get("/v1/usage/budget", headers=alice)
    assert status.json()["exceeded"] is True
    assert status.json()["spent"]["input_tokens"] == job1["usage"]["input_tokens"]
    nosy = await ai_stack.api.get("/v1/usage/budget", params={"owner": "alice"}, headers=bob)
    assert nosy.status_code == 403, nosy.text

    bob_job = await ai_stack.submit(bob, llm_body("Extract the names: Alan."))  # another owner is unaffected
    [job3] = await ai_stack.settle(bob, bob_job)
    assert job3["state"] == "completed" and fake_llm.count == 2

    cleared = await ai_stack.api.delete("/v1/usage/budget", params={"owner": "alice"}, headers=ADMIN_HEADERS)
    assert cleared.json()["budget"] is None


async def test_a_provider_outage_ends_in_retries_then_the_dead_letter_set(
    ai_stack: AIStack, fake_llm: FakeLLM, make_user: MakeUser
) -> None:
    alice = await make_user("alice")
    fake_llm.default = Status(503, "overloaded")
    job_id = await ai_stack.submit(alice, llm_body("Summarize: anything", type="llm-fast"))
    [job] = await ai_stack.settle(alice, job_id)
    assert job["state"] == "failed" and job["attempts"] == 3, job
    assert fake_llm.count == 3
    assert [e["kind"] for e in job["errors"]] == ["retryable"] * 3
    assert "503" in job["error"]["message"]
    dead = await ai_stack.api.get(
        "/v1/queues/llm-fast/jobs", params={"state": "failed"}, headers=ADMIN_HEADERS
    )
    assert [j["id"] for j in dead.json()["jobs"]] == [job_id]
    assert job["usage"] is None  # nothing was answered, nothing spent


async def test_bad_payloads_are_refused_at_submit_naming_the_field(
    ai_stack: AIStack, make_user: MakeUser
) -> None:
    alice = await make_user("alice")
    cases = [
        ({"messages": []}, "payload.messages"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "payload.messages.0.role"),
        (llm_body("x", temperature=3)["payload"], "payload.temperature"),
        (llm_body("x", max_tokens=0)["payload"], "payload.max_tokens"),
        (llm_body("x", response_format={"type": "json_schema"})["payload"], "payload.response_format"),
        (llm_body("x", api_key="sk-mine")["payload"], "payload.api_key"),
        (llm_body("x", model="bad model!")["payload"], "payload.model"),
    ]
    for payload, field in cases:
        response = await ai_stack.api.post(
            "/v1/jobs", json={"type": "llm", "payload": payload}, headers=alice
        )
        assert response.status_code == 422, (payload, response.text)
        assert response.json()["error"]["field"] == field, (payload, response.json())
