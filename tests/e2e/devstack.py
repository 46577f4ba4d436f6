"""`jobq dev` as a subprocess for the end-to-end tests: start it, read its output with deadlines, talk to its
API, poll a job until it settles, and stop it with Ctrl-C as a developer does."""

from __future__ import annotations

import os
import queue
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

JOBQ = Path(sys.executable).with_name("jobq")
START_DEADLINE = 30.0
JOB_DEADLINE = 20.0
SETTLED = ("completed", "failed", "cancelled")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env() -> dict[str, str]:
    """The environment without the checkout's jobq or Upstash settings, as on a newcomer's machine."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("JOBQ_", "UPSTASH_"))}


class Output:
    """Collects a process's output on a thread, so the test can wait for a line with a deadline."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen = ""
        assert proc.stdout is not None
        stream = proc.stdout
        self.thread = threading.Thread(target=lambda: [self.lines.put(line) for line in stream], daemon=True)
        self.thread.start()

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                self.seen += self.lines.get(timeout=left)
            except queue.Empty:
                break
            if match := re.search(pattern, self.seen):
                return match
        raise AssertionError(f"no output matching {pattern!r}; so far:\n{self.seen}")

    def rest(self) -> str:
        self.thread.join(timeout=5)
        while not self.lines.empty():
            self.seen += self.lines.get()
        return self.seen


def interrupt(proc: subprocess.Popen[str]) -> int:
    """Ctrl-C, as a developer stops `jobq dev` (the terminal signals the whole foreground process group,
    `make` and its `jobq dev` alike); kill it if it does not stop in time."""
    os.killpg(proc.pid, signal.SIGINT)
    try:
        return proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise


class DevStack:
    """`jobq dev` on free loopback ports, run from `cwd` (so no .env of the checkout applies).

    `redis_url` puts a real Redis behind the gateway (under a key prefix of its own, so tests never share
    keys); without it the stack keeps its data in `cwd/.jobq/`. `modules` are loaded through
    JOBQ_JOB_MODULES; `pythonpath` is put in front of PYTHONPATH; `command` replaces `jobq dev` (e.g. with
    `make dev`: it gets the ports as PORT and GATEWAY_PORT). Used as a context manager: entering waits for
    the ready banner and the admin token it prints; leaving sends Ctrl-C and keeps the exit code and the
    whole output in `code` and `printed`.
    """

    def __init__(
        self,
        cwd: Path,
        *,
        args: tuple[str, ...] = (),
        redis_url: str | None = None,
        modules: str | None = None,
        pythonpath: Path | None = None,
        env: dict[str, str] | None = None,
        command: list[str] | None = None,
    ) -> None:
        self.port, self.gateway_port = free_port(), free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        if command is None:
            ports = ["--port", str(self.port), "--gateway-port", str(self.gateway_port)]
            self.command = [str(JOBQ), "dev", *ports]
        else:
            self.command = [*command, f"PORT={self.port}", f"GATEWAY_PORT={self.gateway_port}"]
        if redis_url is not None:
            self.command += ["--redis-url", redis_url]
        self.command += list(args)
        self.cwd = cwd
        self.env = {**clean_env(), **(env or {})}
        if redis_url is not None:
            self.env["JOBQ_KEY_PREFIX"] = "e2e" + secrets.token_hex(6)
        if modules is not None:
            self.env["JOBQ_JOB_MODULES"] = modules
        if pythonpath is not None:
            self.env["PYTHONPATH"] = os.pathsep.join(
                filter(None, [str(pythonpath), os.environ.get("PYTHONPATH")])
            )
        self.token: str | None = None
        self.code: int | None = None
        self.printed = ""

    def __enter__(self) -> DevStack:
        self.proc = subprocess.Popen(
            self.command,
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # a process group of its own, as a terminal's foreground job
        )
        self.output = Output(self.proc)
        try:
            self.output.wait_for(r"Press Ctrl-C to stop\.", START_DEADLINE)
            if match := re.search(r"admin token \(kept in \.jobq/admin-token\): (\S+)", self.output.seen):
                self.token = match.group(1)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self.code = interrupt(self.proc)
        finally:
            self.printed = self.output.rest()
            assert self.proc.stdout is not None
            self.proc.stdout.close()

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=10)


def wait_settled(client: httpx.Client, job_id: str, deadline: float = JOB_DEADLINE) -> dict[str, Any]:
    """Poll a job until it is completed, failed or cancelled; fail after `deadline` seconds."""
    until = time.monotonic() + deadline
    while True:
        reply = client.get(f"/v1/jobs/{job_id}")
        assert reply.status_code == 200, reply.text
        job: dict[str, Any] = reply.json()
        if job["state"] in SETTLED:
            return job
        assert time.monotonic() < until, f"job {job_id} not settled after {deadline} s: {job}"
        time.sleep(0.1)  # polling interval, bounded by the deadline above
