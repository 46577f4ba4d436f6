"""Replica lag on the gateway (replica.py): plain reads miss fresh writes unless the write's token is sent.

Over HTTP to a gateway thread on real Redis and on the embedded backend. Time is the replica's injected
clock, moved by the test, except in the one test that shows the lag ending on the real clock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from infra.local.replica import ReplicaLag
from tests.support.engine_fixtures import FakeClock
from tests.support.gateway import GatewayProcess, ThreadGateway
from tests.support.gateway_fixtures import require_real_redis

LAG_MS = 300
TOKEN = "Upstash-Sync-Token"


@pytest.fixture(scope="module", params=["redis", "embedded"])
def lagging_gateway(request: pytest.FixtureRequest) -> Iterator[ThreadGateway]:
    redis_url = require_real_redis() if request.param == "redis" else None
    with ThreadGateway(redis_url, replica_lag_ms=LAG_MS) as running:
        yield running


@pytest.fixture
def clock(lagging_gateway: ThreadGateway) -> Iterator[FakeClock]:
    """A fresh replica on a clock the test moves (no write of an earlier test lags into this one)."""
    state = lagging_gateway.app.state.gateway
    fake, real = FakeClock(0.0), state.replica  # from 0, LAG_MS / 1000 and whole seconds add up exactly
    state.replica = ReplicaLag(LAG_MS, clock=fake)
    yield fake
    state.replica = real


@pytest.fixture
async def http(lagging_gateway: ThreadGateway) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {lagging_gateway.token}"}
    async with httpx.AsyncClient(base_url=lagging_gateway.url, headers=headers, timeout=10) as client:
        yield client


async def result(http: httpx.AsyncClient, command: list[Any], token: str | None = None) -> Any:
    response = await http.post("/", json=command, headers={TOKEN: token} if token else {})
    assert response.status_code == 200, response.text
    return response.json()["result"]


async def written(http: httpx.AsyncClient, command: list[Any]) -> str:
    """Send a write; its reply's sync token."""
    response = await http.post("/", json=command)
    assert response.status_code == 200, response.text
    return response.headers[TOKEN]


async def test_a_fresh_write_reads_as_absent_without_its_token(
    http: httpx.AsyncClient, clock: FakeClock, unique_name: str
) -> None:
    key, hash_key = f"{unique_name}:s", f"{unique_name}:h"
    await written(http, ["SET", key, "v", "EX", "60"])
    await written(http, ["HSET", hash_key, "f", "1"])
    await written(http, ["EXPIRE", hash_key, "60"])
    assert await result(http, ["GET", key]) is None
    assert await result(http, ["EXISTS", key]) == 0
    assert await result(http, ["TTL", key]) == -2
    assert await result(http, ["HGETALL", hash_key]) == []
    assert await result(http, ["GET", key], "0" * 16) is None  # a token older than the write
    assert await result(http, ["GET", key], "not-a-token") is None


async def test_the_writes_token_or_a_later_one_reads_the_write(
    http: httpx.AsyncClient, clock: FakeClock, unique_name: str
) -> None:
    key = f"{unique_name}:s"
    token = await written(http, ["SET", key, "v", "EX", "60"])
    assert await result(http, ["GET", key], token) == "v"
    later = (await http.post("/", json=["PING"])).headers[TOKEN]
    assert later > token
    assert await result(http, ["GET", key], later) == "v"
    assert await result(http, ["GET", key]) is None  # the token is per request: the next one lags again


async def test_after_the_lag_every_read_sees_the_write(
    http: httpx.AsyncClient, clock: FakeClock, unique_name: str
) -> None:
    key = f"{unique_name}:s"
    await written(http, ["SET", key, "v", "EX", "60"])
    clock.now = (LAG_MS - 1) / 1000
    assert await result(http, ["GET", key]) is None
    clock.now = LAG_MS / 1000
    assert await result(http, ["GET", key]) == "v"


async def test_only_the_lagging_keys_of_a_read_are_absent(
    http: httpx.AsyncClient, clock: FakeClock, unique_name: str
) -> None:
    old, new = f"{{{unique_name}}}:old", f"{{{unique_name}}}:new"
    await written(http, ["SET", old, "1", "EX", "60"])
    clock.now += 1
    await written(http, ["SET", new, "2", "EX", "60"])
    assert await result(http, ["MGET", old, new]) == ["1", None]
    await written(http, ["INCR", old])
    assert await result(http, ["MGET", old, new]) == [None, None]  # a rewrite lags again


