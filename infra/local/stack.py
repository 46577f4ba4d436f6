"""The local stack: the REST gateway in a process of its own, the API on uvicorn, and a consumer run as
`jobq worker` runs: continuous slots, woken at once by each submit (the `local` push trigger) and, as the
scheduler, at the moment the due-index says a delayed job or a retry is due. It runs jobs of any timeout
(no lanes).

The API's server and the consumer share one event loop and the gateway runs in a child process
(infra/local/gateway_process.py), so no server installs signal handlers: the stack owns SIGINT/SIGTERM and
shuts down in order (stop claiming, hand unstarted jobs back, let running ones finish, close the API, then
the gateway their outcomes went through).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from functions.api.app import create_app as create_api
from functions.consumer.runtime import ConsumerRuntime, build_runtime
from infra.local.gateway_process import GatewayProcess
from infra.local.servers import QuietServer, make_server, wait_started
from shared.consumer.worker import Worker, WorkerStats
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
    # Accepted connections inherit this. Without it every small reply waits on Nagle's algorithm and the
    # client's delayed ACK (~40 ms a request): the servers get pre-bound sockets, not uvicorn's own.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise StackError(f"{name} port {host}:{port} is not available ({exc.strerror})") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


@dataclass
class StackConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    gateway_port: int = 8079
    redis_url: str | None = None  # None: the embedded backend
    cluster_url: str | None = None  # a Redis Cluster behind the gateway instead (docs/scaling.md)
    admin_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    gateway_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    tick: float = 5.0  # the longest the consumer sleeps between polls of the due-index (the cron's part)

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
            "JOBQ_REDIS_CLUSTER": "true" if self.cluster_url else "false",
        }


async def _until(stop: asyncio.Event, worker_task: asyncio.Task[WorkerStats]) -> None:
    """Serve until asked to stop; a worker that died is an error of the stack, not a silent stall."""
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait([stopping, worker_task], return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if worker_task.done():
        worker_task.result()  # re-raise why it stopped
        raise RuntimeError("the consumer stopped unexpectedly")


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
    gateway = GatewayProcess(gateway_socket, config.gateway_token, config.redis_url, config.cluster_url)
    api: QuietServer | None = None
    api_task: asyncio.Task[None] | None = None
    runtime: ConsumerRuntime | None = None
    worker: Worker | None = None
    worker_task: asyncio.Task[WorkerStats] | None = None
    try:
        await asyncio.get_running_loop().run_in_executor(None, gateway.start)
        gateway_socket.close()  # the child has its own copy
        runtime = build_runtime(settings)
        worker = Worker(runtime.consumer, idle_min=min(0.5, config.tick), idle_max=config.tick)
        trigger = LocalTrigger(worker.wake)
        api = make_server(
            create_api(settings, registry=runtime.registry, redis=runtime.redis, trigger=trigger),
            config.host,
            config.port,
        )
        api_task = asyncio.create_task(api.serve(sockets=[api_socket]))
        await wait_started(api, api_task, "API")
        worker_task = asyncio.create_task(worker.run())
        on_ready(config)
        await _until(stop, worker_task)
    finally:
        if worker is not None and worker_task is not None:
            worker.stop()
            await worker_task
        if api is not None and api_task is not None:
            api.should_exit = True
            await api_task
        if runtime is not None:
            await runtime.redis.close()
        await gateway.stop()
        for sock in (gateway_socket, api_socket):
            sock.close()
