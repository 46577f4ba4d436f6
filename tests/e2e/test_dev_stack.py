"""`jobq dev` as a newcomer runs it: start, submit an echo job as the README's curl does, Ctrl-C; and the
consumer's promises on it: any timeout a lane holds runs, a retry runs when it is due rather than at the next
idle poll, and a timeout no lane holds is refused at submit."""

from __future__ import annotations

import secrets
import shutil
import socket
import stat
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from tests.e2e.devstack import JOBQ, DevStack, free_port, wait_settled
from tests.support.gateway_fixtures import require_cluster, require_real_redis

# A module of job types for the dev stack: a test runner that may take five minutes (the "long" lane) and
# a job that fails its first attempt and is retried after a fixed second.
DEV_JOBS = """
from pydantic import BaseModel

from shared.context import JobContext
from shared.models import Backoff
from shared.registry import job_type


class Suite(BaseModel):
    name: str


@job_type("test_runner", payload=Suite, timeout=300)
async def test_runner(payload: Suite, ctx: JobContext) -> dict[str, object]:
    await ctx.log(f"running {payload.name}")
    return {"suite": payload.name, "passed": True}


class Nothing(BaseModel):
    pass


@job_type("flaky", payload=Nothing, max_attempts=3, backoff=Backoff(kind="fixed", delay=1, jitter=0))
async def flaky(payload: Nothing, ctx: JobContext) -> dict[str, int]:
    if ctx.attempt == 1:
        raise RuntimeError("first attempt fails")
    return {"attempt": ctx.attempt}
"""
TICK = 60.0  # the dev consumer's longest idle poll: a retry due in 1 s must not wait for it
RETRY_DEADLINE = 20.0


def test_dev_stack_runs_a_job_and_stops_cleanly(tmp_path: Path) -> None:
    with DevStack(tmp_path, args=("--tick", "1")) as stack, stack.client() as client:
        assert client.get("/v1/jobs", headers={"Authorization": "Bearer wrong"}).status_code == 401
        created = client.post("/v1/jobs", json={"type": "echo", "payload": {"hello": "world"}})
        assert created.status_code == 201, created.text
        job = wait_settled(client, created.json()["id"])
        assert job["state"] == "completed", job
        assert job["result"] == {"hello": "world"}
    assert stack.code == 0, stack.printed
    assert "jobq dev stopped" in stack.printed
    assert "Traceback" not in stack.printed


def test_dev_stack_on_a_redis_cluster_runs_jobs_of_two_queues(tmp_path: Path) -> None:
    """`jobq dev --redis-cluster`: every script routed by its queue's slot, through a strict gateway."""
    env = {"JOBQ_KEY_PREFIX": "e2e" + secrets.token_hex(6)}
    args = ("--redis-cluster", require_cluster(), "--tick", "1")
    with DevStack(tmp_path, args=args, env=env) as stack, stack.client() as client:
        ids = []
        for kind in ("echo", "sleep"):
            payload = {"hello": "cluster"} if kind == "echo" else {"seconds": 0}
            created = client.post("/v1/jobs", json={"type": kind, "payload": payload})
            assert created.status_code == 201, created.text
            ids.append(created.json()["id"])
        for job_id in ids:
            assert wait_settled(client, job_id)["state"] == "completed"
        mixed = [{"type": "echo", "payload": {}}, {"type": "sleep", "payload": {"seconds": 0}}]
        refused = client.post("/v1/jobs/batch", json={"jobs": mixed})
        assert refused.status_code == 422 and refused.json()["error"]["field"] == "jobs", refused.text
        assert {q["queue"] for q in client.get("/v1/queues").json()["queues"]} >= {"echo", "sleep"}
    assert stack.code == 0, stack.printed
    assert "Traceback" not in stack.printed


