"""An Upstash-compatible REST gateway: the endpoints the `upstash-redis` SDK calls, forwarded to a backend.

POST /            one command          -> {"result": ...}
POST /pipeline    commands in order    -> [{"result": ...} | {"error": ...}, ...]
POST /multi-exec  commands atomically  -> same shape, or 400 {"error"} if Redis refused one at queue time
GET  /_jobq/commands        billed-command count (Upstash's rules: one per command, PING free) and the
                            scripts that would have taken Upstash's global lock
POST /_jobq/commands/reset  set both counts back to zero
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
    """The state behind one app: token, backend, counters and the sync-token sequence."""

    def __init__(
        self, token: str, redis_url: str | None, cluster_url: str | None, strict_locking: bool
    ) -> None:
        self.token = token.encode()
        self.scripts = ScriptRegistry(strict=strict_locking)
        self.backend = _backend(redis_url, cluster_url, self.scripts)
        self.counter = CommandCounter()
        self.sync_tokens = itertools.count(1)

    def counts(self) -> dict[str, int]:
        return {"commands": self.counter.count, "global_lock_scripts": self.scripts.global_lock_scripts}

    async def close(self) -> None:
        await self.backend.close()

    def authorized(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, supplied = header.partition(" ")
        # compare_digest on bytes: constant time whatever the supplied token's content.
        return scheme.lower() == "bearer" and hmac.compare_digest(supplied.strip().encode(), self.token)

    def reply(self, body: Any, status: int = 200) -> JSONResponse:
        return JSONResponse(body, status, headers={"Upstash-Sync-Token": f"{next(self.sync_tokens):016d}"})


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
) -> Starlette:
    """The gateway app: on a Redis server, a Redis Cluster, or (neither URL) the embedded fakeredis server.

    `strict_locking` refuses every script that would take Upstash's global lock (no `allow-key-locking`).
    """
    if not token:
        raise ValueError("the gateway needs a non-empty token")
    gateway = Gateway(token, redis_url, cluster_url, strict_locking)

    def endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            if not gateway.authorized(request):
                return gateway.reply({"error": "Unauthorized"}, 401)
            base64_encoding = request.headers.get("upstash-encoding", "").lower() == "base64"
            try:
                return gateway.reply(await handler(request, base64_encoding))
            except RequestError as exc:
                return gateway.reply({"error": exc.message}, exc.status)
            except ResponseError as exc:
                return gateway.reply({"error": _error_text(exc)}, 400)
            except BackendUnavailableError as exc:
                log.warning("backend unavailable: %s", exc)
                return gateway.reply({"error": f"ERR Redis backend unavailable: {exc}"}, 503)
            except BackendFailedError as exc:
                log.warning("backend failed: %s", exc)
                return gateway.reply({"error": f"ERR Redis backend failed: {exc}"}, 502)
            except Exception as exc:  # a defect of the gateway: still a JSON error the SDK can show
                log.exception("gateway error")
                return gateway.reply({"error": f"ERR gateway error: {type(exc).__name__}: {exc}"}, 500)

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
        try:
            reply = await gateway.backend.execute(command)
        except ResponseError as error:
            gateway.scripts.count([command], [error], transaction=False)
            raise
        gateway.scripts.count([command], [reply], transaction=False)
        return {"result": protocol.encode_result(reply, base64_encoding)}

    async def pipeline(request: Request, base64_encoding: bool) -> Any:
        commands = protocol.parse_commands(await body_of(request))
        admit(commands)
        replies = await gateway.backend.pipeline(commands)
        gateway.scripts.count(commands, replies, transaction=False)
        return [_entry(reply, base64_encoding) for reply in replies]

    async def multi_exec(request: Request, base64_encoding: bool) -> Any:
        commands = protocol.parse_commands(await body_of(request))
        admit(commands)
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
