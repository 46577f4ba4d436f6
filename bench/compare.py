"""Side-by-side benchmark: jobq against BullMQ's Python port, RQ and arq on the same Redis server.

`python -m bench compare [--quick] [--jobs N] [--idle SECONDS] [--only NAME,...] [--no-write]`
(JOBQ_BENCH_QUICK=1 is --quick: 1,000 jobs, 10 s idle). It starts a private redis-server on a spare
loopback port (so it may flush it between phases and never touches a shared one), a counting proxy in
front of it for the reference queues (commands their clients send), and reads INFO commandstats for the
server-side count (which includes commands issued inside Lua scripts). The reference queues run in their
own virtualenv, bench/.venv, created here on first use; they are never product dependencies. jobq runs
through its REST gateway (HTTP per call) and is counted at the gateway, as Upstash bills; the others talk
RESP over TCP. The table is printed and written to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis

from bench.proxy import ProxyProcess

ROOT = Path(__file__).resolve().parent.parent
BENCH_VENV = ROOT / "bench" / ".venv"
REFERENCE = ROOT / "bench" / "reference"
REPORT = ROOT / "docs" / "benchmarks.md"
REFERENCE_PACKAGES = ["bullmq", "rq", "arq", "redis"]
REFERENCES = ("bullmq", "rq", "arq")
PRICE_PER_COMMAND = 0.20 / 100_000  # Upstash pay-as-you-go
# The driver's own bookkeeping calls, left out of the server-side counts.
DRIVER_COMMANDS = {"info", "flushall", "config", "ping", "memory"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def private_redis() -> Iterator[int]:
    """A throwaway redis-server on a spare loopback port, shut down on exit."""
    port = free_port()
    process = subprocess.Popen(
        ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(redis.ConnectionError):
                if client.ping():
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("private redis-server did not start")
            time.sleep(0.05)
        yield port
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=10)


def redis_endpoint(url: str) -> tuple[str, int]:
    """Host and port of a redis:// URL (port 6379 when it names none)."""
    parts = urlsplit(url)
    if parts.scheme != "redis" or not parts.hostname:
        raise ValueError(f"not a redis://host[:port] URL: {url!r}")
    return parts.hostname, parts.port or 6379


@contextlib.contextmanager
def redis_server(url: str | None) -> Iterator[tuple[str, int]]:
    """The Redis at `url` (it will be flushed), or a private one on a spare loopback port when None."""
    if url is None:
        with private_redis() as port:
            yield "127.0.0.1", port
        return
    host, port = redis_endpoint(url)
    client = redis.Redis(host=host, port=port)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        raise SystemExit(f"no Redis answers at {url}: {exc}") from None
    finally:
        client.close()
    yield host, port


@dataclass
class Snapshot:
    client_commands: int
    server_commands: int
    used_memory: int
    at: float = field(default_factory=time.perf_counter)


def server_commands(client: redis.Redis) -> int:
    stats: dict[str, Any] = client.info("commandstats")  # type: ignore[assignment]
    total = 0
    for name, values in stats.items():
        command = name.removeprefix("cmdstat_").split("|")[0]
        if command not in DRIVER_COMMANDS:
            total += int(values["calls"])
    return total


def used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])  # type: ignore[index]


def ensure_bench_venv() -> Path:
    python = BENCH_VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {BENCH_VENV} with {', '.join(REFERENCE_PACKAGES)}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
        pip = [str(python), "-m", "pip", "install", "--quiet", *REFERENCE_PACKAGES]
        subprocess.run(pip, check=True)
    return python


def run_reference(name: str, python: Path, redis_port: int, jobs: int, idle: float) -> dict[str, Any]:
    """Run one reference script through the proxy, snapshotting counts and memory at each of its marks."""
    direct = redis.Redis(port=redis_port)
    direct.flushall()
    with ProxyProcess(redis_port) as proxy:
        command = [str(python), str(REFERENCE / f"{name}_ref.py"), "--port", str(proxy.port)]
        command += ["--direct-port", str(redis_port), "--jobs", str(jobs), "--idle", str(idle)]
        process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REFERENCE
        )
        assert process.stdin is not None and process.stdout is not None
        marks: dict[str, Snapshot] = {}
        figures: dict[str, Any] = {}
        for line in process.stdout:
            if line.startswith("MARK "):
                phase = line.split()[1]
                if phase.startswith("reset"):
                    direct.flushall()
                marks[phase] = Snapshot(proxy.total(), server_commands(direct), used_memory(direct))
                process.stdin.write("OK\n")
                process.stdin.flush()
            elif line.startswith("RESULT "):
                figures = json.loads(line[len("RESULT ") :])
        if process.wait(timeout=60) != 0 or not figures:
            raise RuntimeError(f"{name} reference run failed (exit {process.returncode})")
    direct.flushall()
    direct.close()
    return summarise(name, figures, marks, jobs, idle)


