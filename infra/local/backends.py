"""Where the gateway's commands run: the `Backend` contract, and a Redis server by URL.

Replies are raw RESP2 (redis-py's connection pool, no response callbacks: HGETALL stays a flat list), and
error replies keep Redis's own prefix (ERR, NOSCRIPT, WRONGTYPE, ...), which redis-py's stock parser strips.
The embedded backend (embedded.py) and the cluster backend (cluster.py) give the same shapes.
"""

from __future__ import annotations

from typing import Any

from redis._parsers.resp2 import _AsyncRESP2Parser
from redis.asyncio import BlockingConnectionPool
from redis.asyncio.connection import Connection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from infra.local.keyguard import RedisScripts, Wrapped
from infra.local.keyspecs import KeySpecs, text_from_command_reply
from infra.local.protocol import Command
from infra.local.scripts import ScriptRegistry

Reply = Any  # bytes | int | None | list[Reply] | ResponseError (inside EXEC replies)
BACKEND_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)


class BackendUnavailableError(Exception):
    """Redis could not be reached or dropped the connection; the request may be retried."""


class BackendFailedError(Exception):
    """Redis answered something the gateway cannot read (a protocol error): a 502, the connection dropped."""


class RawErrorParser(_AsyncRESP2Parser):
    """RESP2 parser that keeps an error reply's full text, prefix included."""

    @classmethod
    def parse_error(cls, response: str) -> ResponseError | RedisConnectionError:
        parsed = super().parse_error(response)  # type: ignore[no-untyped-call]
        if isinstance(parsed, RedisConnectionError):
            return parsed  # "max number of clients reached" and friends: a connection problem
        return ResponseError(response)


class Backend:
    """Runs batches of commands; subclasses provide `_run` (in order, one connection) and `close`.

    `scripts`, when set, rewrites key-locking scripts for a server that rejects Upstash's flag.
    """

    scripts: RedisScripts | None = None

    async def close(self) -> None:
        raise NotImplementedError

    async def _run(self, commands: list[Command]) -> list[Reply]:
        raise NotImplementedError

    async def _transact(self, commands: list[Command]) -> list[Reply]:
        """MULTI, commands, EXEC in one write on one connection: the server applies all or none.

        If the connection drops before EXEC arrives, Redis discards the queued commands with the client;
        after it, EXEC runs whole. A reply lost on the way back is a 503 whose outcome is unknown, never half.
        """
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

    async def execute(self, command: Command) -> Reply:
        reply = (await self.pipeline([command]))[0]
        if isinstance(reply, ResponseError):
            raise reply
        return reply

    async def pipeline(self, commands: list[Command]) -> list[Reply]:
        """Every reply in order; an error reply is returned as a ResponseError and does not stop the rest."""
        if self.scripts is None:
            return await self._run(commands)
        sent, rewritten = await self.scripts.translate(commands)
        return self._client_replies(commands, rewritten, await self._run(sent))

    async def transaction(self, commands: list[Command]) -> list[Reply]:
        """The commands atomically; raises the queue-time error if Redis refused one (then nothing ran)."""
        if self.scripts is None:
            return await self._transact(commands)
        sent, rewritten = await self.scripts.translate(commands)
        return self._client_replies(commands, rewritten, await self._transact(sent))

    def _client_replies(
        self, commands: list[Command], rewritten: dict[int, Wrapped], replies: list[Reply]
    ) -> list[Reply]:
        if rewritten and self.scripts is not None:
            self.scripts.client_shas(commands, rewritten, replies)
        return replies


class RedisBackend(Backend):
    """A pool of RESP2 connections to one Redis server; each call holds one connection for its duration."""

    def __init__(
        self,
        url: str,
        registry: ScriptRegistry | None = None,
        *,
        max_connections: int = 64,
        timeout: float = 30.0,
    ) -> None:
        self.url = url
        if registry is not None:
            self.scripts = RedisScripts(registry, self.key_specs)
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

    async def key_specs(self) -> KeySpecs:
        """This server's key specs (`COMMAND`), read once, when a key-locking script first needs them."""
        reply = (await self._run([[b"COMMAND"]]))[0]
        if isinstance(reply, ResponseError):
            raise reply
        return KeySpecs(text_from_command_reply(reply))

    async def _run(self, commands: list[Command]) -> list[Reply]:
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
        except RedisError as exc:  # a reply redis-py cannot parse: the stream is out of step, drop it
            await connection.disconnect()
            raise BackendFailedError(f"{type(exc).__name__}: {exc}") from exc
        except BaseException:
            # Cancelled or failed half-way: replies may still be in flight, so drop the connection.
            await connection.disconnect()
            raise
        finally:
            await self.pool.release(connection)
        return replies
