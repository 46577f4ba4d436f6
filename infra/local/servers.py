"""uvicorn servers as the local stack runs them: several on one loop, signals left to their owner."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Generator

import uvicorn

from infra.local.rest_gateway import KEEP_ALIVE_SECONDS

START_TIMEOUT = 15.0


class QuietServer(uvicorn.Server):
    """A uvicorn server that leaves signals to its owner (several servers share one loop, or one process)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def make_server(app: object, host: str, port: int) -> QuietServer:
    return QuietServer(
        uvicorn.Config(
            app,  # type: ignore[arg-type]
            host=host,
            port=port,
            log_level="warning",
            lifespan="on",
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
        )
    )


async def wait_started(server: uvicorn.Server, task: asyncio.Task[None], name: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not server.started:
        if task.done():
            task.result()  # re-raise why it stopped (a port in use, ...)
            raise RuntimeError(f"{name} stopped during start-up")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not start within {START_TIMEOUT:g} s")
        await asyncio.sleep(0.05)
