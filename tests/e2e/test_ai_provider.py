"""The llm type against a misbehaving provider (tests/support/fake_llm.py, a real local socket): 429 with
Retry-After, 5xx, other 4xx, slow replies past the timeout, streamed replies, malformed bodies."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

import pytest

from tests.support.ai_stack import AIStack, llm_body
from tests.support.api_fixtures import MakeUser
from tests.support.fake_llm import API_KEY, FakeLLM, Malformed, Reply, Status, Stream


def seconds_between(later: str, earlier: str) -> float:
    return (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).total_seconds()


async def test_429_is_retried_after_the_providers_retry_after(
    ai_stack: AIStack, fake_llm: FakeLLM, make_user: MakeUser
) -> None:
    alice = await make_user("alice")
    fake_llm.script(Status(429, "slow down", headers={"Retry-After": "2"}))
    job_id = await ai_stack.submit(alice, llm_body("Summarize: x", cache=False))
    [job] = await ai_stack.settle(alice, job_id)
    assert job["state"] == "completed" and job["attempts"] == 2, job
    assert fake_llm.count == 2
    [error] = job["errors"]
    assert error["kind"] == "retryable" and "429" in error["message"] and "slow down" in error["message"]
    # The retry ran no sooner than the provider asked (the type's own backoff would be 2 s +-10%).
    assert seconds_between(job["started_at"], error["at"]) >= 1.9


async def test_retry_after_ms_sets_the_delay_over_the_backoff(
    ai_stack: AIStack, fake_llm: FakeLLM, make_user: MakeUser
) -> None:
    alice = await make_user("alice")
    fake_llm.script(Status(503, "busy", headers={"retry-after-ms": "100"}))
    job_id = await ai_stack.submit(alice, llm_body("Summarize: y", cache=False))
    [job] = await ai_stack.settle(alice, job_id)
    assert job["state"] == "completed" and job["attempts"] == 2, job
    assert seconds_between(job["started_at"], job["errors"][0]["at"]) < 1.5  # not the 2 s backoff


async def test_a_5xx_without_retry_after_takes_the_types_backoff(
    ai_stack: AIStack, fake_llm: FakeLLM, make_user: MakeUser
) -> None:
    alice = await make_user("alice")
    fake_llm.script(Status(500, "oops"), Status(502, "bad gateway"))
    job_id = await ai_stack.submit(alice, llm_body("Summarize: z", type="llm-fast", cache=False))
    [job] = await ai_stack.settle(alice, job_id)
    assert job["state"] == "completed" and job["attempts"] == 3, job
    assert [e["kind"] for e in job["errors"]] == ["retryable", "retryable"]


@pytest.mark.parametrize("status", [400, 401, 404, 422])
async def test_other_4xx_fail_at_once(
    ai_stack: AIStack, fake_llm: FakeLLM, make_user: MakeUser, status: int
) -> None:
    alice = await make_user("alice")
    fake_llm.script(Status(status, "your request is wrong"))
    job_id = await ai_stack.submit(alice, llm_body("Classify: q", cache=False))
    [job] = await ai_stack.settle(alice, job_id)
    assert job["state"] == "failed" and job["attempts"] == 1, job
    assert job["error"]["kind"] == "permanent"
    assert f"({status})" in job["error"]["message"] and "your request is wrong" in job["error"]["message"]
    assert fake_llm.count == 1


async def test_a_slow_provider_is_cut_off_before_the_jobs_timeout(
    ai_stack: AIStack, fake_llm: FakeLLM, make_user: MakeUser
) -> None:
    """llm-short has a 3 s timeout: the provider's call gets 1 s of it (the rest reports the failure)."""
    alice = await make_user("alice")
    fake_llm.script(Reply("late", delay=5.0))
    job_id = await ai_stack.submit(alice, llm_body("Summarize: slow", type="llm-short", cache=False))
    [job] = await ai_stack.settle(alice, job_id)
    assert job["state"] == "failed", job
    assert job["error"]["kind"] == "retryable"  # the provider timed out, not the handler
    assert "did not answer within 1 s" in job["error"]["message"], job["error"]
    assert seconds_between(job["finished_at"], job["started_at"]) < 3.0