def process_rate(figures: dict[str, Any], jobs: int) -> float:
    """Jobs per second of the median processing pass (one pass where a queue's script times only one)."""
    return jobs / statistics.median(figures.get("process_runs_s") or [figures["process_s"]])


def summarise(
    name: str, figures: dict[str, Any], marks: dict[str, Snapshot], jobs: int, idle: float
) -> dict[str, Any]:
    def delta(first: str, last: str, unit: str) -> int:
        return int(getattr(marks[last], unit) - getattr(marks[first], unit))

    bulk_s = figures.get("enqueue_bulk_s")
    return {
        "queue": name,
        "transport": "TCP (RESP)",
        "enqueue_single_per_s": jobs / figures["enqueue_single_s"],
        "enqueue_bulk_per_s": jobs / bulk_s if bulk_s else None,
        "process_per_s": process_rate(figures, jobs),
        "process_runs_s": figures.get("process_runs_s", [figures["process_s"]]),
        "e2e_s": figures["e2e_s"],
        "commands_per_job_single": delta("start", "processed", "client_commands") / jobs,
        "commands_per_job_bulk": delta("reset_e2e", "e2e_done", "client_commands") / jobs,
        "server_commands_per_job_single": delta("start", "processed", "server_commands") / jobs,
        "server_commands_per_job_bulk": delta("reset_e2e", "e2e_done", "server_commands") / jobs,
        "idle_commands_per_min": delta("idle_start", "idle_end", "client_commands") * 60 / idle,
        "server_idle_commands_per_min": delta("idle_start", "idle_end", "server_commands") * 60 / idle,
        "bytes_per_waiting_job": delta("start", "enqueued_single", "used_memory") / jobs,
        "bytes_per_completed_job": delta("start", "processed", "used_memory") / jobs,
        "latency_push_ms": None,
        "latency_tick_ms": None,
    }


def with_costs(row: dict[str, Any]) -> dict[str, Any]:
    per_job = row["commands_per_job_bulk"]
    row["usd_per_million_jobs"] = per_job * 1_000_000 * PRICE_PER_COMMAND
    # The same in the server unit (Lua's inner calls counted), for a bill that counts those too.
    row["usd_per_million_jobs_server"] = row["server_commands_per_job_bulk"] * 1_000_000 * PRICE_PER_COMMAND
    row["usd_per_idle_month"] = row["idle_commands_per_min"] * 60 * 24 * 30 * PRICE_PER_COMMAND
    return row


def run_jobq(redis_port: int, jobs: int, idle: float) -> dict[str, Any]:
    from bench.jobq_workload import run as run_jobq_workload

    return run_jobq_workload(redis_port, jobs, idle)


COLUMNS: list[tuple[str, str, str]] = [
    ("transport", "transport", "{}"),
    ("enqueue/s single", "enqueue_single_per_s", "{:,.0f}"),
    ("enqueue/s bulk", "enqueue_bulk_per_s", "{:,.0f}"),
    ("processed/s (10 handlers)", "process_per_s", "{:,.0f}"),
    ("end-to-end s (bulk)", "e2e_s", "{:.2f}"),
    ("cmds/job single (client)", "commands_per_job_single", "{:.2f}"),
    ("cmds/job bulk (client)", "commands_per_job_bulk", "{:.2f}"),
    ("cmds/job single (server)", "server_commands_per_job_single", "{:.2f}"),
    ("cmds/job bulk (server)", "server_commands_per_job_bulk", "{:.2f}"),
    ("idle cmds/min (client)", "idle_commands_per_min", "{:.1f}"),
    ("idle cmds/min (server)", "server_idle_commands_per_min", "{:.1f}"),
    ("bytes/waiting job", "bytes_per_waiting_job", "{:,.0f}"),
    ("bytes/completed job", "bytes_per_completed_job", "{:,.0f}"),
    ("submit-to-start p50/p99 ms, push", "latency_push_ms", "{}"),
    ("submit-to-start p50/p99 ms, tick", "latency_tick_ms", "{}"),
    ("$ per million jobs (client unit)", "usd_per_million_jobs", "${:.2f}"),
    ("$ per million jobs (server unit)", "usd_per_million_jobs_server", "${:.2f}"),
    ("$ per idle month", "usd_per_idle_month", "${:.2f}"),
]


