"""An Upstash-compatible REST gateway: the endpoints the `upstash-redis` SDK calls, forwarded to a backend.

POST /            one command          -> {"result": ...}
POST /pipeline    commands in order    -> [{"result": ...} | {"error": ...}, ...]
POST /multi-exec  commands atomically  -> same shape, or 400 {"error"} if Redis refused one at queue time
GET  /_jobq/commands        billed-command count (Upstash's rules: one per command, PING free) and the
                            scripts that would have taken Upstash's global lock
POST /_jobq/commands/reset  set both counts back to zero

With `replica_lag_ms`, plain reads lag behind recent writes as a read replica's would (replica.py).
"""

from __future__ import annotations

import contextlib
import hmac
import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from redis.exceptions import ResponseError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from infra.local import protocol
from infra.local.backends import Backend, BackendFailedError, BackendUnavailableError, RedisBackend, Reply
from infra.local.cluster import ClusterBackend
from infra.local.embedded import EmbeddedBackend
from infra.local.protocol import Command, RequestError
from infra.local.replica import ReplicaLag
from infra.local.scripts import ScriptRegistry

# Idle keep-alive connections are held longer than any client keeps one (httpx: 5 s), so a client never
# sends on a connection the server has just closed: that race was an httpx ReadError on an idle
# consumer's next poll. Serve the app with uvicorn's timeout_keep_alive=KEEP_ALIVE_SECONDS.
KEEP_ALIVE_SECONDS = 75

log = logging.getLogger("jobq.gateway")
Handler = Callable[[Request, bool], Awaitable[Any]]  # (request, base64 wanted) -> JSON body


class CommandCounter:
    """Commands billed the Upstash way. Plain int updates: the gateway runs on one event loop thread."""

    def __init__(self) -> None:
        self.count = 0

    def add(self, commands: list[Command]) -> None:
        self.count += sum(1 for args in commands if protocol.name_of(args) not in protocol.FREE)

    def reset(self) -> None:
        self.count = 0


def _backend(redis_url: str | None, cluster_url: str | None, registry: ScriptRegistry) -> Backend:
    if redis_url is not None and cluster_url is not None:
        raise ValueError("give a Redis URL or a Redis Cluster URL, not both")
    if cluster_url is not None:
        return ClusterBackend(cluster_url, registry)
    if redis_url is not None:
        return RedisBackend(redis_url, registry)
    return EmbeddedBackend()


