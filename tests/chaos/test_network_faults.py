"""Network faults between jobq and the gateway: a faulty transport under the SDK's own httpx client.

Each fault lets the request reach the real gateway (the command runs) and then loses or mangles the
answer: a timeout, a dropped connection, a 502, a malformed body. The engine must raise a typed
store error (never report success it did not see), and re-sending the same call must change nothing twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from shared.engine import Engine
from shared.errors import JobqError
from shared.models import JobSpec, Outcome, State
from tests.chaos.stack import GatewayProcess

pytestmark = [pytest.mark.chaos, pytest.mark.realredis]

FAULTS = ["timeout", "dropped", "502", "malformed"]


class FaultyTransport(httpx.AsyncBaseTransport):
    """Forwards every request; while `fault` is set, the next answer is lost after the command ran."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.fault: str | None = None
        self.forwarded = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        await response.aread()
        self.forwarded += 1
        fault, self.fault = self.fault, None
        if fault == "timeout":
            raise httpx.ReadTimeout("injected: answer never came", request=request)
        if fault == "dropped":
            raise httpx.RemoteProtocolError("injected: connection closed mid-answer", request=request)
        if fault == "502":
            return httpx.Response(502, json={"error": "injected bad gateway"}, request=request)
        if fault == "malformed":
            return httpx.Response(200, content=b'{"result": [1, 2', request=request)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


async def warm(engine: Engine) -> None:
    """Load the scripts first, so the faulted call is the one that runs (not a NOSCRIPT probe), and name
    the tests' queue (an engine's first submit to a queue adds it to the set of queues first)."""
    await engine.publish_policies(["net"])
    await engine._name_queues(["net"])
    await engine.enqueue([JobSpec(type="warm", queue="warm")])
    [claimed] = await engine.claim("warm", 1)
    await engine.finish([Outcome(job_id=claimed.job.id, token=claimed.token, status="completed")])


@contextmanager
def faulty(engine: Engine) -> Iterator[FaultyTransport]:
    client: httpx.AsyncClient = engine.store.redis._http._client
    original = client._transport
    transport = FaultyTransport(original)
    client._transport = transport
    try:
        yield transport
    finally:
        client._transport = original


@pytest.mark.parametrize("fault", FAULTS)
async def test_resent_enqueue_after_a_lost_answer_creates_one_job(
    private_gateway: GatewayProcess, chaos_engine: Engine, fault: str
) -> None:
    spec = JobSpec(type="net", queue="net", idempotency_key=f"order-{fault}", payload={"n": 1})
    await warm(chaos_engine)
    with faulty(chaos_engine) as transport:
        transport.fault = fault
        with pytest.raises(JobqError):
            await chaos_engine.enqueue([spec])
        assert transport.forwarded == 1  # the command did run
        again = (await chaos_engine.enqueue([spec])).results[0]
    assert not again.created
    stats = await chaos_engine.stats("net")
    assert stats.counts.get(State.WAITING, 0) == 1


@pytest.mark.parametrize("fault", FAULTS)
async def test_resent_finish_after_a_lost_answer_counts_once(
    private_gateway: GatewayProcess, chaos_engine: Engine, fault: str
) -> None:
    await chaos_engine.enqueue([JobSpec(type="net", queue="net")])
    [claimed] = await chaos_engine.claim("net", 1)
    outcome = Outcome(job_id=claimed.job.id, token=claimed.token, status="completed", result={"v": 1})
    await warm(chaos_engine)
    with faulty(chaos_engine) as transport:
        transport.fault = fault
        with pytest.raises(JobqError):
            await chaos_engine.finish([outcome])
        resent = await chaos_engine.finish([outcome])
    assert [r.state for r in resent] == [State.COMPLETED]
    job = await chaos_engine.get(claimed.job.id)
    stats = await chaos_engine.stats("net")
    assert (job.state, job.attempts, stats.completed_total) == (State.COMPLETED, 1, 1)
    assert stats.counts.get(State.COMPLETED, 0) == 1


@pytest.mark.parametrize("fault", FAULTS)
async def test_a_claim_whose_answer_is_lost_hands_the_job_to_no_one_twice(
    private_gateway: GatewayProcess, chaos_engine: Engine, fault: str
) -> None:
    await chaos_engine.enqueue([JobSpec(type="net", queue="net", timeout=5)])
    await warm(chaos_engine)
    with faulty(chaos_engine) as transport:
        transport.fault = fault
        with pytest.raises(JobqError):
            await chaos_engine.claim("net", 10)
        assert await chaos_engine.claim("net", 10) == []  # the lost lease still holds it
    stats = await chaos_engine.stats("net")
    assert stats.counts.get(State.ACTIVE, 0) == 1
