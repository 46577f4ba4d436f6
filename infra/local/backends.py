"""Where the gateway's commands run: a Redis server by URL, or an embedded fakeredis server in a thread.

Both are reached the same way, over RESP2 with redis-py's connection pool, reading raw replies: no response
callbacks reshape them (HGETALL stays a flat list), and error replies keep Redis's own prefix (ERR, NOSCRIPT,
WRONGTYPE, ...), which redis-py's stock parser strips.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fakeredis import FakeServer
from fakeredis._helpers import SimpleError
from fakeredis._socket import FakeSocket
from redis import Redis
from redis._parsers.resp2 import _AsyncRESP2Parser
from redis.asyncio import BlockingConnectionPool
from redis.asyncio.connection import Connection
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

Reply = Any  # bytes | int | None | list[Reply] | ResponseError (inside EXEC replies)
BACKEND_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)


class BackendUnavailableError(Exception):
    """Redis could not be reached or dropped the connection; the request may be retried."""


class RawErrorParser(_AsyncRESP2Parser):
    """RESP2 parser that keeps an error reply's full text, prefix included."""

    @classmethod
    def parse_error(cls, response: str) -> ResponseError | RedisConnectionError:
        parsed = super().parse_error(response)  # type: ignore[no-untyped-call]
        if isinstance(parsed, RedisConnectionError):
            return parsed  # "max number of clients reached" and friends: a connection problem
        return ResponseError(response)


class Backend:
    """Runs batches of commands on one connection; subclasses provide `_run` and `close`."""

    async def close(self) -> None:
        raise NotImplementedError

    async def _run(self, commands: list[list[bytes]]) -> list[Reply]:
        raise NotImplementedError

    async def execute(self, command: list[bytes]) -> Reply:
        replies = await self._run([command])
        reply = replies[0]
        if isinstance(reply, ResponseError):
            raise reply
        return reply

    async def pipeline(self, commands: list[list[bytes]]) -> list[Reply]:
        """Every reply in order; an error reply is returned as a ResponseError and does not stop the rest."""
        return await self._run(commands)

    async def transaction(self, commands: list[list[bytes]]) -> list[Reply]:
        """MULTI, commands, EXEC on one connection; raises the queue-time error if Redis refused one."""
        replies = await self._run([[b"MULTI"], *commands, [b"EXEC"]])
        queued, exec_reply = replies[1:-1], replies[-1]
        for reply in queued:
            if isinstance(reply, ResponseError):
                raise reply
        if isinstance(exec_reply, ResponseError):
            raise exec_reply
        if not isinstance(exec_reply, list):
            raise ResponseError("EXECABORT Transaction discarded")
        return exec_reply


class RedisBackend(Backend):
    """A pool of RESP2 connections to one Redis server; each call holds one connection for its duration."""

    def __init__(self, url: str, *, max_connections: int = 64, timeout: float = 30.0) -> None:
        self.url = url
        self.pool = BlockingConnectionPool.from_url(
            url,
            protocol=2,
            parser_class=RawErrorParser,
            max_connections=max_connections,
            timeout=timeout,
            socket_connect_timeout=2.0,
            socket_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            driver_info=None,  # no CLIENT SETINFO on connect: it would show up in INFO commandstats
        )

    async def close(self) -> None:
        await self.pool.disconnect()

    async def _run(self, commands: list[list[bytes]]) -> list[Reply]:
        try:
            connection: Connection = await self.pool.get_connection()  # type: ignore[no-untyped-call]
        except BACKEND_DOWN as exc:
            raise BackendUnavailableError(f"{type(exc).__name__}: {exc}") from exc
        try:
            await connection.send_packed_command(connection.pack_commands(commands), check_health=False)
            replies: list[Reply] = []
            for _ in commands:
                try:
                    replies.append(await connection.read_response(disable_decoding=True))
                except ResponseError as error:
                    replies.append(error)
        except BACKEND_DOWN as exc:
            await connection.disconnect()
            raise BackendUnavailableError(f"{type(exc).__name__}: {exc}") from exc
        except BaseException:
            # Cancelled or failed half-way: replies may still be in flight, so drop the connection.
            await connection.disconnect()
            raise
        finally:
            await self.pool.release(connection)
        return replies


class _RawFakeSocket(FakeSocket):
    """fakeredis's in-memory connection, handing back error replies with their full text."""

    def _decode_error(self, error: SimpleError) -> ResponseError:
        return ResponseError(error.value)


def _normalise(reply: Any) -> Reply:
    """fakeredis's Python values as the raw RESP2 shapes a real server's replies parse to."""
    if isinstance(reply, bool):
        return int(reply)
    if isinstance(reply, str):
        return reply.encode()
    if isinstance(reply, float):
        return repr(reply).encode()
    if isinstance(reply, (list, tuple, set)):
        return [_normalise(item) for item in reply]
    return reply


class EmbeddedBackend(Backend):
    """fakeredis (with Lua) in this process: one fake connection, driven from one worker thread.

    One thread keeps the event loop free while a script runs, and runs each batch whole, so a MULTI ... EXEC
    never interleaves with another request's commands.
    """

    def __init__(self) -> None:
        self.server = FakeServer()
        self.socket = _RawFakeSocket(self.server, db=0, client_class=Redis)
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jobq-embedded-redis")

    async def close(self) -> None:
        self.worker.shutdown(wait=False)

    async def _run(self, commands: list[list[bytes]]) -> list[Reply]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.worker, self._run_sync, commands)

    def _run_sync(self, commands: list[list[bytes]]) -> list[Reply]:
        replies: list[Reply] = []
        responses = self.socket.responses
        assert responses is not None  # only None once the socket is closed
        for command in commands:
            self.socket._process_command(command)
            replies.append(_normalise(responses.get_nowait()))
        return replies