def table(rows: list[dict[str, Any]]) -> str:
    def cell(row: dict[str, Any], key: str, fmt: str) -> str:
        value = row.get(key)
        if value is None:
            return "n/a"
        if isinstance(value, list | tuple):
            return " / ".join(f"{v:.1f}" for v in value)
        return fmt.format(value)

    lines = ["| figure | " + " | ".join(row["queue"] for row in rows) + " |"]
    lines.append("|---|" + "---:|" * len(rows))
    for label, key, fmt in COLUMNS:
        lines.append(f"| {label} | " + " | ".join(cell(row, key, fmt) for row in rows) + " |")
    return "\n".join(lines)


def targets(rows: list[dict[str, Any]]) -> list[str]:
    """The issue's targets, checked against this run."""
    by_name = {row["queue"]: row for row in rows}
    jobq, bullmq = by_name.get("jobq"), by_name.get("bullmq")
    if jobq is None:
        return ["jobq was not measured in this run"]
    per_job = jobq["commands_per_job_bulk"]
    server = jobq["server_commands_per_job_bulk"]
    verdict = "met" if per_job <= 1.05 else "MISSED"
    lines = [
        f"commands per job at batch 100 <= 1.05: {per_job:.2f} in the client unit ({verdict}); "
        f"{server:.2f} in the server unit, which counts every call inside the scripts"
    ]
    if bullmq is not None:
        ours, theirs = jobq["process_per_s"], bullmq["process_per_s"]
        verdict = "met" if ours >= 2 * theirs else "MISSED"
        lines.append(
            f"processing >= 2x BullMQ (Python) (issue 10): `jobq worker` through the REST gateway "
            f"{ours:,.0f}/s against {theirs:,.0f}/s = {ours / theirs:.2f} ({verdict})"
        )
    lines.append(
        "idle cost <= one command per queue per scheduled tick: a tick is one due-index read "
        "(pinned by the consumer's idle-tick test); the worker's adaptive poll above is the always-on mode"
    )
    return lines


def marked_sections(document: str) -> list[tuple[str, str]]:
    """The `<!-- bench NAME: begin -->` ... `end -->` blocks of a report (other suites' sections)."""
    pattern = re.compile(r"<!-- bench ([\w-]+): begin -->.*?<!-- bench \1: end -->", re.S)
    return [(match.group(1), match.group(0)) for match in pattern.finditer(document)]


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    server = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split()
    version = next((word.split("=")[1] for word in server if word.startswith("v=")), "unknown")
    return f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, Redis {version}"


