"""The default local stack end to end: `jobq dev` on a real Redis, driven over HTTP only, as a user runs it.

`python -m bench stack [--quick] [--redis-url URL] [--jobs N] [--batch N] [--single-jobs N] [--clients N]
[--timeout SECONDS] [--no-write] [--json PATH]` (JOBQ_BENCH_QUICK=1 is --quick, JOBQ_BENCH_REDIS_URL is
--redis-url). Two phases, each on a freshly flushed Redis and a fresh `jobq dev` with no tuning flags:

- batch: N no-op `echo` jobs submitted with the admin token in batches (POST /v1/jobs/batch), one client;
- single: N jobs from 8 concurrent clients, one job per POST /v1/jobs, with an API key (the admin token's
  default submit rate, 100/minute, would throttle them).

Each phase runs from the first submit until the queue's completed total says all are done (GET
/v1/queues/{queue} every 0.2 s). Commands are counted by a counting proxy between the stack's gateway and
Redis: `jobq dev` does not expose its gateway's token, so GET /_jobq/commands is out of reach, and the proxy
counts by the same rule (one per command forwarded, PING, MULTI and EXEC free). INFO commandstats on the
same server gives the figure with the scripts' inner calls. The bench's own stats polls are measured
before the run and subtracted (both figures are kept). Without --redis-url a private redis-server on a
spare port is started; a given Redis is FLUSHALLed, so never give it a shared one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import secrets
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import redis

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "docs" / "benchmarks.md"
JOBQ = str(Path(sys.executable).with_name("jobq"))
BEGIN, END = "<!-- bench stack: begin -->", "<!-- bench stack: end -->"
PAYLOAD_BODY = "x" * 170  # with "n", about 200 bytes of JSON: the same payload as the other rows
POLL_EVERY = 0.2
CALIBRATION_POLLS = 5
START_TIMEOUT = 60.0


@dataclass(frozen=True)
class Sizes:
    jobs: int = 10_000  # batch phase
    batch: int = 500
    single_jobs: int = 2_000
    clients: int = 8
    timeout: float = 240.0  # per phase: a slow stack reports what completed instead of running on

    @classmethod
    def quick(cls) -> Sizes:
        return cls(jobs=1_000, batch=500, single_jobs=200, clients=8, timeout=60.0)


# -- pure helpers -------------------------------------------------------------------------------------


def percentile(samples: list[float], q: float) -> float | None:
    """The q-th percentile (0..100), linear between closest ranks (statistics' "inclusive" method)."""
    if not samples:
        return None
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def p50_p99_ms(samples: list[float]) -> list[float] | None:
    p50, p99 = percentile(samples, 50), percentile(samples, 99)
    return None if p50 is None or p99 is None else [p50 * 1000, p99 * 1000]


def epoch(stamp: str) -> float:
    """An API timestamp ("2026-12-01T18:42:40.605000Z") as seconds since the epoch."""
    moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"timestamp without a time zone: {stamp!r}")
    return moment.timestamp()


def replace_section(document: str, section: str) -> str:
    """The document with the text between the stack markers replaced (appended when there are none)."""
    block = f"{BEGIN}\n{section.strip()}\n{END}"
    start, end = document.find(BEGIN), document.find(END)
    if start < 0 or end < start:
        return document.rstrip("\n") + "\n\n" + block + "\n"
    return document[:start] + block + document[end + len(END) :]


def section_of(document: str) -> str | None:
    """The text between the stack markers, or None."""
    start, end = document.find(BEGIN), document.find(END)
    if start < 0 or end < start:
        return None
    return document[start + len(BEGIN) : end].strip()


def per_job(total: int, polls: int, poll_cost: float, jobs: int) -> float:
    """Commands per job once the bench's own stats polls are taken out."""
    return (total - polls * poll_cost) / jobs


# -- the stack under test -----------------------------------------------------------------------------


