"""Upstash's REST protocol as its docs and the SDK describe it: bodies, encodings, statuses, headers.

Written from Upstash's REST API documentation and the upstash-redis SDK's documented behaviour; every test
runs on embedded, Redis and Redis Cluster.
"""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

from tests.support.gateway import ThreadGateway

B64 = {"Upstash-Encoding": "base64"}


def b64(value: str | bytes) -> str:
    return base64.b64encode(value.encode() if isinstance(value, str) else value).decode()


async def test_single_command_reply_shapes(http: httpx.AsyncClient, tag: str) -> None:
    assert (await http.post("/", json=["SET", tag, "v"])).json() == {"result": "OK"}
    assert (await http.post("/", json=["GET", tag])).json() == {"result": "v"}
    assert (await http.post("/", json=["GET", tag + "none"])).json() == {"result": None}
    assert (await http.post("/", json=["STRLEN", tag])).json() == {"result": 1}
    await http.post("/", json=["HSET", tag + "h", "f", "1"])
    assert (await http.post("/", json=["HGETALL", tag + "h"])).json() == {"result": ["f", "1"]}


async def test_base64_encodes_every_string_but_ok(http: httpx.AsyncClient, tag: str) -> None:
    assert (await http.post("/", json=["SET", tag, "héllo"], headers=B64)).json() == {"result": "OK"}
    assert (await http.post("/", json=["GET", tag], headers=B64)).json() == {"result": b64("héllo")}
    script = "return {1, 'x', {redis.call('GET', KEYS[1])}}"
    reply = await http.post("/", json=["EVAL", script, 1, tag], headers=B64)
    assert reply.json() == {"result": [1, b64("x"), [b64("héllo")]]}
    assert (await http.post("/", json=["INCR", tag], headers=B64)).json()["error"].startswith("ERR ")


async def test_binary_values_round_trip_in_base64(http: httpx.AsyncClient, tag: str) -> None:
    raw = bytes(range(256))
    script = "local s = '' for i = 0, 255 do s = s .. string.char(i) end return redis.call('SET', KEYS[1], s)"
    await http.post("/", json=["EVAL", script, 1, tag])
    reply = (await http.post("/", json=["GET", tag], headers=B64)).json()
    assert base64.b64decode(reply["result"]) == raw


@pytest.mark.parametrize(
    ("argument", "stored"),
    [("text", "text"), ("ünïcode ✓", "ünïcode ✓"), (42, "42"), (-7, "-7"), (2.5, "2.5"),
     (True, "true"), (False, "false"), (12345678901234567890, "12345678901234567890")],
)  # fmt: skip
async def test_every_argument_type_the_sdk_sends(
    http: httpx.AsyncClient, tag: str, argument: Any, stored: str
) -> None:
    assert (await http.post("/", json=["SET", tag, argument])).json() == {"result": "OK"}
    assert (await http.post("/", json=["GET", tag])).json() == {"result": stored}


@pytest.mark.parametrize("argument", [None, {"a": 1}, [1]])
async def test_json_values_the_sdk_never_sends_are_400(http: httpx.AsyncClient, argument: Any) -> None:
    response = await http.post("/", json=["SET", "k", argument])
    assert response.status_code == 400
    assert response.json()["error"].startswith("ERR failed to parse command: argument 2")


async def test_pipeline_across_keys_keeps_order(http: httpx.AsyncClient, unique_name: str) -> None:
    keys = [f"{unique_name}:{i}" for i in range(12)]  # spread over every cluster master
    commands = [["SET", key, str(i)] for i, key in enumerate(keys)] + [["GET", key] for key in keys]
    replies = (await http.post("/pipeline", json=commands)).json()
    assert replies == [{"result": "OK"}] * 12 + [{"result": str(i)} for i in range(12)]


