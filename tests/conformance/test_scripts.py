"""Scripts under Upstash's locking rules: shebang flags accepted, undeclared keys refused under
`allow-key-locking`, the global-lock count, read-only scripts, the client's own SHA. All three backends."""

from __future__ import annotations

import hashlib

import httpx
import pytest
from upstash_redis.asyncio import Redis as AsyncRedis
from upstash_redis.errors import UpstashError

from tests.support.gateway import ThreadGateway

LOCKING = "#!lua flags=allow-key-locking\n"
READ_LOCKING = "#!lua flags=no-writes,allow-key-locking\n"
DYNAMIC = "ERR Dynamic keys are not allowed with allow-key-locking"


def sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


async def test_flagged_scripts_run(http: httpx.AsyncClient, tag: str) -> None:
    script = LOCKING + "redis.call('SET', KEYS[1], ARGV[1])\nreturn redis.call('GET', KEYS[1])"
    assert (await http.post("/", json=["EVAL", script, 1, tag, "v"])).json() == {"result": "v"}
    script = READ_LOCKING + "return redis.call('GET', KEYS[1])"
    assert (await http.post("/", json=["EVAL", script, 1, tag])).json() == {"result": "v"}
    assert (await http.post("/", json=["EVAL_RO", script, 1, tag])).json() == {"result": "v"}


@pytest.mark.parametrize(
    ("call", "touched"),
    [
        ("redis.call('GET', 'outside')", "GET touches '{t}outside'"),
        ("redis.call('MSET', KEYS[1], 1, KEYS[1] .. 'x', 2)", "MSET touches '{t}x'"),
        ("redis.call('ZUNIONSTORE', KEYS[1], 2, KEYS[1], KEYS[1] .. 'z')", "ZUNIONSTORE touches '{t}z'"),
        ("redis.call('XREAD', 'STREAMS', KEYS[1], KEYS[1] .. 's', 0, 0)", "XREAD touches '{t}s'"),
        ("redis.call('OBJECT', 'ENCODING', KEYS[1] .. 'o')", "OBJECT touches '{t}o'"),
        ("redis.call('SORT', KEYS[1], 'STORE', KEYS[1] .. 'd')", "SORT touches '{t}d'"),
        ("redis.call('RENAME', KEYS[1], KEYS[1] .. 'r')", "RENAME touches '{t}r'"),
    ],
)
async def test_undeclared_key_is_refused(http: httpx.AsyncClient, tag: str, call: str, touched: str) -> None:
    # Every key shares the declared key's hash tag, so on the cluster the refusal is the gateway's own.
    script = LOCKING + "redis.call('SET', KEYS[1], 1)\n" + call.replace("'outside'", "KEYS[1] .. 'outside'")
    response = await http.post("/", json=["EVAL", script, 1, tag + "t"])
    assert response.status_code == 400
    error = response.json()["error"]
    assert error.startswith(DYNAMIC), error
    assert touched.replace("{t}", tag + "t") in error
    assert (await http.post("/", json=["EXISTS", tag + "t"])).json() == {"result": 1}  # Redis semantics


async def test_pcall_returns_the_refusal(http: httpx.AsyncClient, tag: str) -> None:
    script = LOCKING + "local r = redis.pcall('GET', KEYS[1] .. 'x')\nreturn r['err']"
    reply = (await http.post("/", json=["EVAL", script, 1, tag])).json()
    assert reply["result"].startswith(DYNAMIC)


async def test_database_wide_commands_are_refused(http: httpx.AsyncClient) -> None:
    response = await http.post("/", json=["EVAL", LOCKING + "return redis.call('FLUSHDB')", 0])
    assert response.status_code == 400
    assert response.json()["error"].startswith(
        "ERR FLUSHDB is not allowed in a script with allow-key-locking"
    )