class Output:
    """Reads a process's output in a thread: keeps the tail, notices the ready line."""

    def __init__(self, stream: Any) -> None:
        self.tail: deque[str] = deque(maxlen=40)
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.thread.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self.tail.append(line.rstrip())
            if line.startswith("jobq dev ready"):
                self.ready.set()


@contextlib.contextmanager
def dev_stack(redis_url: str) -> Iterator[tuple[str, str]]:
    """`jobq dev` on `redis_url` with its defaults; yields (API URL, admin token). SIGTERM on exit."""
    from bench.compare import free_port

    port, gateway_port, token = free_port(), free_port(), secrets.token_urlsafe(24)
    env = {name: value for name, value in os.environ.items() if not name.startswith("JOBQ_")}
    env["JOBQ_ADMIN_TOKEN"] = token  # a developer's own settings must not tune the stack
    command = [JOBQ, "dev", "--port", str(port), "--gateway-port", str(gateway_port)]
    command += ["--redis-url", redis_url]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT
    )
    output = Output(process.stdout)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not output.ready.wait(0.1):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("jobq dev did not start: " + " | ".join(output.tail))
        yield f"http://127.0.0.1:{port}", token
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@dataclass
class Counts:
    billed: int
    server: int


class Meter:
    """Commands the gateway sent (the counting proxy) and commands Redis ran (INFO commandstats)."""

    def __init__(self, proxy: Any, direct: redis.Redis) -> None:
        self.proxy, self.direct = proxy, direct

    def snapshot(self) -> Counts:
        from bench.compare import server_commands

        return Counts(self.proxy.billed(), server_commands(self.direct))


def body(i: int) -> dict[str, Any]:
    return {"type": "echo", "payload": {"body": PAYLOAD_BODY, "n": i}}


@dataclass
class Progress:
    done: int = 0
    failed: int = 0
    polls: int = 0
    at: float = 0.0  # perf_counter when `done` was read


async def queue_totals(client: httpx.AsyncClient, queue: str) -> tuple[int, int]:
    response = await client.get(f"/v1/queues/{queue}")
    response.raise_for_status()
    stats = response.json()
    return int(stats["completed_total"]) + int(stats["failed_total"]), int(stats["failed_total"])


async def watch(client: httpx.AsyncClient, queue: str, target: int, deadline: float) -> Progress:
    """Poll the queue's totals every POLL_EVERY s until `target` jobs are done or the deadline passes."""
    progress = Progress()
    while True:
        progress.done, progress.failed = await queue_totals(client, queue)
        progress.polls += 1
        progress.at = time.perf_counter()
        if progress.done >= target or progress.at > deadline:
            return progress
        await asyncio.sleep(POLL_EVERY)


@dataclass
class Setup:
    queue: str
    baseline: int  # jobs done before the run (the warm-up)
    poll: Counts  # what one stats poll costs


async def prepare(admin: httpx.AsyncClient, submitter: httpx.AsyncClient, meter: Meter) -> Setup:
    """One warm-up job (scripts loaded, consumer started), then the cost of one stats poll."""
    response = await submitter.post("/v1/jobs", json=body(-1))
    response.raise_for_status()
    queue = str(response.json()["queue"])
    progress = await watch(admin, queue, 1, time.perf_counter() + 60)
    if progress.done < 1:
        raise RuntimeError("the warm-up job did not complete within 60 s")
    before = meter.snapshot()
    for _ in range(CALIBRATION_POLLS):
        await queue_totals(admin, queue)
    after = meter.snapshot()
    poll = Counts(
        round((after.billed - before.billed) / CALIBRATION_POLLS),
        round((after.server - before.server) / CALIBRATION_POLLS),
    )
    return Setup(queue, progress.done, poll)