class Gateway:
    """The state behind one app: token, backend, counters, the sync-token sequence and the replica lag."""

    def __init__(
        self,
        token: str,
        redis_url: str | None,
        cluster_url: str | None,
        strict_locking: bool,
        replica_lag_ms: int = 0,
    ) -> None:
        self.token = token.encode()
        self.scripts = ScriptRegistry(strict=strict_locking)
        self.backend = _backend(redis_url, cluster_url, self.scripts)
        self.counter = CommandCounter()
        self.sync_tokens = itertools.count(1)
        self.replica = ReplicaLag(replica_lag_ms) if replica_lag_ms else None

    def counts(self) -> dict[str, int]:
        return {"commands": self.counter.count, "global_lock_scripts": self.scripts.global_lock_scripts}

    async def close(self) -> None:
        await self.backend.close()

    def authorized(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, supplied = header.partition(" ")
        # compare_digest on bytes: constant time whatever the supplied token's content.
        return scheme.lower() == "bearer" and hmac.compare_digest(supplied.strip().encode(), self.token)

    def as_replica(self, request: Request, commands: list[Command]) -> list[Command]:
        """The commands to send to the backend, lagging reads rewritten when replica lag is on.

        They are kept on the request, so that `reply` notes their writes under the token it answers with."""
        request.state.commands = commands
        if self.replica is None:
            return commands
        return self.replica.reads(commands, request.headers.get("upstash-sync-token"))

    def reply(self, body: Any, status: int = 200, request: Request | None = None) -> JSONResponse:
        token = next(self.sync_tokens)
        if self.replica is not None and request is not None:
            # Noted under the token this answer carries: a client that sends it back reads these writes.
            self.replica.wrote(getattr(request.state, "commands", []), token)
        return JSONResponse(body, status, headers={"Upstash-Sync-Token": f"{token:016d}"})


def _error_text(error: ResponseError) -> str:
    return str(error)


def _entry(reply: Reply, base64_encoding: bool) -> dict[str, Any]:
    if isinstance(reply, ResponseError):
        return {"error": _error_text(reply)}
    return {"result": protocol.encode_result(reply, base64_encoding)}


def create_app(
    token: str,
    redis_url: str | None = None,
    *,
    cluster_url: str | None = None,
    strict_locking: bool = False,
    replica_lag_ms: int = 0,
) -> Starlette:
    """The gateway app: on a Redis server, a Redis Cluster, or (neither URL) the embedded fakeredis server.

    `strict_locking` refuses every script that would take Upstash's global lock (no `allow-key-locking`).
    `replica_lag_ms` > 0 answers plain reads of keys written less than that long ago as a lagging read
    replica would, unless the request's sync token covers the write (replica.py); 0 is off.
    """
    if not token:
        raise ValueError("the gateway needs a non-empty token")
    if replica_lag_ms < 0:
        raise ValueError("the replica lag must be 0 (off) or a positive number of milliseconds")
    gateway = Gateway(token, redis_url, cluster_url, strict_locking, replica_lag_ms)

    def endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            if not gateway.authorized(request):
                return gateway.reply({"error": "Unauthorized"}, 401)
            base64_encoding = request.headers.get("upstash-encoding", "").lower() == "base64"
            try:
                return gateway.reply(await handler(request, base64_encoding), request=request)
            except RequestError as exc:
                return gateway.reply({"error": exc.message}, exc.status, request)
            except ResponseError as exc:
                return gateway.reply({"error": _error_text(exc)}, 400, request)
            except BackendUnavailableError as exc:
                log.warning("backend unavailable: %s", exc)
                return gateway.reply({"error": f"ERR Redis backend unavailable: {exc}"}, 503, request)
            except BackendFailedError as exc:
                log.warning("backend failed: %s", exc)
                return gateway.reply({"error": f"ERR Redis backend failed: {exc}"}, 502, request)
            except Exception as exc:  # a defect of the gateway: still a JSON error the SDK can show
                log.exception("gateway error")
                message = f"ERR gateway error: {type(exc).__name__}: {exc}"
                return gateway.reply({"error": message}, 500, request)

        return run

    async def last_resort(request: Request, exc: Exception) -> Response:
        log.exception("gateway error outside a route", exc_info=exc)
        return gateway.reply({"error": f"ERR gateway error: {type(exc).__name__}"}, 500)

    async def body_of(request: Request) -> Any:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > protocol.MAX_BODY_BYTES:
            raise RequestError("ERR max request size exceeded", 413)
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > protocol.MAX_BODY_BYTES:
                raise RequestError("ERR max request size exceeded", 413)
            chunks.append(chunk)
        return protocol.parse_json(b"".join(chunks))

    def admit(commands: list[Command]) -> None:
        gateway.scripts.check(commands)  # strict locking may refuse the request: then nothing is counted
        gateway.counter.add(commands)

    async def single(request: Request, base64_encoding: bool) -> Any:
        command = protocol.parse_command(await body_of(request))
        admit([command])
        [sent] = gateway.as_replica(request, [command])
        try:
            reply = await gateway.backend.execute(sent)
        except ResponseError as error:
            gateway.scripts.count([command], [error], transaction=False)
            raise
        gateway.scripts.count([command], [reply], transaction=False)
        return {"result": protocol.encode_result(reply, base64_encoding)}

    async def pipeline(request: Request, base64_encoding: bool) -> Any:
        commands = protocol.parse_commands(await body_of(request))
        admit(commands)
        replies = await gateway.backend.pipeline(gateway.as_replica(request, commands))
        gateway.scripts.count(commands, replies, transaction=False)
        return [_entry(reply, base64_encoding) for reply in replies]

    async def multi_exec(request: Request, base64_encoding: bool) -> Any:
        commands = protocol.parse_commands(await body_of(request))
        admit(commands)
        request.state.commands = commands  # a transaction runs on the primary: its reads never lag
        replies = await gateway.backend.transaction(commands)
        gateway.scripts.count(commands, replies, transaction=True)  # Upstash: scripts in MULTI lock globally
        return [_entry(reply, base64_encoding) for reply in replies]

    async def commands(request: Request, _: bool) -> Any:
        return gateway.counts()

    async def reset(request: Request, _: bool) -> Any:
        gateway.counter.reset()
        gateway.scripts.global_lock_scripts = 0
        return gateway.counts()

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await gateway.close()

    app = Starlette(
        routes=[
            Route("/", endpoint(single), methods=["POST"]),
            Route("/pipeline", endpoint(pipeline), methods=["POST"]),
            Route("/multi-exec", endpoint(multi_exec), methods=["POST"]),
            Route("/_jobq/commands", endpoint(commands), methods=["GET"]),
            Route("/_jobq/commands/reset", endpoint(reset), methods=["POST"]),
        ],
        lifespan=lifespan,
        exception_handlers={Exception: last_resort},
    )
    app.state.gateway = gateway
    return app
