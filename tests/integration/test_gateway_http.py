"""What the SDK hides: status codes, raw JSON and base64 bodies, headers. Direct httpx, all three backends."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

from tests.support.gateway import ThreadGateway


@pytest.fixture(scope="session")
def gateway(every_gateway: ThreadGateway) -> ThreadGateway:
    """These tests run on all three backends: embedded, Redis and Redis Cluster."""
    return every_gateway


def b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


async def test_1_single_command_body_and_status(http: httpx.AsyncClient, unique_name: str) -> None:
    response = await http.post("/", json=["set", unique_name, "v"])
    assert (response.status_code, response.json()) == (200, {"result": "OK"})
    response = await http.post("/", json=["HSET", unique_name + "h", "f", "1"])
    assert (await http.post("/", json=["hgetall", unique_name + "h"])).json() == {"result": ["f", "1"]}
    assert (await http.post("/", json=["GET", unique_name + ":none"])).json() == {"result": None}


async def test_1_redis_error_is_400_with_prefix(http: httpx.AsyncClient, unique_name: str) -> None:
    await http.post("/", json=["SET", unique_name, "text"])
    response = await http.post("/", json=["LPUSH", unique_name, "x"])
    assert response.status_code == 400
    assert response.json()["error"].startswith("WRONGTYPE ")
    response = await http.post("/", json=["INCR", unique_name])
    assert response.json() == {"error": "ERR value is not an integer or out of range"}


async def test_2_pipeline_raw_body(http: httpx.AsyncClient, unique_name: str) -> None:
    commands = [
        ["SET", unique_name, "a"],
        ["INCR", unique_name],
        ["APPEND", unique_name, "b"],
        ["GET", unique_name],
    ]
    response = await http.post("/pipeline", json=commands)
    assert response.status_code == 200
    assert response.json() == [
        {"result": "OK"},
        {"error": "ERR value is not an integer or out of range"},
        {"result": 2},
        {"result": "ab"},
    ]


async def test_3_multi_exec_raw_bodies(http: httpx.AsyncClient, unique_name: str) -> None:
    response = await http.post("/multi-exec", json=[["SET", unique_name, "1"], ["INCR", unique_name]])
    assert (response.status_code, response.json()) == (200, [{"result": "OK"}, {"result": 2}])
    response = await http.post("/multi-exec", json=[["SET", unique_name, "9"], ["NOSUCH", "x"]])
    assert response.status_code == 400
    body = response.json()
    assert list(body) == ["error"] and "unknown command" in body["error"]
    assert (await http.post("/", json=["GET", unique_name])).json() == {"result": "2"}  # nothing ran
    response = await http.post("/multi-exec", json=[["SET", unique_name, "9"], ["BLPOP", "k", "0"]])
    assert response.status_code == 400 and "not available" in response.json()["error"]
    assert (await http.post("/", json=["GET", unique_name])).json() == {"result": "2"}


@pytest.mark.parametrize("path", ["/", "/pipeline", "/multi-exec"])
@pytest.mark.parametrize("authorization", [None, "Bearer wrong", "Basic abc", "Bearer", "Bearerx"])
def test_4_missing_or_wrong_token_is_401(
    gateway: ThreadGateway, path: str, authorization: str | None, unique_name: str
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    body: Any = ["SET", unique_name, "x"] if path == "/" else [["SET", unique_name, "x"]]
    response = httpx.post(gateway.url + path, json=body, headers=headers)
    assert response.status_code == 401
    assert isinstance(response.json()["error"], str)
    assert gateway.answers()


def test_4_token_scheme_is_case_insensitive(gateway: ThreadGateway) -> None:
    response = httpx.post(gateway.url, json=["PING"], headers={"Authorization": f"bearer {gateway.token}"})
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("path", "content"),
    [
        ("/", b"{not json"),
        ("/", b""),
        ("/", b'{"cmd": "GET"}'),
        ("/", b'"GET"'),
        ("/", b"[]"),
        ("/", b"\xff\xfe"),
        ("/pipeline", b"[]"),
        ("/pipeline", b'["GET", "k"]'),
        ("/pipeline", b"[[]]"),
        ("/pipeline", b'{"a": 1}'),
        ("/multi-exec", b"[]"),
        ("/multi-exec", b'[["GET"], 5]'),
    ],
)
async def test_5_malformed_bodies_are_400(http: httpx.AsyncClient, path: str, content: bytes) -> None:
    response = await http.post(path, content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"].startswith("ERR ")


async def test_6_base64_encoding_recursive_except_ok(http: httpx.AsyncClient, unique_name: str) -> None:
    encoded = {"Upstash-Encoding": "base64"}
    response = await http.post("/", json=["SET", unique_name, "héllo"], headers=encoded)
    assert response.json() == {"result": "OK"}
    response = await http.post("/", json=["GET", unique_name], headers=encoded)
    assert response.json() == {"result": b64("héllo")}
    await http.post("/", json=["RPUSH", unique_name + "l", "a", "OK", "b"])
    response = await http.post("/", json=["LRANGE", unique_name + "l", 0, -1], headers=encoded)
    assert response.json() == {"result": [b64("a"), "OK", b64("b")]}
    response = await http.post("/", json=["EVAL", "return {1, 'x', {2, 'y'}}", 0], headers=encoded)
    assert response.json() == {"result": [1, b64("x"), [2, b64("y")]]}
    response = await http.post("/", json=["GET", unique_name + ":none"], headers=encoded)
    assert response.json() == {"result": None}
    response = await http.post("/", json=["LPUSH", unique_name, "x"], headers=encoded)
    assert response.json()["error"].startswith("WRONGTYPE Operation")  # errors stay plain text
    response = await http.post("/pipeline", json=[["INCR", unique_name + "n"], ["PING"]], headers=encoded)
    assert response.json() == [{"result": 1}, {"result": b64("PONG")}]


async def test_6_binary_values_round_trip_byte_exact(http: httpx.AsyncClient, unique_name: str) -> None:
    raw = bytes(range(256))
    script = (
        "local s = '' for i = 0, 255 do s = s .. string.char(i) end redis.call('SET', KEYS[1], s) return 1"
    )
    assert (await http.post("/", json=["EVAL", script, 1, unique_name])).json() == {"result": 1}
    response = await http.post("/", json=["GET", unique_name], headers={"Upstash-Encoding": "base64"})
    assert base64.b64decode(response.json()["result"]) == raw
    assert (await http.post("/", json=["STRLEN", unique_name])).json() == {"result": 256}


async def test_6_without_header_strings_are_plain(http: httpx.AsyncClient, unique_name: str) -> None:
    await http.post("/", json=["SET", unique_name, "plain ✓"])
    assert (await http.post("/", json=["GET", unique_name])).json() == {"result": "plain ✓"}


async def test_7_numbers_are_decimal_text(http: httpx.AsyncClient, unique_name: str) -> None:
    await http.post("/", json=["SET", unique_name, 123456789012345678])
    assert (await http.post("/", json=["GET", unique_name])).json() == {"result": "123456789012345678"}
    await http.post("/", json=["SET", unique_name, 2.5])
    assert (await http.post("/", json=["GET", unique_name])).json() == {"result": "2.5"}
    assert (await http.post("/", json=["EXPIRE", unique_name, 100])).json() == {"result": 1}


async def test_7_booleans_are_their_json_text(http: httpx.AsyncClient, unique_name: str) -> None:
    assert (await http.post("/", json=["SET", unique_name, True])).json() == {"result": "OK"}
    assert (await http.post("/", json=["GET", unique_name])).json() == {"result": "true"}
    await http.post("/", json=["SET", unique_name, False])
    assert (await http.post("/", json=["GET", unique_name])).json() == {"result": "false"}


async def test_7_numbers_keep_the_text_sent(http: httpx.AsyncClient, unique_name: str) -> None:
    body = b'["SET", "%s", 1e20]' % unique_name.encode()
    await http.post("/", content=body, headers={"Content-Type": "application/json"})
    assert (await http.post("/", json=["GET", unique_name])).json() == {"result": "1e20"}


@pytest.mark.parametrize("bad", [None, {"a": 1}, ["x"]])
async def test_7_objects_arrays_null_are_400(
    http: httpx.AsyncClient, gateway: ThreadGateway, unique_name: str, bad: Any
) -> None:
    gateway.reset_commands()
    response = await http.post("/", json=["SET", unique_name, bad])
    assert response.status_code == 400
    assert "argument 2" in response.json()["error"]
    response = await http.post("/pipeline", json=[["SET", unique_name, "ok"], ["SET", unique_name, bad]])
    assert response.status_code == 400
    assert (await http.post("/", json=["EXISTS", unique_name])).json() == {"result": 0}
    assert gateway.command_count() == 1  # only the EXISTS


async def test_7_nan_and_infinity_are_not_json(http: httpx.AsyncClient, unique_name: str) -> None:
    for literal in (b"NaN", b"Infinity", b"-Infinity"):
        body = b'["SET", "%s", %s]' % (unique_name.encode(), literal)
        response = await http.post("/", content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 400 and "invalid JSON" in response.json()["error"]


async def test_9_refused_is_400_and_never_sent(http: httpx.AsyncClient, gateway: ThreadGateway) -> None:
    gateway.reset_commands()
    response = await http.post("/", json=["blpop", "k", "0"])
    assert response.status_code == 400
    assert response.json()["error"].startswith("ERR Command is not available: 'BLPOP'")
    response = await http.post("/pipeline", json=[["GET", "k"], ["xread", "block", "0", "streams", "k", "$"]])
    assert response.status_code == 400
    assert gateway.command_count() == 0


async def test_10_sync_token_on_every_response_increasing(http: httpx.AsyncClient) -> None:
    tokens = []
    for headers in ({}, {"Upstash-Sync-Token": ""}, {"Upstash-Sync-Token": "whatever-1"}):
        response = await http.post("/", json=["PING"], headers=headers)
        assert response.status_code == 200
        tokens.append(response.headers["Upstash-Sync-Token"])
    tokens.append((await http.post("/pipeline", json=[["PING"]])).headers["Upstash-Sync-Token"])
    tokens.append((await http.post("/", json=[])).headers["Upstash-Sync-Token"])  # 400s carry one too
    unauthorized = await http.post("/", json=["PING"], headers={"Authorization": "Bearer wrong"})
    assert unauthorized.status_code == 401
    tokens.append(unauthorized.headers["Upstash-Sync-Token"])
    assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens)


async def test_10_telemetry_headers_are_accepted(http: httpx.AsyncClient) -> None:
    headers = {
        "Upstash-Telemetry-Sdk": "py-upstash-redis@v1",
        "Upstash-Telemetry-Runtime": "python@v3.11",
        "Upstash-Telemetry-Platform": "unknown",
        "Upstash-Telemetry-Retry": "1",
    }
    response = await http.post("/", json=["ECHO", "hi"], headers=headers)
    assert response.json() == {"result": "hi"}


async def test_11_request_body_over_10mb(
    http: httpx.AsyncClient, gateway: ThreadGateway, unique_name: str
) -> None:
    gateway.reset_commands()
    value = "x" * (10 * 1024 * 1024)
    response = await http.post("/", json=["SET", unique_name, value])
    assert response.status_code == 413
    assert response.json() == {"error": "ERR max request size exceeded"}
    assert gateway.command_count() == 0
    response = await http.post("/", json=["SET", unique_name, value[: 10 * 1024 * 1024 - 100]])
    assert response.json() == {"result": "OK"}
    await http.post("/", json=["DEL", unique_name])


async def test_11_key_over_32kb(http: httpx.AsyncClient) -> None:
    response = await http.post("/", json=["GET", "k" * 40000])
    assert response.status_code == 400
    assert response.json() == {"error": "ERR max key size exceeded. Limit: 32768 bytes, Actual: 40000 bytes"}
    script_keys = ["EVAL", "return 1", 2, "short", "k" * 32769]
    assert (await http.post("/", json=script_keys)).status_code == 400
    assert (await http.post("/", json=["EVAL", "return 1", 0, "k" * 40000])).json() == {
        "result": 1
    }  # an ARGV


async def test_unknown_path_and_method(http: httpx.AsyncClient) -> None:
    assert (await http.post("/nope", json=["PING"])).status_code == 404
    assert (await http.get("/")).status_code == 405


async def test_concurrent_requests(http: httpx.AsyncClient, unique_name: str) -> None:
    import asyncio

    replies = await asyncio.gather(*(http.post("/", json=["INCR", unique_name]) for _ in range(100)))
    assert sorted(r.json()["result"] for r in replies) == list(range(1, 101))
