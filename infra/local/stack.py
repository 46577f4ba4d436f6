"""The local stack in one process: REST gateway, API on uvicorn, consumer with the `local` push trigger, and a
scheduler playing the cron's part (a bounded drain every few seconds, as the scheduled Lambda runs).

Two uvicorn servers share one event loop, so neither installs signal handlers: the stack owns SIGINT/SIGTERM
and shuts down in order (stop claiming, hand unstarted jobs back, let running ones finish, close the servers).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field

import uvicorn

from functions.api.app import create_app as create_api
from functions.consumer.runtime import ConsumerRuntime, build_runtime
from infra.local.gateway import create_app as create_gateway
from shared.errors import JobqError
from shared.settings import Settings
from shared.triggers import LocalTrigger

log = logging.getLogger("jobq.dev")

START_TIMEOUT = 15.0


class StackError(Exception):
    """The stack cannot start (a port in use, ...): said in one line, no traceback."""


def _listen(host: str, port: int, name: str) -> socket.socket:
    """Bind before any server starts, so a port in use is a clear error instead of uvicorn exiting."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise StackError(f"{name} port {host}:{port} is not available ({exc.strerror})") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


class _QuietServer(uvicorn.Server):
    """A uvicorn server that leaves signals to its owner (several servers share one loop here)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@dataclass
class StackConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    gateway_port: int = 8079
    redis_url: str | None = None  # None: the embedded backend
    admin_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    gateway_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    tick: float = 5.0  # seconds between scheduled drains
    drain_budget: float = 20.0  # seconds one drain may run, as a pushed Lambda run

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def gateway_url(self) -> str:
        return f"http://{self.host}:{self.gateway_port}"

    def environment(self) -> dict[str, str]:
        """What every part reads through get_settings(): the stack's own endpoints and secrets."""
        return {
            "JOBQ_ENV": "local",
            "JOBQ_REDIS_REST_URL": self.gateway_url,
            "JOBQ_REDIS_REST_TOKEN": self.gateway_token,
            "JOBQ_ADMIN_TOKEN": self.admin_token,
            "JOBQ_TRIGGER": "local",
        }


class Drainer:
    """Runs bounded drains one at a time; a kick during a drain asks for one more afterwards (coalesced)."""

    def __init__(self, runtime: ConsumerRuntime, budget: float) -> None:
        self._runtime = runtime
        self._budget = budget
        self._task: asyncio.Task[None] | None = None
        self._again = False
        self.drains = 0

    def kick(self) -> None:
        if self._runtime.consumer.stopping:
            return
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            self._again = False
            try:
                report = await self._runtime.consumer.drain(self._budget)
                self.drains += 1
                if report.cycles:
                    log.info("drain: %s", report)
            except JobqError as exc:  # the next tick tries again
                log.warning("drain failed: %s", exc.code)
            if not self._again or self._runtime.consumer.stopping:
                return

    async def stop(self) -> None:
        self._runtime.consumer.stop()
        if self._task is not None:
            await self._task


async def _started(server: uvicorn.Server, task: asyncio.Task[None], name: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not server.started:
        if task.done():
            task.result()  # re-raise why it stopped (a port in use, ...)
            raise RuntimeError(f"{name} stopped during start-up")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not start within {START_TIMEOUT:g} s")
        await asyncio.sleep(0.05)


def _server(app: object, config: StackConfig, port: int) -> _QuietServer:
    return _QuietServer(
        uvicorn.Config(app, host=config.host, port=port, log_level="warning", lifespan="on")  # type: ignore[arg-type]
    )


async def run_stack(
    config: StackConfig,
    settings: Settings,
    stop: asyncio.Event,
    on_ready: Callable[[StackConfig], None] = lambda _: None,
) -> None:
    """Serve until `stop` is set, then shut everything down in order."""
    gateway_socket = _listen(config.host, config.gateway_port, "gateway")
    try:
        api_socket = _listen(config.host, config.port, "API")
    except StackError:
        gateway_socket.close()
        raise
    gateway = _server(create_gateway(config.gateway_token, config.redis_url), config, config.gateway_port)
    gateway_task = asyncio.create_task(gateway.serve(sockets=[gateway_socket]))
    api: _QuietServer | None = None
    api_task: asyncio.Task[None] | None = None
    runtime: ConsumerRuntime | None = None
    drainer: Drainer | None = None
    try:
        await _started(gateway, gateway_task, "gateway")
        runtime = build_runtime(settings)
        drainer = Drainer(runtime, config.drain_budget)
        trigger = LocalTrigger(drainer.kick)
        api = _server(
            create_api(settings, registry=runtime.registry, redis=runtime.redis, trigger=trigger),
            config,
            config.port,
        )
        api_task = asyncio.create_task(api.serve(sockets=[api_socket]))
        await _started(api, api_task, "API")
        on_ready(config)
        while not stop.is_set():
            drainer.kick()  # the cron's part
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=config.tick)
    finally:
        if drainer is not None:
            await drainer.stop()
        for server, task in ((api, api_task), (gateway, gateway_task)):
            if server is not None and task is not None:
                server.should_exit = True
                await task
        if runtime is not None:
            await runtime.redis.close()
        for sock in (gateway_socket, api_socket):
            sock.close()