async def test_a_streamed_reply_reports_its_lines_and_records_usage(
    ai_stack: AIStack, fake_llm: FakeLLM, make_user: MakeUser
) -> None:
    alice = await make_user("alice")
    fake_llm.script(
        Stream(["def add(a, b):\n", "    return", " a + b\n", "# done"], input_tokens=12, output_tokens=9)
    )
    job_id = await ai_stack.submit(alice, llm_body("Write add()", stream=True, max_tokens=8))
    [job] = await ai_stack.settle(alice, job_id)
    assert job["state"] == "completed", job
    assert job["result"]["content"] == "def add(a, b):\n    return a + b\n# done"
    assert job["logs"] == ["def add(a, b):", "    return a + b", "# done"]
    assert job["usage"]["input_tokens"] == 12 and job["usage"]["output_tokens"] == 9
    assert fake_llm.calls[0]["stream"] is True
    # A second identical streamed request is answered from the cache.
    again = await ai_stack.submit(alice, llm_body("Write add()", stream=True, max_tokens=8))
    [job2] = await ai_stack.settle(alice, again)
    assert job2["result"]["cached"] is True and fake_llm.count == 1


async def test_a_malformed_body_is_a_retryable_failure(
    ai_stack: AIStack, fake_llm: FakeLLM, make_user: MakeUser
) -> None:
    alice = await make_user("alice")
    fake_llm.script(Malformed("{not json"), Malformed('{"choices": "nope"}'))
    job_id = await ai_stack.submit(alice, llm_body("Summarize: m", type="llm-fast", cache=False))
    [job] = await ai_stack.settle(alice, job_id)
    assert job["state"] == "completed" and job["attempts"] == 3, job
    assert all("malformed" in e["message"] for e in job["errors"]), job["errors"]


async def test_a_key_the_provider_echoes_never_reaches_the_job(
    ai_stack: AIStack, fake_llm: FakeLLM, make_user: MakeUser
) -> None:
    alice = await make_user("alice")
    fake_llm.script(Status(401, f"Incorrect API key provided: {API_KEY}."))
    job_id = await ai_stack.submit(alice, llm_body("Classify: k", cache=False))
    [job] = await ai_stack.settle(alice, job_id)
    assert job["state"] == "failed" and "Incorrect API key provided: [key]." in job["error"]["message"]
    assert API_KEY not in str(job)


async def test_streamed_output_shows_as_progress_and_lines_while_the_job_runs(
    ai_stack: AIStack, fake_llm: FakeLLM, make_user: MakeUser
) -> None:
    """The lines and progress reach the job with the consumer's heartbeat flush, before it finishes."""
    alice = await make_user("alice")
    fake_llm.script(Stream([f"line {i}\n" for i in range(8)], gap=0.4))
    job_id = await ai_stack.submit(alice, llm_body("Count", stream=True, max_tokens=10, cache=False))
    runtime = ai_stack.consumer()
    run = asyncio.create_task(runtime.consumer.drain())
    try:
        deadline = time.monotonic() + 20
        while True:  # poll with a deadline until the running job shows partial output
            job = await ai_stack.job(alice, job_id)
            if job["state"] == "active" and job["progress"] > 0 and job["logs"]:
                break
            assert job["state"] != "completed", "the output was not reported before the job finished"
            assert time.monotonic() < deadline, job
            await asyncio.sleep(0.05)
        assert job["logs"][0] == "line 0" and job["progress"] < 100
    finally:
        await run
    [done] = await ai_stack.settle(alice, job_id)
    assert done["state"] == "completed" and done["logs"] == [f"line {i}" for i in range(8)]
