"""Backend failures are Upstash-shaped JSON errors with a status, never a bare 500, and a failure inside a
transaction never leaves it half applied or the connection inside MULTI."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

import httpx
import pytest

from infra.local.backends import BackendFailedError
from infra.local.rest_gateway import create_app
from tests.support.gateway import ThreadGateway, free_port

BAD_JSON_SCRIPT = "return cjson.decode('[')"  # fakeredis raised a Python exception out of this one


def post(gateway: ThreadGateway, body: object, path: str = "/") -> httpx.Response:
    return httpx.post(gateway.url + path, json=body, headers=gateway.auth, timeout=10)


def test_a_backend_defect_is_an_error_reply(gateway: ThreadGateway) -> None:
    response = post(gateway, ["EVAL", BAD_JSON_SCRIPT, 0])
    assert response.status_code == 400
    assert response.json()["error"].startswith("ERR ")


def test_a_defect_inside_a_transaction_is_that_entry(every_gateway: ThreadGateway, unique_name: str) -> None:
    # Not strict: a script inside a transaction takes Upstash's global lock, which strict mode refuses.
    commands = [["SET", unique_name, "1"], ["EVAL", BAD_JSON_SCRIPT, 0], ["INCR", unique_name]]
    replies = post(every_gateway, commands, "/multi-exec").json()
    assert replies[0] == {"result": "OK"} and replies[2] == {"result": 2}
    assert replies[1]["error"].startswith("ERR ")
    # The next request runs at once, not queued in a transaction left open.
    assert post(every_gateway, ["GET", unique_name]).json() == {"result": "2"}


class FakeServer:
    """A TCP server that answers every request with `reply` (then closes if `close`): faults a real
    Redis does not produce on demand."""

    def __init__(self, reply: bytes, close: bool) -> None:
        self.reply, self.close = reply, close
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while await reader.read(65536):
                writer.write(self.reply)
                await writer.drain()
                if self.close:
                    break
        writer.close()

    def __enter__(self) -> FakeServer:
        self.thread.start()
        future = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self.handle, "127.0.0.1", self.port), self.loop
        )
        self.server = future.result(timeout=5)
        return self

    def __exit__(self, *_: object) -> None:
        async def shut() -> None:
            self.server.close()
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(shut(), self.loop).result(timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()


@pytest.fixture
def garbage_redis() -> Iterator[FakeServer]:
    with FakeServer(b"?not resp\r\n", close=False) as server:
        yield server


@pytest.fixture
def dropping_redis() -> Iterator[FakeServer]:
    with FakeServer(b"+OK\r\n", close=True) as server:  # MULTI's reply, then the connection drops
        yield server


@pytest.mark.parametrize("path", ["/", "/pipeline", "/multi-exec"])
def test_a_reply_that_is_not_resp_is_502(garbage_redis: FakeServer, path: str) -> None:
    with ThreadGateway(f"redis://127.0.0.1:{garbage_redis.port}/0") as gateway:
        response = post(gateway, ["GET", "k"] if path == "/" else [["GET", "k"]], path)
        assert response.status_code == 502
        assert response.json()["error"].startswith("ERR Redis backend failed: ")


def test_a_connection_dropped_inside_a_transaction_is_503(dropping_redis: FakeServer) -> None:
    with ThreadGateway(f"redis://127.0.0.1:{dropping_redis.port}/0") as gateway:
        response = post(gateway, [["SET", "a", "1"], ["SET", "b", "2"]], "/multi-exec")
        assert response.status_code == 503
        assert response.json()["error"].startswith("ERR Redis backend unavailable: ")


async def test_a_gateway_defect_is_a_json_500() -> None:
    app = create_app("t")
    gateway = app.state.gateway

    async def broken(*_: object) -> None:
        raise RuntimeError("boom")

    gateway.backend.execute = broken
    gateway.backend.pipeline = broken
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        auth = {"Authorization": "Bearer t"}
        response = await client.post("/", json=["GET", "k"], headers=auth)
        assert response.status_code == 500
        assert response.json() == {"error": "ERR gateway error: RuntimeError: boom"}
        assert "Upstash-Sync-Token" in response.headers

        async def failed(*_: object) -> None:
            raise BackendFailedError("InvalidResponse: bad")

        gateway.backend.pipeline = failed
        response = await client.post("/pipeline", json=[["GET", "k"]], headers=auth)
        assert (response.status_code, response.json()) == (
            502,
            {"error": "ERR Redis backend failed: InvalidResponse: bad"},
        )
    await gateway.close()
