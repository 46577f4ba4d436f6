"""The benchmark's counting proxy: RESP parsing in pieces, and counts through a real Redis."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

import httpx
import pytest
import redis.asyncio as aioredis

from bench.proxy import CountingProxy, RespCounter


def resp(*words: str) -> bytes:
    out = f"*{len(words)}\r\n".encode()
    for word in words:
        data = word.encode()
        out += b"$%d\r\n%s\r\n" % (len(data), data)
    return out


def test_counts_whole_commands_fed_byte_by_byte() -> None:
    counter = RespCounter()
    stream = resp("set", "k", "v\r\nwith crlf") + resp("GET", "k") + resp("evalsha", "abc", "0")
    for i in range(len(stream)):
        counter.feed(stream[i : i + 1])
    assert counter.counts == {"SET": 1, "GET": 1, "EVALSHA": 1}


def test_incomplete_command_is_not_counted_until_it_ends() -> None:
    counter = RespCounter()
    whole = resp("HSET", "key", "field", "x" * 1000)
    counter.feed(whole[:-5])
    assert not counter.counts
    counter.feed(whole[-5:])
    assert counter.counts == {"HSET": 1}


def test_inline_commands_and_pipelines_count_each_command() -> None:
    counter = RespCounter()
    counter.feed(b"PING\r\n" + resp("MULTI") + resp("INCR", "a") + resp("EXEC"))
    assert counter.counts == {"PING": 1, "MULTI": 1, "INCR": 1, "EXEC": 1}


@pytest.mark.realredis
async def test_proxy_counts_client_commands_not_lua_calls() -> None:
    url = os.environ.get("JOBQ_TEST_REDIS_URL", "redis://127.0.0.1:6379")
    upstream = aioredis.from_url(url)
    try:
        await upstream.ping()
    except OSError:
        if os.environ.get("CI") or os.environ.get("JOBQ_REQUIRE_REAL_REDIS"):
            raise
        pytest.skip("no Redis server")
    finally:
        await upstream.aclose()
    parts = urlsplit(url)
    proxy = CountingProxy(parts.hostname or "127.0.0.1", parts.port or 6379)
    port = await proxy.start()
    client = aioredis.Redis(port=port)
    try:
        key = f"test-proxy:{os.getpid()}"
        await client.set(key, "1", ex=30)
        script = "redis.call('INCR', KEYS[1]); redis.call('INCR', KEYS[1]); return redis.call('GET', KEYS[1])"
        assert await client.eval(script, 1, key) == b"3"
        async with client.pipeline(transaction=False) as pipe:
            pipe.get(key).delete(key)
            assert await pipe.execute() == [b"3", 1]
    finally:
        await client.aclose()
        await proxy.stop()
    assert proxy.counts["EVAL"] == 1 and proxy.counts["INCR"] == 0
    assert proxy.counts["SET"] == 1 and proxy.counts["GET"] == 1 and proxy.counts["DEL"] == 1


@pytest.mark.realredis
async def test_billed_count_behind_the_gateway_matches_the_gateways_counter() -> None:
    """The stack bench counts at a proxy behind `jobq dev`'s gateway: it must agree with /_jobq/commands."""
    from bench.proxy import ProxyProcess
    from tests.support.gateway import ThreadGateway

    url = os.environ.get("JOBQ_TEST_REDIS_URL", "redis://127.0.0.1:6379")
    parts = urlsplit(url)
    probe = aioredis.from_url(url)
    try:
        await probe.ping()
    except OSError:
        if os.environ.get("CI") or os.environ.get("JOBQ_REQUIRE_REAL_REDIS"):
            raise
        pytest.skip("no Redis server")
    finally:
        await probe.aclose()
    key = f"test-proxy-billed:{os.getpid()}"
    script = "redis.call('INCR', KEYS[1]); return redis.call('INCR', KEYS[1])"
    proxy = ProxyProcess(parts.port or 6379, parts.hostname or "127.0.0.1")
    with proxy, ThreadGateway(f"redis://127.0.0.1:{proxy.port}/0") as gateway:
        async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.auth) as rest:
            before = proxy.billed()
            await rest.post("/", json=["PING"])
            await rest.post("/", json=["SET", key, "1", "EX", "30"])
            await rest.post("/pipeline", json=[["INCR", key], ["GET", key], ["PING"]])
            await rest.post("/multi-exec", json=[["INCR", key], ["EXPIRE", key, "30"]])
            await rest.post("/", json=["EVAL", script, "1", key])
            await rest.post("/", json=["DEL", key])
        billed = proxy.billed() - before
        assert billed == gateway.command_count() == 7