async def test_scripts_and_transactions_read_the_primary(
    http: httpx.AsyncClient, clock: FakeClock, unique_name: str
) -> None:
    key = f"{unique_name}:s"
    await written(http, ["SET", key, "v", "EX", "60"])
    read = "return redis.call('GET', KEYS[1])"
    assert await result(http, ["EVAL", read, "1", key]) == "v"
    assert await result(http, ["EVAL_RO", read, "1", key]) == "v"
    response = await http.post("/multi-exec", json=[["GET", key]])
    assert response.json() == [{"result": "v"}]


async def test_a_script_write_lags_by_its_keys_or_everywhere_without_them(
    http: httpx.AsyncClient, clock: FakeClock, unique_name: str
) -> None:
    declared, other = f"{unique_name}:declared", f"{unique_name}:other"
    await written(http, ["SET", other, "old", "EX", "60"])
    clock.now += 1
    token = await written(http, ["EVAL", "return redis.call('SET', KEYS[1], 'x', 'EX', 60)", "1", declared])
    assert await result(http, ["GET", declared]) is None
    assert await result(http, ["GET", declared], token) == "x"
    assert await result(http, ["GET", other]) == "old"  # not in its KEYS: untouched
    clock.now += 1
    # No KEYS: the script may have written anything, so every key lags behind it.
    token = await written(http, ["EVAL", f"return redis.call('SET', '{unique_name}:hidden', 'y')", "0"])
    assert await result(http, ["GET", other]) is None
    assert await result(http, ["GET", other], token) == "old"
    await result(http, ["DEL", f"{unique_name}:hidden"])


async def test_each_pipeline_entry_is_judged_and_sees_the_pipelines_own_writes(
    http: httpx.AsyncClient, clock: FakeClock, unique_name: str
) -> None:
    old, fresh, own = (f"{unique_name}:{name}" for name in ("old", "fresh", "own"))
    await written(http, ["SET", old, "1", "EX", "60"])
    clock.now += 1
    token = await written(http, ["SET", fresh, "2", "EX", "60"])
    commands = [["GET", old], ["GET", fresh], ["SET", own, "3", "EX", "60"], ["GET", own]]
    response = await http.post("/pipeline", json=commands)
    assert [entry["result"] for entry in response.json()] == ["1", None, "OK", "3"]
    response = await http.post("/pipeline", json=[["GET", fresh], ["GET", own]], headers={TOKEN: token})
    assert [entry["result"] for entry in response.json()] == ["2", None]  # `own` came after the token


async def test_on_the_real_clock_the_write_shows_once_the_lag_is_over(
    http: httpx.AsyncClient, unique_name: str
) -> None:
    key = f"{unique_name}:s"
    sent = time.monotonic()
    await written(http, ["SET", key, "v", "EX", "60"])
    deadline = sent + 5
    while await result(http, ["GET", key]) is None:
        assert time.monotonic() < deadline, "the write never showed"
        await asyncio.sleep(0.01)  # a polling interval, not a wait for the lag
    # Measured from before the write was sent, so never shorter than the gateway's own measure.
    assert time.monotonic() - sent >= LAG_MS / 1000


def test_no_lag_by_default_and_no_negative_lag() -> None:
    from infra.local.rest_gateway import create_app

    assert create_app("t").state.gateway.replica is None
    with pytest.raises(ValueError, match="replica lag"):
        create_app("t", replica_lag_ms=-1)


@pytest.mark.parametrize("how", ["flag", "env"])
def test_the_cli_option_reaches_the_gateway(how: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if how == "env":
        monkeypatch.setenv("JOBQ_GATEWAY_REPLICA_LAG_MS", "60000")
    extra_args = ("--replica-lag-ms", "60000") if how == "flag" else ()
    with (
        GatewayProcess(None, extra_args=extra_args) as process,
        httpx.Client(base_url=process.url, headers=process.auth, timeout=10) as client,
    ):
        token = client.post("/", json=["SET", "k", "v"]).headers[TOKEN]
        assert client.post("/", json=["GET", "k"]).json() == {"result": None}
        assert client.post("/", json=["GET", "k"], headers={TOKEN: token}).json() == {"result": "v"}