def figures(
    name: str, jobs: int, seconds: float, progress: Progress, setup: Setup, before: Counts, after: Counts
) -> dict[str, Any]:
    done = progress.done - setup.baseline
    billed, server = after.billed - before.billed, after.server - before.server
    return {
        "row": name,
        "jobs": jobs,
        "completed": done - progress.failed,
        "failed": progress.failed,
        "complete": done >= jobs,
        "e2e_s": seconds,
        "e2e_per_s": done / seconds,
        "billed_per_job": per_job(billed, progress.polls, setup.poll.billed, jobs),
        "server_per_job": per_job(server, progress.polls, setup.poll.server, jobs),
        "billed_per_job_with_polls": billed / jobs,
        "server_per_job_with_polls": server / jobs,
        "polls": progress.polls,
        "billed_per_poll": setup.poll.billed,
        "server_per_poll": setup.poll.server,
    }


async def batch_phase(api: str, token: str, meter: Meter, sizes: Sizes) -> dict[str, Any]:
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=api, headers=auth, timeout=120) as client:
        setup = await prepare(client, client, meter)
        before = meter.snapshot()
        start = time.perf_counter()
        watcher = asyncio.create_task(
            watch(client, setup.queue, setup.baseline + sizes.jobs, start + sizes.timeout)
        )
        for first in range(0, sizes.jobs, sizes.batch):
            batch = [body(i) for i in range(first, min(first + sizes.batch, sizes.jobs))]
            (await client.post("/v1/jobs/batch", json={"jobs": batch})).raise_for_status()
        submit_s = time.perf_counter() - start
        progress = await watcher
        after = meter.snapshot()
    row = figures("batch", sizes.jobs, progress.at - start, progress, setup, before, after)
    row.update(batch=sizes.batch, submit_per_s=sizes.jobs / submit_s)
    return row


async def single_phase(api: str, token: str, meter: Meter, sizes: Sizes) -> dict[str, Any]:
    admin_auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=api, headers=admin_auth, timeout=120) as admin:
        created = await admin.post("/v1/keys", json={"owner": "bench", "rate": "100000000/minute"})
        created.raise_for_status()
        user_auth = {"Authorization": f"Bearer {created.json()['key']}"}
        limits = httpx.Limits(max_connections=sizes.clients, max_keepalive_connections=sizes.clients)
        async with httpx.AsyncClient(base_url=api, headers=user_auth, limits=limits, timeout=120) as user:
            setup = await prepare(admin, user, meter)
            submitted: dict[str, float] = {}  # job id -> wall clock when its POST was sent
            latencies: list[float] = []
            errors = 0
            numbers = iter(range(sizes.single_jobs))
            before = meter.snapshot()
            start = time.perf_counter()
            deadline = start + sizes.timeout

            async def frontend() -> None:
                nonlocal errors
                for i in numbers:
                    if time.perf_counter() > deadline:
                        return
                    sent, clock = time.time(), time.perf_counter()
                    response = await user.post("/v1/jobs", json=body(i))
                    latencies.append(time.perf_counter() - clock)
                    if response.status_code >= 400:
                        errors += 1
                    else:
                        submitted[response.json()["id"]] = sent

            target = setup.baseline + sizes.single_jobs
            watcher = asyncio.create_task(watch(admin, setup.queue, target, deadline))
            await asyncio.gather(*(frontend() for _ in range(sizes.clients)))
            submit_s = time.perf_counter() - start
            progress = await watcher
            after = meter.snapshot()
            waits = await completion_waits(user, submitted)  # after the window: not in the counts
    row = figures("single", sizes.single_jobs, progress.at - start, progress, setup, before, after)
    row.update(
        clients=sizes.clients,
        submit_errors=errors,
        submit_per_s=len(latencies) / submit_s,
        submit_ms=p50_p99_ms(latencies),
        completion_ms=p50_p99_ms(waits),
        completion_samples=len(waits),
    )
    return row


async def completion_waits(client: httpx.AsyncClient, submitted: dict[str, float]) -> list[float]:
    """Seconds from each POST to its job's finished_at, for the completed jobs the queue still keeps."""
    waits, cursor = [], None
    while True:
        params: dict[str, Any] = {"state": "completed", "limit": 200}
        if cursor:
            params["cursor"] = cursor
        response = await client.get("/v1/jobs", params=params)
        response.raise_for_status()
        page = response.json()
        for job in page["jobs"]:
            if job["id"] in submitted and job.get("finished_at"):
                waits.append(epoch(job["finished_at"]) - submitted[job["id"]])
        cursor = page.get("cursor")
        if not cursor or not page["jobs"]:
            return waits


