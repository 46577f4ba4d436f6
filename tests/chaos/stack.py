"""A private stack for fault injection: redis-server on a spare port (never the shared one) and `jobq
gateway` as a subprocess in front of it, each stoppable and restartable on the same port."""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import redis

LONG = os.environ.get("JOBQ_CHAOS_LONG") == "1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(ready: Any, what: str, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready after {seconds} s")
        time.sleep(0.05)


class PrivateRedis:
    """redis-server on a spare loopback port; with `durable`, an fsync-always AOF survives restarts."""

    def __init__(self, workdir: Path, durable: bool = False) -> None:
        self.port = free_port()
        self.workdir, self.durable = workdir, durable
        self.process: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True)

    def start(self) -> None:
        command = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", ""]
        command += ["--dir", str(self.workdir)]
        command += (
            ["--appendonly", "yes", "--appendfsync", "always"] if self.durable else ["--appendonly", "no"]
        )
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        probe = self.client()

        def answers() -> bool:
            with contextlib.suppress(redis.RedisError):
                return bool(probe.ping())
            return False

        wait_until(answers, "redis-server")
        probe.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


class GatewayProcess:
    """`jobq gateway` (or JOBQ_BENCH_GATEWAY's command) on a fixed loopback port."""

    def __init__(self, redis_url: str) -> None:
        self.port, self.token = free_port(), secrets.token_hex(16)
        self.redis_url = redis_url
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        base = os.environ.get("JOBQ_BENCH_GATEWAY")
        jobq = shlex.split(base) if base else [sys.executable, "-c", "from infra.cli import app; app()"]
        return [
            *jobq,
            "gateway",
            "--port",
            str(self.port),
            "--token",
            self.token,
            "--redis-url",
            self.redis_url,
        ]

    def start(self) -> None:
        self.process = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        auth = {"Authorization": f"Bearer {self.token}"}

        def answers() -> bool:
            with contextlib.suppress(httpx.HTTPError):
                return httpx.post(self.url, json=["PING"], headers=auth, timeout=1).status_code == 200
            return False

        wait_until(answers, "jobq gateway")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


def settings_env(gateway: GatewayProcess, prefix: str) -> dict[str, str]:
    return {
        "JOBQ_REDIS_REST_URL": gateway.url,
        "JOBQ_REDIS_REST_TOKEN": gateway.token,
        "JOBQ_KEY_PREFIX": prefix,
    }