async def test_declared_keys_and_keyless_commands_pass(http: httpx.AsyncClient, tag: str) -> None:
    script = LOCKING + (
        "redis.call('MSET', KEYS[1], 1, KEYS[2], 2)\n"
        "local t = redis.call('TIME')\n"
        "return redis.call('MGET', KEYS[1], KEYS[2])"
    )
    reply = await http.post("/", json=["EVAL", script, 2, tag + "a", tag + "b"])
    assert reply.json() == {"result": ["1", "2"]}


async def test_without_the_flag_any_key_may_be_touched(http: httpx.AsyncClient, tag: str) -> None:
    script = "redis.call('SET', KEYS[1] .. 'built', 1)\nreturn redis.call('GET', KEYS[1] .. 'built')"
    assert (await http.post("/", json=["EVAL", script, 1, tag])).json() == {"result": "1"}


async def test_read_only_scripts_refuse_writes(http: httpx.AsyncClient, tag: str) -> None:
    response = await http.post(
        "/", json=["EVAL", READ_LOCKING + "return redis.call('SET', KEYS[1], 1)", 1, tag]
    )
    assert response.json()["error"].startswith("ERR Write commands are not allowed from read-only scripts.")
    response = await http.post("/", json=["EVAL_RO", "return redis.call('SET', KEYS[1], 1)", 1, tag])
    assert response.json()["error"].startswith("ERR Write commands are not allowed from read-only scripts.")
    response = await http.post("/", json=["EVAL_RO", LOCKING + "return 1", 1, tag])
    assert response.json()["error"] == "ERR Can not execute a script with write flag using *_ro command."


async def test_unknown_flags_are_refused_as_redis_does(http: httpx.AsyncClient) -> None:
    response = await http.post("/", json=["EVAL", "#!lua flags=allow-key-locking,no-such\nreturn 1", 0])
    assert response.json()["error"] == "ERR Unexpected flag in script shebang: no-such"


async def test_the_client_keeps_its_own_sha(gateway: ThreadGateway, tag: str) -> None:
    sdk = AsyncRedis(gateway.url, gateway.token, rest_retries=0, allow_telemetry=False)
    script = LOCKING + "return redis.call('INCR', KEYS[1])"
    try:
        assert await sdk.script_load(script) == sha1(script)
        assert await sdk.script_exists(sha1(script)) == [True]
        assert await sdk.evalsha(sha1(script), [tag]) == 1
        assert await sdk.eval(script, [tag]) == 2
        read = READ_LOCKING + "return redis.call('GET', KEYS[1])"
        await sdk.script_load(read)
        assert await sdk.evalsha_ro(sha1(read), [tag]) == "2"
        failing = LOCKING + "return redis.call('GET', KEYS[1] .. 'x')"
        with pytest.raises(UpstashError, match=DYNAMIC) as caught:
            await sdk.eval(failing, [tag])
        if gateway.backend != "embedded":  # Redis names the script in its error: by the client's SHA
            assert f"script: {sha1(failing)}," in str(caught.value)
    finally:
        await sdk.close()


async def test_global_lock_scripts_are_counted(
    http: httpx.AsyncClient, gateway: ThreadGateway, tag: str
) -> None:
    gateway.reset_commands()
    plain = "return redis.call('GET', KEYS[1])"
    await http.post("/", json=["EVAL", LOCKING + plain, 1, tag])
    await http.post("/", json=["EVAL_RO", READ_LOCKING + plain, 1, tag])
    assert gateway.counts() == {"commands": 2, "global_lock_scripts": 0}
    await http.post("/", json=["EVAL", plain, 1, tag])
    await http.post("/", json=["EVAL_RO", plain, 1, tag])
    await http.post("/", json=["EVALSHA", "0" * 40, 1, tag])  # NOSCRIPT: nothing ran, nothing counted
    assert gateway.global_lock_scripts() == 2
    # Upstash runs a script queued in a transaction under the global lock, whatever its flags.
    await http.post("/multi-exec", json=[["EVAL", LOCKING + plain, 1, tag], ["GET", tag]])
    assert gateway.global_lock_scripts() == 3
    gateway.reset_commands()
    assert gateway.counts() == {"commands": 0, "global_lock_scripts": 0}
