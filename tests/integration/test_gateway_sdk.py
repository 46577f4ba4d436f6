"""The gateway's protocol through the real upstash-redis SDK, sync and async clients, on every backend.

Each test runs six times: {redis, embedded, cluster} x {sync, async}. Numbers in test names refer to the
protocol points of issue 2.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from typing import Any

import pytest
from upstash_redis import Redis
from upstash_redis.asyncio import Redis as AsyncRedis
from upstash_redis.errors import UpstashError

from tests.support.gateway import ThreadGateway


@pytest.fixture(scope="session")
def gateway(every_gateway: ThreadGateway) -> ThreadGateway:
    """These tests run on all three backends: embedded, Redis and Redis Cluster."""
    return every_gateway


async def run(value: Any) -> Any:
    """The sync client returns values, the async one awaitables: accept both."""
    return await value if inspect.isawaitable(value) else value


@pytest.fixture(params=["sync", "async"])
async def client(request: pytest.FixtureRequest, gateway: ThreadGateway) -> AsyncIterator[Any]:
    cls = Redis if request.param == "sync" else AsyncRedis
    sdk = cls(gateway.url, gateway.token, rest_retries=0, allow_telemetry=False)
    try:
        yield sdk
    finally:
        await run(sdk.close())


async def test_1_single_command_and_case_insensitive_names(client: Any, unique_name: str) -> None:
    assert await run(client.set(unique_name, "value")) is True
    assert await run(client.get(unique_name)) == "value"
    assert await run(client.execute(["get", unique_name])) == "value"
    assert await run(client.execute(["GeT", unique_name])) == "value"
    assert await run(client.incrby(unique_name + ":n", 5)) == 5
    assert await run(client.get(unique_name + ":missing")) is None


async def test_1_hash_and_list_replies_keep_their_shape(client: Any, unique_name: str) -> None:
    await run(client.hset(unique_name, values={"a": "1", "b": "two"}))
    assert await run(client.hgetall(unique_name)) == {"a": "1", "b": "two"}
    await run(client.rpush(unique_name + ":l", "x", "y", "z"))
    assert await run(client.lrange(unique_name + ":l", 0, -1)) == ["x", "y", "z"]


async def test_2_pipeline_in_order_and_not_atomic(client: Any, unique_name: str) -> None:
    pipe = client.pipeline()
    pipe.set(unique_name, "1")
    pipe.incr(unique_name)
    pipe.get(unique_name)
    pipe.execute(["HGETALL", unique_name + ":none"])
    assert await run(pipe.exec()) == [True, 2, "2", {}]


async def test_2_pipeline_error_does_not_stop_later_commands(client: Any, unique_name: str) -> None:
    pipe = client.pipeline()
    pipe.set(unique_name, "text")
    pipe.lpush(unique_name, "x")  # WRONGTYPE
    pipe.set(unique_name + ":after", "ran")
    with pytest.raises(UpstashError, match="WRONGTYPE"):
        await run(pipe.exec())
    assert await run(client.get(unique_name + ":after")) == "ran"


async def test_3_multi_exec_is_atomic_with_per_entry_results(client: Any, unique_name: str) -> None:
    tx = client.multi()
    tx.set(unique_name, "5")
    tx.incrby(unique_name, 3)
    tx.get(unique_name)
    assert await run(tx.exec()) == [True, 8, "8"]


async def test_3_multi_exec_runtime_error_is_per_entry(client: Any, unique_name: str) -> None:
    key = f"{{{unique_name}}}"  # a hash tag: one slot, so the cluster takes the transaction too
    tx = client.multi()
    tx.set(key, "text")
    tx.incr(key)  # fails at run time, inside EXEC: the others still apply
    tx.set(key + ":after", "ran")
    with pytest.raises(UpstashError, match="not an integer"):
        await run(tx.exec())
    assert await run(client.get(key + ":after")) == "ran"


async def test_3_multi_exec_queue_time_error_runs_nothing(client: Any, unique_name: str) -> None:
    tx = client.multi()
    tx.set(unique_name, "1")
    tx.execute(["NOSUCHCOMMAND", "x"])
    # The gateway answers 400 {"error": "ERR unknown command ..."} (checked byte-exact in the HTTP tests); the
    # SDK reads a pipeline reply as a list, so it fails on that object with an AttributeError of its own.
    with pytest.raises((UpstashError, AttributeError)):
        await run(tx.exec())
    assert await run(client.get(unique_name)) is None


async def test_4_wrong_token_is_refused(gateway: ThreadGateway) -> None:
    for cls in (Redis, AsyncRedis):
        sdk: Any = cls(gateway.url, "wrong-token", rest_retries=0, allow_telemetry=False)
        with pytest.raises(UpstashError, match="Unauthorized"):
            await run(sdk.get("anything"))
        await run(sdk.close())


async def test_6_binary_and_unicode_values_round_trip(client: Any, unique_name: str) -> None:
    text = "héllo ✓ \u0000 nul"
    await run(client.set(unique_name, text))
    assert await run(client.get(unique_name)) == text
    await run(client.set(unique_name + ":ok", "OK"))
    assert await run(client.get(unique_name + ":ok")) == "OK"


async def test_7_numbers_become_decimal_arguments(client: Any, unique_name: str) -> None:
    assert await run(client.execute(["SET", unique_name, 12])) is True
    assert await run(client.execute(["INCRBYFLOAT", unique_name, 0.5])) == 12.5
    assert await run(client.zadd(unique_name + ":z", {"m": 1.25})) == 1
    assert await run(client.zscore(unique_name + ":z", "m")) == 1.25


async def test_8_lua_replies_follow_resp2_conversion(client: Any, unique_name: str) -> None:
    script = "return {1, 2.9, 'text', true, false, {ok='fine'}, redis.call('SET', KEYS[1], ARGV[1])}"
    assert await run(client.eval(script, [unique_name], ["v"])) == [1, 2, "text", 1, None, "fine", "OK"]
    with pytest.raises(UpstashError, match=r"^custom failure"):
        await run(client.eval("return {err='custom failure'}", [], []))
    with pytest.raises(UpstashError, match="ERR"):
        await run(client.eval("return redis.call('NOSUCH')", [], []))


async def test_8_evalsha_and_script_load_exists(client: Any, unique_name: str) -> None:
    sha = await run(client.script_load(f"return '{unique_name}' .. ARGV[1]"))
    assert await run(client.evalsha(sha, [], ["!"])) == unique_name + "!"
    assert await run(client.script_exists(sha, "0" * 40)) == [True, False]
    with pytest.raises(UpstashError, match=r"^NOSCRIPT"):
        await run(client.evalsha("f" * 40, [], []))


@pytest.mark.parametrize(
    "command",
    [
        ["BLPOP", "k", "0"],
        ["BRPOP", "k", "0"],
        ["BRPOPLPUSH", "a", "b", "0"],
        ["BLMOVE", "a", "b", "LEFT", "LEFT", "0"],
        ["BLMPOP", "0", "1", "k", "LEFT"],
        ["BZPOPMIN", "k", "0"],
        ["BZPOPMAX", "k", "0"],
        ["BZMPOP", "0", "1", "k", "MIN"],
        ["XREAD", "BLOCK", "0", "STREAMS", "k", "$"],
        ["XREADGROUP", "GROUP", "g", "c", "block", "0", "STREAMS", "k", ">"],
        ["WATCH", "k"],
        ["UNWATCH"],
        ["DISCARD"],
        ["MULTI"],
        ["EXEC"],
        ["SUBSCRIBE", "c"],
        ["PSUBSCRIBE", "c*"],
        ["SELECT", "1"],
        ["AUTH", "x"],
        ["HELLO", "3"],
        ["QUIT"],
        ["CLIENT", "LIST"],
    ],
)
async def test_9_refused_commands_never_reach_redis(
    client: Any, gateway: ThreadGateway, command: list[str]
) -> None:
    gateway.reset_commands()
    with pytest.raises(UpstashError, match="not available"):
        await run(client.execute(command))
    assert gateway.command_count() == 0
    assert await run(client.ping()) == "PONG"  # the gateway still answers: nothing hung


async def test_9_xread_without_block_is_allowed(client: Any, unique_name: str) -> None:
    await run(client.execute(["XADD", unique_name, "1-1", "f", "v"]))
    assert await run(client.execute(["XREAD", "COUNT", "1", "STREAMS", unique_name, "0"])) == [
        [unique_name, [["1-1", ["f", "v"]]]]
    ]


async def test_11_key_over_32kb_is_refused(client: Any) -> None:
    with pytest.raises(
        UpstashError, match=r"^ERR max key size exceeded\. Limit: 32768 bytes, Actual: 32769 bytes"
    ):
        await run(client.set("k" * 32769, "v"))
    assert await run(client.exists("k" * 32768)) == 0  # exactly the limit is fine
