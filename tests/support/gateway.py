"""Run a gateway for tests: in a thread of this process, or as a restartable `jobq gateway` subprocess."""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import uvicorn

from infra.local.rest_gateway import KEEP_ALIVE_SECONDS, create_app

START_TIMEOUT = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(condition: Callable[[], bool], what: str, timeout: float = START_TIMEOUT) -> None:
    """Poll `condition` until it holds, failing after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not come up within {timeout:.0f}s")
        time.sleep(0.02)


class GatewayClientMixin:
    """Counter access shared by both runners, through the gateway's authenticated admin routes."""

    url: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def answers(self) -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return httpx.post(self.url, json=["PING"], headers=self.auth, timeout=1).status_code == 200
        return False

    def command_count(self) -> int:
        response = httpx.get(f"{self.url}/_jobq/commands", headers=self.auth, timeout=5)
        response.raise_for_status()
        return int(response.json()["commands"])

    def reset_commands(self) -> None:
        httpx.post(f"{self.url}/_jobq/commands/reset", headers=self.auth, timeout=5).raise_for_status()

    def counts(self) -> dict[str, int]:
        """Billed commands and scripts that would have taken Upstash's global lock."""
        response = httpx.get(f"{self.url}/_jobq/commands", headers=self.auth, timeout=5)
        response.raise_for_status()
        return {name: int(value) for name, value in response.json().items()}

    def global_lock_scripts(self) -> int:
        return self.counts()["global_lock_scripts"]


class ThreadGateway(GatewayClientMixin):
    """uvicorn serving the gateway app from a daemon thread of the test process."""

    def __init__(
        self,
        redis_url: str | None,
        token: str | None = None,
        *,
        cluster_url: str | None = None,
        strict_locking: bool = False,
        replica_lag_ms: int = 0,
    ) -> None:
        self.redis_url = redis_url
        self.backend = "cluster" if cluster_url else "embedded" if redis_url is None else "redis"
        self.token = token or secrets.token_hex(16)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        app = create_app(
            self.token,
            redis_url,
            cluster_url=cluster_url,
            strict_locking=strict_locking,
            replica_lag_ms=replica_lag_ms,
        )
        self.app = app
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="on",
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
        )
        self.server = uvicorn.Server(config)
        self.thread: threading.Thread | None = None

    def start(self) -> ThreadGateway:
        self.thread = threading.Thread(target=self.server.run, name=f"gateway-{self.backend}", daemon=True)
        self.thread.start()
        wait_until(lambda: self.server.started or not self.thread_alive(), "gateway thread")
        if not self.server.started:
            raise RuntimeError("the gateway thread exited before serving")
        return self

    def thread_alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def stop(self) -> None:
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=10)

    def __enter__(self) -> ThreadGateway:
        return self.start()

    def __exit__(self, *_: Any) -> None:
        self.stop()


class GatewayProcess(GatewayClientMixin):
    """`jobq gateway` as a subprocess on a fixed port: stop and start it again at the same URL."""

    def __init__(
        self,
        redis_url: str | None,
        token: str | None = None,
        port: int | None = None,
        *,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.redis_url = redis_url
        self.extra_args = extra_args  # e.g. ("--redis-cluster", url) or ("--strict-locking",)
        self.backend = "embedded" if redis_url is None else "redis"
        self.token = token or secrets.token_hex(16)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.stderr: Any = None

    def command(self) -> list[str]:
        base = os.environ.get("JOBQ_BENCH_GATEWAY")
        jobq = shlex.split(base) if base else [sys.executable, "-c", "from infra.cli import app; app()"]
        args = [*jobq, "gateway", "--port", str(self.port)]
        if self.redis_url is not None:
            args += ["--redis-url", self.redis_url]
        args += self.extra_args
        if base:  # another gateway command may only take its token as an option
            args += ["--token", self.token]
        return args

    def start(self) -> GatewayProcess:
        # The token travels in the environment, not argv, so it does not show in process listings.
        env = {**os.environ, "JOBQ_GATEWAY_TOKEN": self.token}
        # stderr to a file, not a pipe: a full pipe would stall a chatty gateway.
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115  (closed in stop())
        out = subprocess.DEVNULL
        self.process = subprocess.Popen(self.command(), env=env, stdout=out, stderr=self.stderr)
        wait_until(lambda: self.answers() or self.exited(), "jobq gateway")
        if self.exited():
            self.stderr.seek(0)
            stderr = self.stderr.read().decode(errors="replace")
            raise RuntimeError(f"jobq gateway exited early: {stderr[-2000:]}")
        return self

    def exited(self) -> bool:
        return self.process is None or self.process.poll() is not None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        if self.stderr is not None:
            self.stderr.close()
            self.stderr = None

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(self, *_: Any) -> None:
        self.stop()
