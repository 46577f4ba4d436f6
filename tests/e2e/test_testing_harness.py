"""jobq.testing beyond docs/testing.md's example: callbacks through the API to a real receiver, wait()
while the consumer runs, and what run_until_idle leaves alone."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel

from jobq.client import State
from jobq.testing import jobq_stack
from shared.registry import Registry
from shared.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from tests.support.receiver import Receiver, callback_receiver

SECRET = "harness-secret-0123456789"


class Name(BaseModel):
    name: str


def registry() -> Registry:
    types = Registry()

    @types.job_type("greet", payload=Name, timeout=5)
    async def greet(payload: Name, ctx: Any) -> str:
        await ctx.progress(50)
        return f"hello {payload.name}"

    return types


@pytest.fixture
def local_receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    with callback_receiver(monkeypatch, SECRET) as server:
        yield server


async def test_a_callback_submitted_through_the_api_reaches_the_receiver(local_receiver: Receiver) -> None:
    async with jobq_stack(registry()) as jobq:
        job = await jobq.client.submit("greet", {"name": "ada"}, callback_url=local_receiver.url + "/done")
        assert job.callback_url == local_receiver.url + "/done"
        ran = await jobq.run_until_idle()
    assert (ran.claimed, ran.completed) == (2, 2)  # the job and its delivery
    [(method, path, headers, body)] = local_receiver.requests
    assert (method, path, headers["Jobq-Event"]) == ("POST", "/done", "job.completed")
    assert verify(SECRET, body, headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER])
    assert json.loads(body)["result"] == "hello ada"


async def test_wait_answers_once_the_consumer_has_run_the_job() -> None:
    async with jobq_stack(registry()) as jobq:
        job = await jobq.client.submit("greet", {"name": "bob"})
        done, _ = await asyncio.gather(jobq.client.wait(job.id, timeout=20), jobq.run_until_idle())
        assert (done.state, done.result, done.progress) == (State.COMPLETED, "hello bob", 100)


async def test_run_until_idle_leaves_jobs_due_later_alone() -> None:
    async with jobq_stack(registry()) as jobq:
        later = await jobq.client.submit("greet", {"name": "later"}, delay=60)
        ran = await jobq.run_until_idle(within=1)
        assert ran.claimed == 0
        assert (await jobq.client.get(later.id)).state is State.DELAYED
        other = await jobq.client_for("other")
        assert (await other.list()).jobs == []