def report(rows: list[dict[str, Any]], command: str, jobs: int, idle: float, notes: list[str]) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join(
        [
            "# Benchmarks: jobq against BullMQ (Python), RQ and arq",
            "",
            f"- Date: {when}",
            f"- Machine: {machine()}",
            f"- Command: `{command}`",
            f"- Workload: {jobs:,} no-op jobs with a ~200-byte payload, 10 concurrent handlers; "
            f"idle measured for {idle:g} s with workers running on an empty queue.",
            "",
            table(rows),
            "",
            "Targets (issues 7 and 10):",
            *[f"- {line}" for line in targets(rows)],
            "",
            "How to read it:",
            "- **Transport differs.** jobq goes through its REST gateway, one HTTP request per call (as on "
            "Upstash); BullMQ, RQ and arq speak RESP over TCP to the same private redis-server.",
            "- **Client commands** are what a per-command bill counts: for jobq, counted at the gateway "
            "(a pipeline of k commands counts k, as Upstash bills); for the others, counted by a TCP proxy "
            "that parses the RESP their clients send (bench/proxy.py). Commands a Lua script issues inside "
            "the server cross no wire and are not in this figure.",
            "- **Server commands** are the INFO commandstats difference on the same server, which does "
            "include commands run inside Lua scripts, so both units are shown.",
            "- Single = one enqueue call per job, then processing; bulk = batches of 100 (BullMQ addBulk, "
            "RQ enqueue_many, jobq batch submit) with the workers already running; arq has no bulk enqueue.",
            "- Memory: INFO used_memory difference over the run divided by the job count, with each "
            "library's default retention of completed jobs (jobq: the last 1,000 for 24 h; BullMQ: all; "
            "RQ: results for 500 s; arq: results for a day), divided by all N jobs.",
            "- Cost: Upstash pay-as-you-go, $0.20 per 100,000 commands, from the bulk figures in both units "
            "(client: a script is one command; server: every call inside a script counted too); "
            "idle month = idle commands/min x 43,200 min.",
            "- RQ runs one job at a time per worker, so 10 handlers are 10 SimpleWorker processes.",
            "- processed/s is the median of three processing passes for jobq and BullMQ (their ratio is a "
            "target; this machine's speed moves between passes: every pass is in the raw figures), one "
            "pass for RQ and arq. The first pass drains jobs enqueued one by one, the others jobs enqueued "
            "in batches; the command counts are the first pass's.",
            *[f"- {note}" for note in notes],
            "",
            "Raw figures:",
            "",
            "```json",
            json.dumps(rows, indent=1, default=str),
            "```",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    from bench import stack

    parser = argparse.ArgumentParser(prog="python -m bench compare", description=__doc__)
    parser.add_argument("--quick", action="store_true", default=os.environ.get("JOBQ_BENCH_QUICK") == "1")
    parser.add_argument("--jobs", type=int)
    parser.add_argument("--idle", type=float, help="seconds of idle measurement (default 60)")
    parser.add_argument("--only", default=",".join(("jobq", *REFERENCES, "stack")))
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("JOBQ_BENCH_REDIS_URL"),
        help="a loopback Redis to use (it is FLUSHALLed); default: a private redis-server on a spare port",
    )
    stack.add_size_options(parser, prefix="stack-")
    parser.add_argument("--no-write", action="store_true", help="print only, leave docs/benchmarks.md")
    parser.add_argument("--json", type=Path, help="also write the raw rows to this file")
    parser.add_argument(
        "--reuse",
        type=Path,
        help="rows of an earlier --json run for the queues not in --only (said in the report)",
    )
    args = parser.parse_args(sys.argv[2:] if argv is None and sys.argv[1:2] == ["compare"] else argv)
    jobs = args.jobs or (1_000 if args.quick else 10_000)
    idle = args.idle or (10.0 if args.quick else 60.0)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    if args.redis_url and redis_endpoint(args.redis_url)[0] not in ("127.0.0.1", "localhost"):
        raise SystemExit("--redis-url: the reference queues reach Redis on loopback only")
    if args.redis_url is None and shutil.which("redis-server") is None:
        raise SystemExit("redis-server is not on PATH")
    python = ensure_bench_venv()
    rows: list[dict[str, Any]] = []
    stack_rows: list[dict[str, Any]] = []
    notes: list[str] = []
    with redis_server(args.redis_url) as (host, port):
        for name in chosen:
            print(f"-- {name}: {jobs:,} jobs, idle {idle:g} s" if name != "stack" else "-- stack", flush=True)
            try:
                if name == "stack":
                    stack_rows = stack.run(host, port, stack.sizes_from(args, args.quick, "stack-"))
                    continue
                row = (
                    run_jobq(port, jobs, idle)
                    if name == "jobq"
                    else run_reference(name, python, port, jobs, idle)
                )
            except Exception as exc:  # one queue failing must not hide the others' figures
                notes.append(f"{name} did not complete: {type(exc).__name__}: {exc}")
                print(f"   {name} failed: {exc}", flush=True)
                continue
            rows.append(with_costs(row))
            notes.extend(row.pop("notes", []))
    if args.reuse:
        measured = {row["queue"] for row in rows}
        earlier = [row for row in json.loads(args.reuse.read_text()) if row["queue"] not in measured]
        rows += earlier
        if earlier:
            names = ", ".join(row["queue"] for row in earlier)
            notes.append(f"{names}: figures from an earlier run on this machine ({args.reuse.name})")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, default=str))
    print(table(rows))
    bullmq = next((row for row in rows if row["queue"] == "bullmq"), None)
    ratio = stack.ratio_line(stack_rows, bullmq["process_per_s"] if bullmq else None)
    if stack_rows:
        print(stack.table(stack_rows))
    for line in [*targets(rows), *([ratio] if ratio else [])]:
        print(f"target: {line}")
    for note in notes:
        print(f"note: {note}")
    if not args.no_write:
        command = "python -m bench compare " + " ".join(sys.argv[2:] if argv is None else argv)
        text = report(rows, command.strip(), jobs, idle, notes)
        previous = REPORT.read_text() if REPORT.exists() else ""
        # A run without the stack keeps the stack section of an earlier run (it carries its own date).
        kept = stack.section(stack_rows, command.strip(), machine(), ratio) if stack_rows else None
        kept = kept or stack.section_of(previous)
        text = stack.replace_section(text, kept) if kept else text
        others = [block for name, block in marked_sections(previous) if name != "stack"]
        REPORT.write_text("\n\n".join([text.rstrip("\n"), *others]) + "\n")
        print(f"written to {REPORT.relative_to(ROOT)}")


if __name__ == "__main__":
    main(sys.argv[1:])
