"""End to end: the `jobq` client commands against a real API (uvicorn) on the gateway and real Redis.

Commands run through typer's CliRunner (one smoke test runs the installed `jobq` script); keys are made
with the CLI itself from the bootstrap admin token; a real Worker runs jobs in a thread for `--watch`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from typer.testing import CliRunner

from functions.consumer.runtime import build_runtime
from infra.cli import app
from shared.consumer import ConsumerConfig
from shared.consumer.worker import Worker
from shared.registry import Registry
from shared.settings import Settings
from tests.support.api_fixtures import ADMIN_TOKEN, ServedApp, gateway_settings
from tests.support.gateway import ThreadGateway

pytestmark = pytest.mark.realredis


@pytest.fixture
def gateway(real_gateway: ThreadGateway) -> ThreadGateway:
    """The CLI is a client of the API: run it against real Redis only (the API's own tests do both)."""
    return real_gateway


@pytest.fixture
def api_settings(gateway: ThreadGateway, unique_name: str) -> Settings:
    """The API in this process logs to `sys.stderr` as it is at each line, which CliRunner swaps for the
    CLI's: keep its request lines out of what the tests read as the CLI's stderr."""
    prefix = "k" + hashlib.sha1(unique_name.encode()).hexdigest()[:20]
    return gateway_settings(gateway, prefix, log_level="WARNING")


@pytest.fixture
def api_registry(consumer_registry: Registry) -> Registry:
    """The API validates payloads against the test types the worker runs (echo, permanent, ...)."""
    return consumer_registry


class Cli:
    """`cli("status", id, key=...)` runs `jobq` in-process against the served API."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.runner = CliRunner()

    def __call__(
        self, *args: str, key: str | None = ADMIN_TOKEN, input: str | None = None, columns: int = 200
    ) -> Result:
        env = {"JOBQ_API_URL": self.url, "JOBQ_API_KEY": key, "COLUMNS": str(columns), "NO_COLOR": "1"}
        return self.runner.invoke(app, list(args), env=env, input=input)

    def json(self, *args: str, key: str | None = ADMIN_TOKEN) -> Any:
        result = self("--json", *args, key=key)
        assert result.exit_code == 0, (result.stdout, result.stderr)
        return json.loads(result.stdout)

    def user(self, owner: str, *extra: str) -> str:
        """A fresh API key of `owner`, made with `jobq keys create` and the admin token."""
        return str(self.json("keys", "create", "--owner", owner, *extra)["key"])


@pytest.fixture
def cli(api_server: ServedApp) -> Cli:
    return Cli(api_server.url)


def assert_clean_error(result: Result, exit_code: int, *needles: str) -> None:
    assert result.exit_code == exit_code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    assert "error: " in result.stderr, result.stderr  # after the question, when one was asked
    for needle in needles:
        assert needle in result.stderr, result.stderr


# Jobs: submit -> status -> list -> cancel -> retry.


def test_submit_status_list_cancel_retry(cli: Cli) -> None:
    alice = cli.user("alice")

    submitted = cli("submit", "echo", "--payload", '{"value": [1, 2]}', "--priority", "high", key=alice)
    assert (submitted.exit_code, submitted.stderr) == (0, "")
    job_id, state = submitted.stdout.split()
    assert state == "waiting"

    job = cli.json("status", job_id, key=alice)
    assert (job["id"], job["state"], job["priority"]) == (job_id, "waiting", 3)
    assert (job["payload"]["value"], job["owner"]) == ([1, 2], "alice")

    shown = cli("status", job_id, key=alice)
    assert shown.exit_code == 0
    assert f"job {job_id}" in shown.stdout and "waiting" in shown.stdout and '"value":[1,2]' in shown.stdout

    other = cli.json("submit", "echo", "--payload", "{}", "--delay", "3600", "--max-attempts", "7", key=alice)
    assert (other["state"], other["max_attempts"]) == ("delayed", 7)

    listed = cli("list", key=alice)
    assert listed.exit_code == 0
    assert job_id in listed.stdout and other["id"] in listed.stdout
    narrow = cli("list", key=alice, columns=80)
    assert [cells[:3] for cells in table_rows(narrow.stdout)] == [
        [other["id"], "echo", "delayed"],
        [job_id, "echo", "waiting"],
    ]
    assert "hidden at 80 columns: queue, prio, progress, attempts" in " ".join(narrow.stdout.split())
    page = cli.json("list", "--state", "delayed", key=alice)
    assert [j["id"] for j in page["jobs"]] == [other["id"]]
    first = cli.json("list", "--limit", "1", key=alice)
    assert [j["id"] for j in first["jobs"]] == [other["id"]]  # newest first
    rest = cli.json("list", "--limit", "1", "--cursor", first["cursor"], key=alice)
    assert [j["id"] for j in rest["jobs"]] == [job_id]

    cancelled = cli("cancel", job_id, key=alice)
    assert cancelled.exit_code == 0 and "cancelled" in cancelled.stdout
    assert cli.json("status", job_id, key=alice)["state"] == "cancelled"

    retried = cli("retry", job_id, key=alice)
    assert retried.exit_code == 0 and "waiting" in retried.stdout
    assert cli.json("status", job_id, key=alice)["state"] == "waiting"

    again = cli("retry", job_id, key=alice)  # a waiting job cannot be retried: the API's 409, cleanly
    assert_clean_error(again, 1, "invalid_transition", "409")

    bob = cli.user("bob")
    assert_clean_error(cli("status", job_id, key=bob), 1, "not_found")  # not bob's job
    assert cli.json("list", key=bob)["jobs"] == []


def test_payload_from_file_stdin_and_idempotent_repeat(cli: Cli, tmp_path: Path) -> None:
    key = cli.user("carol")
    payload = tmp_path / "payload.json"
    payload.write_text('{"value": {"from": "file"}}')
    from_file = cli.json("submit", "echo", "--payload", f"@{payload}", key=key)
    assert from_file["payload"]["value"] == {"from": "file"}

    from_stdin = cli("--json", "submit", "echo", "--payload", "-", key=key, input='{"value": "stdin"}')
    assert from_stdin.exit_code == 0, from_stdin.stderr
    assert json.loads(from_stdin.stdout)["payload"]["value"] == "stdin"

    first = cli("submit", "echo", "--idempotency-key", "order-42", key=key)
    repeat = cli("submit", "echo", "--idempotency-key", "order-42", key=key)
    assert first.exit_code == repeat.exit_code == 0
    assert first.stdout.split()[0] == repeat.stdout.split()[0]
    assert "existing job" in repeat.stdout and "existing job" not in first.stdout


# Keys.


def test_keys_create_list_revoke_and_the_created_key_works(cli: Cli) -> None:
    created = cli("keys", "create", "--owner", "dave", "--rate", "100/min")
    assert created.exit_code == 0, created.stderr
    secret = created.stdout.strip().splitlines()[-1]
    assert secret.startswith("jq_")
    assert "not shown again" in created.stderr
    key_id = created.stdout.split()[2]

    submitted = cli.json("submit", "echo", key=secret)
    assert submitted["owner"] == "dave"

    listed = cli("keys", "list")
    assert listed.exit_code == 0
    assert key_id in listed.stdout and "dave" in listed.stdout and "100/min" in listed.stdout
    assert secret not in listed.stdout
    records = {k["id"]: k for k in cli.json("keys", "list")["keys"]}
    assert records[key_id]["owner"] == "dave" and records[key_id]["revoked_at"] is None

    admin = cli.json("keys", "create", "--owner", "erin", "--admin")
    assert admin["admin"] is True
    assert cli("keys", "list", key=admin["key"]).exit_code == 0
    assert_clean_error(cli("keys", "list", key=secret), 1, "forbidden", "403", "admin key")

    declined = cli("keys", "revoke", key_id, input="n\n")
    assert_clean_error(declined, 1, "not confirmed")
    assert cli.json("status", submitted["id"], key=secret)["owner"] == "dave"  # still works

    revoked = cli("keys", "revoke", key_id, "--yes")
    assert revoked.exit_code == 0 and key_id in revoked.stdout
    assert cli.json("keys", "list")["keys"][0]["revoked_at"] is not None
    refused = cli("status", submitted["id"], key=secret)
    assert_clean_error(refused, 1, "unauthorized", "401", "JOBQ_API_KEY")
    assert secret not in refused.stdout + refused.stderr
    assert_clean_error(cli("keys", "revoke", "nosuchkey", "--yes"), 1, "not_found")


# Queues.


def test_stats_and_queue_actions(cli: Cli) -> None:
    user = cli.user("frank")
    for _ in range(3):
        cli.json("submit", "echo", key=user)
    cli.json("submit", "flaky", "--delay", "60", key=user)

    queues = {q["queue"]: q for q in cli.json("stats")["queues"]}
    assert queues["echo"]["counts"]["waiting"] == 3 and queues["flaky"]["counts"]["delayed"] == 1
    assert cli.json("stats", "echo")["counts"]["waiting"] == 3

    table = cli("stats")
    assert table.exit_code == 0
    rows = {cells[0]: cells for cells in table_rows(table.stdout)}
    # queue, paused, waiting, delayed, active, completed, failed, cancelled
    assert rows["echo"][:8] == ["echo", "no", "3", "0", "0", "0", "0", "0"]
    assert rows["flaky"][:8] == ["flaky", "no", "0", "1", "0", "0", "0", "0"]
    assert rows["all queues"][2:4] == ["3", "1"]  # the footer sums every queue

    assert cli("queues", "pause", "echo").stdout.strip() == "queue echo paused"
    assert cli.json("stats", "echo")["paused"] is True
    assert {cells[0]: cells for cells in table_rows(cli("stats").stdout)}["echo"][1] == "paused"
    narrow = cli("stats", columns=80)  # only the counts, the flag next to the name, nothing cut short
    assert all(len(line) <= 80 for line in narrow.stdout.splitlines())
    narrow_rows = {cells[0]: cells for cells in table_rows(narrow.stdout)}
    assert narrow_rows["echo (paused)"][1:] == ["3", "0", "0", "0", "0", "0"]
    assert "…" not in narrow.stdout
    assert "hidden at 80 columns: total completed, total failed, total retried, total cancelled, avg run" in (
        " ".join(narrow.stdout.split())  # the caption wraps at the table's width
    )
    assert "hidden" not in cli("stats").stdout  # 200 columns: every column
    assert cli.json("queues", "resume", "echo") == {"queue": "echo", "paused": False, "count": None}
    assert cli.json("stats", "echo")["paused"] is False

    declined = cli("queues", "clean", "echo", "--state", "completed", input="n\n")
    assert_clean_error(declined, 1, "not confirmed")
    assert "Remove up to 1000 completed jobs" in declined.stderr
    cleaned = cli.json("queues", "clean", "echo", "--state", "cancelled", "--older-than", "1h", "--yes")
    assert cleaned["count"] == 0
    agreed = cli("queues", "retry-failed", "echo", input="y\n")
    assert agreed.exit_code == 0 and "0 failed jobs of queue echo" in agreed.stdout

    assert_clean_error(cli("stats", key=user), 1, "forbidden")
    bad_age = cli("queues", "clean", "echo", "--state", "failed", "--older-than", "soon", "--yes")
    assert_clean_error(bad_age, 2, "invalid duration")


def table_rows(text: str) -> list[list[str]]:
    """The cells of each body row of a rich table."""
    return [[cell.strip() for cell in line.split("│")[1:-1]] for line in text.splitlines() if "│" in line]


# Errors.


def test_errors_are_clean_lines_with_exit_codes(cli: Cli) -> None:
    user = cli.user("gina")

    bad = cli("submit", "echo", "--payload", '{"fail_times": "many"}', key=user)
    assert_clean_error(bad, 1, "invalid", "422", "field: payload.fail_times")
    assert_clean_error(cli("submit", "nosuchtype", key=user), 1, "unknown_type", "field: type")
    assert_clean_error(cli("status", "01JZZZZZZZZZZZZZZZZZZZZZZZ", key=user), 1, "not_found", "404")
    assert_clean_error(cli("cancel", "../keys", key=user), 2, "invalid id")

    assert_clean_error(cli("submit", "echo", "--payload", "{nope", key=user), 2, "not valid JSON", "line 1")
    assert_clean_error(cli("submit", "echo", "--payload", "@/no/such/file.json", key=user), 2, "cannot read")
    assert_clean_error(cli("submit", "echo", "--priority", "asap", key=user), 2, "--priority")
    usage = cli("list", "--state", "nonsense", key=user)  # typer's own usage error
    assert usage.exit_code == 2 and "Traceback" not in usage.stdout + usage.stderr

    missing = cli("list", key=None)
    assert_clean_error(missing, 1, "unauthorized", "hint: pass --key or set JOBQ_API_KEY")
    wrong = cli("list", key="jq_nothing_here")
    assert_clean_error(wrong, 1, "unauthorized")
    assert "jq_nothing_here" not in wrong.stdout + wrong.stderr
    helped = cli("--help", key="jq_help_must_not_show_this")
    assert helped.exit_code == 0 and "JOBQ_API_KEY" in helped.stdout
    assert "must_not_show" not in helped.stdout
    # The connection options and --json are the root's, given once before the command.
    assert cli("--key", user, "--timeout", "5", "list", key=None).exit_code == 0
    after = cli("list", "--json", key=user)
    assert after.exit_code == 2 and "No such option: --json" in after.stderr
    spaced = cli("list", key="has a space secret")
    assert_clean_error(spaced, 2, "invalid characters")
    assert "secret" not in spaced.stderr


def test_unreachable_api_is_one_clear_line(cli: Cli) -> None:
    with socket.socket() as probe:  # a port nothing listens on once this socket closes
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    down = Cli(f"http://127.0.0.1:{port}")
    result = down("status", "01JZZZZZZZZZZZZZZZZZZZZZZZ")
    assert_clean_error(result, 3, f"cannot reach jobq API at http://127.0.0.1:{port}: connection refused")
    assert result.stderr.count("\n") == 1  # one line, not wrapped
    assert ADMIN_TOKEN not in result.stdout + result.stderr

    with not_jobq_server() as other:  # something answers, but not with the jobq API
        assert_clean_error(Cli(other)("stats"), 3, "unexpected answer", "HTTP 404")
    assert_clean_error(Cli("ftp://example.com")("stats"), 2, "URL must be an http(s) URL", "--url")


@contextmanager
def not_jobq_server() -> Iterator[str]:
    """A plain HTTP server answering 404 pages in HTML."""

    class Quiet(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_error(404)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# --watch with a worker running the jobs.


class RunningWorker:
    """A real Worker on its own event loop in a thread, on the API's settings and job types."""

    def __init__(self, settings: Settings, registry: Registry) -> None:
        self._settings, self._registry = settings, registry
        self._loop: asyncio.AbstractEventLoop | None = None
        self._worker: Worker | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._run(),), daemon=True)

    async def _run(self) -> None:
        config = ConsumerConfig(heartbeat_interval=0.05, grace=2.0)
        runtime = build_runtime(self._settings, registry=self._registry, config=config)
        self._loop = asyncio.get_running_loop()
        self._worker = Worker(runtime.consumer, idle_min=0.05, idle_max=0.1)
        self._ready.set()
        try:
            await self._worker.run()
        finally:
            await runtime.redis.close()

    def __enter__(self) -> RunningWorker:
        self._thread.start()
        assert self._ready.wait(10), "worker did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._worker is not None
        self._loop.call_soon_threadsafe(self._worker.stop)
        self._thread.join(timeout=15)