async def test_multi_exec_applies_all(http: httpx.AsyncClient, tag: str) -> None:
    commands = [["SET", tag + "a", "1"], ["INCR", tag + "a"], ["SET", tag + "b", "x"], ["GET", tag + "b"]]
    response = await http.post("/multi-exec", json=commands)
    assert response.json() == [{"result": "OK"}, {"result": 2}, {"result": "OK"}, {"result": "x"}]


async def test_multi_exec_queue_time_error_applies_none(http: httpx.AsyncClient, tag: str) -> None:
    response = await http.post("/multi-exec", json=[["SET", tag, "1"], ["NOSUCHCOMMAND", tag]])
    assert response.status_code == 400 and "unknown command" in response.json()["error"]
    assert (await http.post("/", json=["EXISTS", tag])).json() == {"result": 0}


async def test_multi_exec_run_time_error_is_that_entry(http: httpx.AsyncClient, tag: str) -> None:
    commands = [["SET", tag, "text"], ["INCR", tag], ["SET", tag + "b", "ran"]]
    response = await http.post("/multi-exec", json=commands)
    assert response.json() == [
        {"result": "OK"},
        {"error": "ERR value is not an integer or out of range"},
        {"result": "OK"},
    ]


async def test_multi_exec_across_slots(
    http: httpx.AsyncClient, gateway: ThreadGateway, unique_name: str
) -> None:
    """One Redis (and Upstash) runs it; a cluster cannot do it atomically, so it refuses and runs nothing."""
    keys = [f"{unique_name}:{i}" for i in range(6)]
    response = await http.post("/multi-exec", json=[["SET", key, "1"] for key in keys])
    if gateway.backend == "cluster":
        assert response.status_code == 400
        assert response.json() == {"error": "CROSSSLOT Keys in request don't hash to the same slot"}
        assert (await http.post("/", json=["EXISTS", keys[0]])).json() == {"result": 0}
    else:
        assert response.json() == [{"result": "OK"}] * 6


@pytest.mark.parametrize(
    ("path", "content"),
    [("/", b"{"), ("/", b"[]"), ("/", b'{"a": 1}'), ("/pipeline", b"[]"), ("/pipeline", b'["GET"]'),
     ("/multi-exec", b"[[]]"), ("/", b'["SET", "k", NaN]')],
)  # fmt: skip
async def test_malformed_bodies_are_400_json(http: httpx.AsyncClient, path: str, content: bytes) -> None:
    response = await http.post(path, content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert list(response.json()) == ["error"] and response.json()["error"].startswith("ERR ")


async def test_error_shapes_and_statuses(http: httpx.AsyncClient, gateway: ThreadGateway, tag: str) -> None:
    unauthorized = await http.post("/", json=["PING"], headers={"Authorization": "Bearer wrong"})
    assert (unauthorized.status_code, unauthorized.json()) == (401, {"error": "Unauthorized"})
    await http.post("/", json=["SET", tag, "text"])
    wrongtype = await http.post("/", json=["LPUSH", tag, "x"])
    assert wrongtype.status_code == 400 and wrongtype.json()["error"].startswith("WRONGTYPE ")
    refused = await http.post("/", json=["BLPOP", tag, "0"])
    assert refused.status_code == 400 and "not available" in refused.json()["error"]
    too_big = await http.post("/", json=["GET", "k" * 40000])
    assert too_big.json()["error"].startswith("ERR max key size exceeded")


async def test_read_your_writes_sync_tokens(http: httpx.AsyncClient, tag: str) -> None:
    """Every reply carries a fresh, increasing Upstash-Sync-Token; a request that sends the last one reads
    what was written before it (one gateway is always consistent with itself)."""
    written = await http.post("/", json=["SET", tag, "mine"])
    token = written.headers["Upstash-Sync-Token"]
    read = await http.post("/", json=["GET", tag], headers={"Upstash-Sync-Token": token})
    assert read.json() == {"result": "mine"}
    assert read.headers["Upstash-Sync-Token"] > token
    failed = await http.post("/", json=[])
    assert failed.headers["Upstash-Sync-Token"] > read.headers["Upstash-Sync-Token"]