def test_dev_stack_runs_long_jobs_retries_when_due_and_refuses_unservable_timeouts(tmp_path: Path) -> None:
    (tmp_path / "devjobs.py").write_text(textwrap.dedent(DEV_JOBS))
    stack = DevStack(
        tmp_path,
        args=("--tick", str(TICK)),
        redis_url=require_real_redis(),
        modules='["devjobs"]',
        pythonpath=tmp_path,
    )
    with stack, stack.client() as client:
        runner = client.post("/v1/jobs", json={"type": "test_runner", "payload": {"name": "unit"}})
        assert runner.status_code == 201, runner.text
        assert runner.json()["timeout_seconds"] == 300, runner.json()

        submitted = time.monotonic()
        flaky = client.post("/v1/jobs", json={"type": "flaky", "payload": {}})
        assert flaky.status_code == 201, flaky.text
        retried = wait_settled(client, flaky.json()["id"], RETRY_DEADLINE)
        took = time.monotonic() - submitted
        assert retried["state"] == "completed", retried
        assert retried["result"] == {"attempt": 2}, retried
        assert [e["kind"] for e in retried["errors"]] == ["retryable"], retried
        assert took < RETRY_DEADLINE < TICK

        ran = wait_settled(client, runner.json()["id"])
        assert ran["state"] == "completed", ran
        assert ran["result"] == {"suite": "unit", "passed": True}
        assert "running unit" in ran["logs"]

        too_long = client.post("/v1/jobs", json={"type": "echo", "payload": {}, "timeout_seconds": 3600})
        assert too_long.status_code == 422, too_long.text
        assert too_long.json()["error"]["field"] == "timeout_seconds", too_long.json()
    assert stack.code == 0, stack.printed
    assert "Traceback" not in stack.printed
    print(
        f"\nflaky job: failed once, retried after 1 s, completed {took:.1f} s after submit "
        f"(tick {TICK:.0f} s)"
    )


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


def test_jobs_and_the_admin_token_survive_a_restart(tmp_path: Path) -> None:
    """What a developer keeps across a Ctrl-C: the printed token (kept in .jobq/, readable by its owner
    only) and, on the redis-server that `jobq dev` runs with its data in .jobq/, every job."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed: jobq dev keeps jobs in memory then")
    with DevStack(tmp_path) as first, first.client() as client:
        assert "redis-server, data kept in .jobq/redis" in first.output.seen
        done = client.post("/v1/jobs", json={"type": "echo", "payload": {"n": 1}})
        assert done.status_code == 201, done.text
        assert wait_settled(client, done.json()["id"])["state"] == "completed"
        later = client.post("/v1/jobs", json={"type": "echo", "payload": {}, "delay_seconds": 3600})
        assert later.status_code == 201, later.text
    assert first.code == 0, first.printed
    token_file = tmp_path / ".jobq" / "admin-token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert token_file.read_text().strip() == first.token

    with DevStack(tmp_path) as second, second.client() as client:
        assert second.token == first.token
        kept = client.get(f"/v1/jobs/{done.json()['id']}").json()
        assert (kept["state"], kept["result"]) == ("completed", {"n": 1}), kept
        assert client.get(f"/v1/jobs/{later.json()['id']}").json()["state"] == "delayed"
    assert second.code == 0, second.printed
    assert "Traceback" not in first.printed + second.printed


def test_in_memory_says_so_and_requests_are_logged_only_when_asked(tmp_path: Path) -> None:
    with DevStack(tmp_path, args=("--in-memory",)) as quiet, quiet.client() as client:
        assert "embedded backend, in memory" in quiet.output.seen
        assert client.get("/v1/jobs").status_code == 200
        assert client.get("/v1/no-such-route").status_code == 404
    assert "jobq.api.access" not in quiet.printed, quiet.printed

    with DevStack(tmp_path, args=("--in-memory", "--access-log")) as loud, loud.client() as client:
        assert client.get("/v1/jobs").status_code == 200
        loud.output.wait_for(r"jobq\.api\.access\s+request\s+method=GET path=/v1/jobs status=200", 10)
    assert loud.token == quiet.token  # the same .jobq/admin-token


def test_a_token_set_by_the_developer_is_never_echoed(tmp_path: Path) -> None:
    token = "dev-token-set-by-me-0123456789"
    with DevStack(tmp_path, env={"JOBQ_ADMIN_TOKEN": token}) as stack:
        assert "admin token: the one in JOBQ_ADMIN_TOKEN" in stack.output.seen
        assert stack.token is None
        with stack.client(token) as client:
            assert client.get("/v1/queues").status_code == 200
    assert token not in stack.printed