@pytest.fixture
def worker(api_settings: Settings, consumer_registry: Registry, api_server: ServedApp) -> Iterator[None]:
    with RunningWorker(api_settings, consumer_registry):
        yield


def test_status_watch_follows_jobs_to_their_end(cli: Cli, worker: None) -> None:
    """The watch returns when the job is terminal, or fails at its --within deadline; the exit code says
    how the job ended. No sleeps: each long poll answers as soon as the job changes."""
    user = cli.user("hana")
    done = cli.json("submit", "echo", "--payload", '{"value": "hello"}', key=user)
    watched = cli("status", done["id"], "--watch", "--within", "60", key=user)
    assert watched.exit_code == 0, (watched.stdout, watched.stderr)
    assert f"job {done['id']} completed" in watched.stdout and '"hello"' in watched.stdout
    assert "100%" in watched.stdout  # the progress bar's last frame

    failing = cli.json("submit", "permanent", key=user)
    lines = cli("--json", "status", failing["id"], "--watch", "--within", "60", key=user)
    assert lines.exit_code == 4, (lines.stdout, lines.stderr)
    changes = [json.loads(line) for line in lines.stdout.splitlines()]
    assert changes[-1]["terminal"] is True and changes[-1]["status"]["state"] == "failed"
    assert "can never work" in changes[-1]["status"]["error"]["message"]
    assert all(not change["terminal"] for change in changes[:-1])

    human = cli("status", failing["id"], "--watch", key=user)  # already terminal: one answer
    assert human.exit_code == 4 and "failed: this input can never work" in human.stdout

    waiting = cli.json("submit", "echo", "--delay", "3600", key=user)
    cli.json("cancel", waiting["id"], key=user)
    assert cli("status", waiting["id"], "--watch", key=user).exit_code == 5

    later = cli.json("submit", "echo", "--delay", "3600", key=user)  # cannot finish while watched
    gave_up = cli("status", later["id"], "--watch", "--within", "0.3", key=user)
    assert_clean_error(gave_up, 6, f"job {later['id']} still delayed after 0.3 s")
    assert_clean_error(cli("status", "01JZZZZZZZZZZZZZZZZZZZZZZZ", "--watch", key=user), 1, "not_found")