def run(host: str, port: int, sizes: Sizes) -> list[dict[str, Any]]:
    """Both phases on the Redis at host:port (flushed before each), each through a fresh `jobq dev`."""
    from bench.proxy import ProxyProcess

    direct = redis.Redis(host=host, port=port)
    rows = []
    try:
        for phase in (batch_phase, single_phase):
            direct.flushall()
            with ProxyProcess(port, host) as proxy, dev_stack(f"redis://127.0.0.1:{proxy.port}/0") as stack:
                print(f"-- stack {phase.__name__.removesuffix('_phase')}", flush=True)
                rows.append(asyncio.run(phase(*stack, Meter(proxy, direct), sizes)))
        direct.flushall()
    finally:
        direct.close()
    return rows


# -- report -------------------------------------------------------------------------------------------


def _ms(value: list[float] | None) -> str:
    return "n/a" if not value else f"{value[0]:,.0f} / {value[1]:,.0f}"


def table(rows: list[dict[str, Any]]) -> str:
    by = {row["row"]: row for row in rows}
    batch, single = by.get("batch", {}), by.get("single", {})

    def cells(fmt: str, key: str) -> str:
        values = []
        for row in (batch, single):
            value = row.get(key)
            values.append("n/a" if value is None else fmt.format(value))
        return " | ".join(values)

    single_label = f"single submits, {single.get('clients', 8)} clients"
    lines = [
        f"| figure | batch submits ({batch.get('batch', 'n/a')} per request) | {single_label} |",
        "|---|---:|---:|",
        f"| jobs | {cells('{:,}', 'jobs')} |",
        f"| all completed | {cells('{}', 'complete')} |",
        f"| end-to-end jobs/s | {cells('{:,.1f}', 'e2e_per_s')} |",
        f"| end-to-end s | {cells('{:.2f}', 'e2e_s')} |",
        f"| submits, jobs/s | {cells('{:,.0f}', 'submit_per_s')} |",
        f"| submit latency p50 / p99 ms | n/a | {_ms(single.get('submit_ms'))} |",
        f"| submit-to-completion p50 / p99 ms | n/a | {_ms(single.get('completion_ms'))} |",
        f"| billed commands/job (gateway unit) | {cells('{:.2f}', 'billed_per_job')} |",
        f"| server commands/job (inner calls too) | {cells('{:.2f}', 'server_per_job')} |",
        f"| billed commands/job, bench polls included | {cells('{:.2f}', 'billed_per_job_with_polls')} |",
        f"| failed jobs | {cells('{:,}', 'failed')} |",
    ]
    return "\n".join(lines)


def section(rows: list[dict[str, Any]], command: str, machine: str, ratio: str | None = None) -> str:
    from datetime import UTC

    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    single = next((row for row in rows if row["row"] == "single"), {})
    notes = [
        "`jobq dev` with its defaults on a real Redis, driven over HTTP only; no-op `echo` jobs with a "
        "~200-byte payload; timed from the first submit until the queue's completed total reaches N "
        f"(GET /v1/queues/{{queue}} every {POLL_EVERY:g} s). One warm-up job runs before each phase.",
        "Batch submits use the admin token; single submits an API key (the admin token's default rate, "
        "100/minute, would throttle them). Each phase has a fresh stack on a flushed Redis.",
        "Commands: counted between the stack's gateway and Redis by bench/proxy.py with the gateway's "
        "billing rule (PING, MULTI and EXEC free), since `jobq dev` keeps its gateway token to itself; "
        "server commands are INFO commandstats, scripts' inner calls included. The bench's stats polls "
        "are measured (one poll costs about "
        f"{single.get('billed_per_poll', 'n/a')} billed, {single.get('server_per_poll', 'n/a')} server "
        "commands) and subtracted, except in the row that says they are included.",
        "Submit-to-completion: from the client sending the POST to the job's finished_at (one machine, "
        f"one clock), over the {single.get('completion_samples', 0):,} completed jobs the queue still keeps "
        "(retention keeps the last 1,000).",
    ]
    lines = [
        "## The default local stack end to end (`jobq dev`)",
        "",
        f"- Date: {when}",
        f"- Machine: {machine}",
        f"- Command: `{command}`",
        "",
        table(rows),
        "",
    ]
    if ratio:
        lines += [ratio, ""]
    lines += [*(f"- {note}" for note in notes), "", "```json", json.dumps(rows, indent=1), "```"]
    return "\n".join(lines)


