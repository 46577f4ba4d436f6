"""The command counter, billing measured by Redis itself, SCRIPT FLUSH, and recovery when Redis goes away.

Tests that flush scripts or need an exact server-wide count run on a private redis-server on a spare port,
so they neither disturb nor are disturbed by other tests sharing the default Redis.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from upstash_redis.asyncio import Redis as AsyncRedis
from upstash_redis.errors import UpstashError

from tests.support.billing import measure_billed
from tests.support.gateway import GatewayProcess, ThreadGateway, free_port, wait_until
from tests.support.gateway_fixtures import require_real_redis


class PrivateRedis:
    """A throwaway redis-server on a fixed spare port, restartable."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        probe = redis.Redis(port=self.port, socket_connect_timeout=0.5)

        def answers() -> bool:
            try:
                return bool(probe.ping())
            except redis.ConnectionError:
                return False

        wait_until(answers, "private redis-server")
        probe.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    require_real_redis()  # same rule as the real-Redis params: skip locally, fail in CI
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed")
    server = PrivateRedis()
    server.start()
    yield server
    server.stop()


def post(gateway: Any, path: str, body: Any) -> httpx.Response:
    return httpx.post(gateway.url + path, json=body, headers=gateway.auth, timeout=10)


def test_counter_counts_like_upstash_bills(gateway: ThreadGateway, unique_name: str) -> None:
    gateway.reset_commands()
    assert gateway.command_count() == 0
    for i in range(5):
        post(gateway, "/", ["SET", f"{unique_name}:{i}", i])
    assert gateway.command_count() == 5
    post(gateway, "/", ["PING"])
    post(
        gateway,
        "/pipeline",
        [["GET", unique_name], ["PING"], ["INCR", unique_name], ["LPUSH", unique_name, 1]],
    )
    assert gateway.command_count() == 5 + 3  # each entry but PING; an entry's error still counts
    post(gateway, "/multi-exec", [["INCR", unique_name], ["GET", unique_name]])
    assert gateway.command_count() == 10
    post(gateway, "/", ["BLPOP", unique_name, 0])  # refused: never sent
    post(gateway, "/", [])  # malformed
    httpx.post(gateway.url, json=["GET", "x"], headers={"Authorization": "Bearer wrong"})
    assert gateway.command_count() == 10
    gateway.reset_commands()
    assert gateway.command_count() == 0


def test_counter_route_needs_the_token(gateway: ThreadGateway) -> None:
    assert httpx.get(gateway.url + "/_jobq/commands").status_code == 401
    assert httpx.post(gateway.url + "/_jobq/commands/reset").status_code == 401


async def test_counter_through_the_sdk(gateway: ThreadGateway, rest: AsyncRedis, unique_name: str) -> None:
    gateway.reset_commands()
    await rest.set(unique_name, "1")
    await rest.ping()
    pipe = rest.pipeline()
    for _ in range(7):
        pipe.incr(unique_name)
    await pipe.exec()
    assert gateway.command_count() == 8


def test_billed_commands_match_redis_commandstats(private_redis: PrivateRedis) -> None:
    with ThreadGateway(private_redis.url) as gateway:
        with measure_billed(private_redis.url) as nothing:
            pass
        assert nothing.count == 0
        with measure_billed(private_redis.url) as billed:
            post(
                gateway, "/", ["SET", "a", "1"]
            )  # the gateway's first connection opens in here: adds nothing
            post(gateway, "/pipeline", [["INCR", "a"], ["GET", "a"], ["DEL", "a"]])
        assert billed.count == 4 == gateway.command_count()
        with measure_billed(private_redis.url) as scripted:
            post(
                gateway,
                "/",
                ["EVAL", "redis.call('SET', KEYS[1], 1) return redis.call('GET', KEYS[1])", 1, "b"],
            )
        assert scripted.count == 3  # EVAL + its two redis.calls
        with measure_billed(private_redis.url) as transaction:
            post(gateway, "/multi-exec", [["SET", "c", "1"], ["GET", "c"]])
        assert transaction.count == 4  # MULTI, SET, GET, EXEC on the server; Upstash bills 2


async def test_billed_async_form(private_redis: PrivateRedis) -> None:
    client = redis.asyncio.Redis.from_url(private_redis.url)
    await client.ping()  # connect first: the handshake's own commands would count too
    async with measure_billed(private_redis.url) as billed:
        await client.set("x", "1")
        await client.get("x")
    await client.aclose()
    assert billed.count == 2


@pytest.mark.parametrize("backend", ["redis", "embedded"])
async def test_8_script_flush(backend: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("private_redis").url if backend == "redis" else None
    with ThreadGateway(url) as gateway:
        sdk = AsyncRedis(gateway.url, gateway.token, rest_retries=0, allow_telemetry=False)
        sha = await sdk.script_load("return 7")
        assert await sdk.evalsha(sha) == 7
        assert await sdk.script_flush() is True
        assert await sdk.script_exists(sha) == [False]
        with pytest.raises(UpstashError, match=r"^NOSCRIPT"):
            await sdk.evalsha(sha)
        await sdk.close()


def test_backend_down_is_503_then_recovers(private_redis: PrivateRedis) -> None:
    with ThreadGateway(private_redis.url) as gateway:
        assert post(gateway, "/", ["SET", "k", "v"]).json() == {"result": "OK"}
        private_redis.stop()
        for path, body in (
            ("/", ["GET", "k"]),
            ("/pipeline", [["GET", "k"]]),
            ("/multi-exec", [["GET", "k"]]),
        ):
            response = post(gateway, path, body)
            assert response.status_code == 503
            assert response.json()["error"].startswith("ERR Redis backend unavailable")
        private_redis.start()  # same port, empty database
        assert post(gateway, "/", ["GET", "k"]).json() == {"result": None}
        assert post(gateway, "/pipeline", [["SET", "k", "2"], ["GET", "k"]]).json() == [
            {"result": "OK"},
            {"result": "2"},
        ]


def test_closed_port_is_503_and_the_gateway_stays_up() -> None:
    with ThreadGateway(f"redis://127.0.0.1:{free_port()}/0") as gateway:
        response = post(gateway, "/", ["GET", "k"])
        assert response.status_code == 503 and "unavailable" in response.json()["error"]
        assert gateway.thread_alive()


def test_subprocess_gateway_restarts_on_the_same_url(private_redis: PrivateRedis) -> None:
    process = GatewayProcess(private_redis.url)
    with process:
        assert post(process, "/", ["SET", "k", "kept"]).json() == {"result": "OK"}
    assert not process.answers()
    with process:
        assert post(process, "/", ["GET", "k"]).json() == {"result": "kept"}
        assert process.command_count() == 1  # a fresh process starts its count at zero


def test_subprocess_gateway_embedded_by_default() -> None:
    with GatewayProcess(None) as process:
        assert post(process, "/", ["ECHO", "embedded"]).json() == {"result": "embedded"}