def test_flow_submit_show_and_depends_on(cli: Cli, worker: None) -> None:
    """A flow submitted from a file, shown as a tree while it waits and once it ran; a chain by
    --depends-on."""
    user = cli.user("ines")
    flow = {
        "type": "echo",
        "payload": {"value": "parent"},
        "children": [
            {"type": "echo", "payload": {"value": "a"}},
            {"type": "noop", "payload": {}, "on_failure": "ignore"},
        ],
    }
    submitted = cli("flow", "submit", "-", key=user, input=json.dumps(flow))
    assert submitted.exit_code == 0, (submitted.stdout, submitted.stderr)
    root = submitted.stdout.splitlines()[0].split()
    assert root[0] == "echo" and root[2] == "waiting-children", submitted.stdout
    assert submitted.stdout.count("└──") + submitted.stdout.count("├──") == 2  # two children under it
    watched = cli("status", root[1], "--watch", "--within", "60", key=user)
    assert watched.exit_code == 0, (watched.stdout, watched.stderr)
    tree = cli.json("flow", "show", root[1], key=user)
    assert [c["job"]["state"] for c in tree["children"]] == ["completed", "completed"]
    shown = cli("flow", "show", root[1], key=user)
    assert shown.exit_code == 0 and shown.stdout.count("completed") == 3, shown.stdout
    assert "waits for" in cli("status", root[1], key=user).stdout

    first = cli.json("submit", "echo", "--delay", "3600", key=user)
    chained = cli.json("submit", "echo", "--depends-on", first["id"], key=user)
    assert chained["state"] == "waiting-children" and chained["depends_on"] == [first["id"]]
    assert_clean_error(cli("submit", "echo", "--depends-on", "nope", key=user), 1, "depends_on[0]")
    assert_clean_error(cli("flow", "show", root[1], key=cli.user("mallory")), 1, "not_found")


# The installed script.


def test_installed_jobq_script_smoke(cli: Cli) -> None:
    script = Path(sys.executable).parent / "jobq"
    env = {**os.environ, "JOBQ_API_URL": cli.url, "JOBQ_API_KEY": ADMIN_TOKEN}
    run = subprocess.run(
        [str(script), "--json", "submit", "echo", "--payload", '{"value": 1}'],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["state"] == "waiting"
    down = subprocess.run(
        [str(script), "--url", "http://127.0.0.1:9", "stats"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert down.returncode == 3 and "Traceback" not in down.stderr
    assert "cannot reach jobq API at http://127.0.0.1:9" in down.stderr
