"""The local stack's REST gateway in a process of its own.

Every Redis call of the API and the consumer passes through the gateway, and in production that work
runs on Upstash's machines, not the app's. In the stack's own process it took the same interpreter (and
GIL) as the API and the consumer; here it runs on another core. The parent binds the socket (so a port
in use is a clear error) and hands it over; the child ignores Ctrl-C, which reaches the whole process
group, because the stack stops it last, once the consumer has recorded its outcomes through it. It also
stops when its parent is gone (the control pipe closes), so a killed stack leaves no gateway behind.
It runs in strict locking mode (docs/gateway.md), so the local stack refuses what Upstash would lock globally.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import signal
import socket
from multiprocessing.connection import Connection
from typing import Any

from infra.local.rest_gateway import create_app
from infra.local.servers import START_TIMEOUT, make_server, wait_started
from shared.runner import run as run_loop

STOP_TIMEOUT = 15.0


class GatewayProcess:
    def __init__(
        self, sock: socket.socket, token: str, redis_url: str | None, cluster_url: str | None = None
    ) -> None:
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: nothing of the parent's loop
        self._conn, child = context.Pipe()
        host, port = sock.getsockname()[:2]
        args = (child, sock, token, redis_url, cluster_url, host, port)
        self._process = context.Process(target=_serve, args=args, name="jobq-gateway", daemon=True)

    def start(self) -> None:
        """Start the child and wait until it serves; RuntimeError with its reason if it cannot."""
        self._process.start()
        if not self._conn.poll(START_TIMEOUT + 15):  # a fresh interpreter imports first
            self._process.kill()
            raise RuntimeError("the gateway did not start")
        status = self._conn.recv()
        if status != "ready":
            self._process.join(5)
            raise RuntimeError(f"the gateway did not start: {status}")

    async def stop(self) -> None:
        """Ask the child to finish its requests and exit; kill it if it does not."""
        if self._process.pid is None:  # never started
            return
        with contextlib.suppress(OSError):
            self._conn.send("stop")
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._process.join, STOP_TIMEOUT)
        if self._process.is_alive():
            self._process.kill()
        self._conn.close()


def _serve(
    conn: Connection,
    sock: socket.socket,
    token: str,
    redis_url: str | None,
    cluster_url: str | None,
    host: str,
    port: int,
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the stack stops the gateway last, itself
    run_loop(
        _main(
            conn, sock, create_app(token, redis_url, cluster_url=cluster_url, strict_locking=True), host, port
        )
    )


async def _main(conn: Connection, sock: socket.socket, app: Any, host: str, port: int) -> None:
    # Strict locking (create_app above): a jobq script that would take Upstash's global lock fails here,
    # not in production.
    server = make_server(app, host, port)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await wait_started(server, task, "gateway")
    except Exception as exc:  # said to the parent, which reports it as the stack's start-up error
        conn.send(f"{type(exc).__name__}: {exc}")
        return
    conn.send("ready")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_reader(conn.fileno(), stop.set)  # "stop", or the parent gone (end of file)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    server.should_exit = True
    await task