def ratio_line(rows: list[dict[str, Any]], bullmq_process_per_s: float | None) -> str | None:
    batch = next((row for row in rows if row["row"] == "batch"), None)
    if batch is None or not bullmq_process_per_s:
        return None
    ours = batch["e2e_per_s"]
    return (
        f"Default local stack e2e (batch submits) / bullmq-py processing: {ours:,.1f}/s against "
        f"{bullmq_process_per_s:,.0f}/s = {ours / bullmq_process_per_s:.2f} (same Redis, same run; "
        f"target >= 1, issue 10: {'met' if ours >= bullmq_process_per_s else 'MISSED'})"
    )


def add_size_options(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    full = Sizes()
    parser.add_argument(f"--{prefix}jobs", type=int, help=f"batch-phase jobs (default {full.jobs:,})")
    parser.add_argument(f"--{prefix}batch", type=int, help=f"jobs per batch request (default {full.batch})")
    parser.add_argument(f"--{prefix}single-jobs", type=int, help=f"single-phase jobs ({full.single_jobs:,})")
    parser.add_argument(f"--{prefix}clients", type=int, help=f"concurrent single submitters ({full.clients})")
    parser.add_argument(f"--{prefix}timeout", type=float, help=f"seconds per phase ({full.timeout:g})")


def sizes_from(args: argparse.Namespace, quick: bool, prefix: str = "") -> Sizes:
    key = prefix.replace("-", "_")
    chosen = {
        name: getattr(args, key + name)
        for name in ("jobs", "batch", "single_jobs", "clients", "timeout")
        if getattr(args, key + name) is not None
    }
    return dataclasses.replace(Sizes.quick() if quick else Sizes(), **chosen)


def main(argv: list[str] | None = None) -> None:
    from bench.compare import machine, redis_endpoint, redis_server

    parser = argparse.ArgumentParser(prog="python -m bench stack", description=__doc__)
    parser.add_argument("--quick", action="store_true", default=os.environ.get("JOBQ_BENCH_QUICK") == "1")
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("JOBQ_BENCH_REDIS_URL"),
        help="an existing Redis to use (it is FLUSHALLed); default: a private redis-server on a spare port",
    )
    add_size_options(parser)
    parser.add_argument("--no-write", action="store_true", help="print only, leave docs/benchmarks.md")
    parser.add_argument("--json", type=Path, help="also write the raw rows to this file")
    args = parser.parse_args(sys.argv[2:] if argv is None and sys.argv[1:2] == ["stack"] else argv)
    sizes = sizes_from(args, args.quick)
    if args.redis_url:
        redis_endpoint(args.redis_url)  # a bad URL fails here, before anything starts
    with redis_server(args.redis_url) as (host, port):
        rows = run(host, port, sizes)
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    if not args.no_write:
        command = "python -m bench stack " + " ".join(sys.argv[2:] if argv is None else argv)
        text = section(rows, command.strip(), machine())
        REPORT.write_text(replace_section(REPORT.read_text() if REPORT.exists() else "", text))
        print(f"written to {REPORT.relative_to(ROOT)}")


if __name__ == "__main__":
    main(sys.argv[1:])
