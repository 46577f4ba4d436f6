"""`jobq dev` as a newcomer runs it: start, submit an echo job as the README's curl does, Ctrl-C."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
JOBQ = Path(sys.executable).with_name("jobq")
START_DEADLINE = 30.0
JOB_DEADLINE = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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
    """Ctrl-C, as a developer stops `jobq dev`; kill it if it does not stop in time."""
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


def test_dev_stack_runs_a_job_and_stops_cleanly(tmp_path: Path) -> None:
    port, gateway_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBQ_", "UPSTASH_"))}
    proc = subprocess.Popen(
        [str(JOBQ), "dev", "--port", str(port), "--gateway-port", str(gateway_port), "--tick", "1"],
        cwd=tmp_path,  # no .env from the checkout
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = Output(proc)
    try:
        match = output.wait_for(r"admin token \(generated for this run\): (\S+)", START_DEADLINE)
        token = match.group(1)
        headers = {"Authorization": f"Bearer {token}"}
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, headers=headers, timeout=10) as client:
            assert client.get("/v1/jobs", headers={"Authorization": "Bearer wrong"}).status_code == 401
            created = client.post("/v1/jobs", json={"type": "echo", "payload": {"hello": "world"}})
            assert created.status_code == 201, created.text
            job_id = created.json()["id"]
            deadline = time.monotonic() + JOB_DEADLINE
            job = created.json()
            while job["state"] != "completed" and time.monotonic() < deadline:
                time.sleep(0.1)
                job = client.get(f"/v1/jobs/{job_id}").json()
            assert job["state"] == "completed", job
            assert job["result"] == {"hello": "world"}
    finally:
        code = interrupt(proc)
    printed = output.rest()
    assert proc.stdout is not None
    proc.stdout.close()
    assert code == 0, printed
    assert "jobq dev stopped" in printed
    assert "Traceback" not in printed


def test_port_in_use_is_a_one_line_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [str(JOBQ), "dev", "--port", str(port), "--gateway-port", str(free_port())],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert done.returncode == 1
    assert f"API port 127.0.0.1:{port} is not available" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_token_set_by_the_developer_is_never_echoed(tmp_path: Path) -> None:
    token = "dev-token-set-by-me-0123456789"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBQ_", "UPSTASH_"))}
    port = free_port()
    proc = subprocess.Popen(
        [str(JOBQ), "dev", "--port", str(port), "--gateway-port", str(free_port())],
        cwd=tmp_path,
        env={**env, "JOBQ_ADMIN_TOKEN": token},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = Output(proc)
    try:
        output.wait_for(r"admin token: the one in JOBQ_ADMIN_TOKEN", START_DEADLINE)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            assert client.get("/v1/queues", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    finally:
        interrupt(proc)
    printed = output.rest()
    assert proc.stdout is not None
    proc.stdout.close()
    assert token not in printed
