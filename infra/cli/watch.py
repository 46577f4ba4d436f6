"""`jobq status --watch`: follow a job through the API's long poll until it is terminal.

The long poll (`GET /v1/jobs/{id}/events?wait=N&since=...`) answers as soon as the job changes, and works
through API Gateway, which cannot stream. Each answer is one change: state, progress, new log lines.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import typer
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from infra.cli.errors import CliError
from infra.cli.output import err, out, print_json, state_text

if TYPE_CHECKING:
    from jobq.client import Client

WATCH_WAIT = 20.0  # seconds per long poll (the API allows up to 25, below API Gateway's 30 s timeout)
EXIT_CODES = {"completed": 0, "failed": 4, "cancelled": 5}


class WatchTimeoutError(CliError):
    exit_code = 6


def follow(api: Client, job_id: str, *, as_json: bool, within: float | None) -> int:
    """Watch until the job is terminal; the exit code for its final state. Ctrl-C stops watching."""
    updates = changes(api, job_id, within)
    try:
        final = follow_json(updates) if as_json else follow_live(updates, job_id)
    except KeyboardInterrupt:
        err().print("stopped watching; the job carries on")
        raise typer.Exit(130) from None
    return EXIT_CODES.get(final, 1)


def changes(api: Client, job_id: str, within: float | None) -> Iterator[dict[str, Any]]:
    """The job's changes, the last one terminal; WatchTimeoutError once `within` seconds have passed."""
    deadline = None if within is None else time.monotonic() + within
    since: str | None = None
    state = "unknown"
    while True:
        wait = WATCH_WAIT
        if deadline is not None:
            wait = min(wait, deadline - time.monotonic())
            if wait <= 0:
                raise WatchTimeoutError(f"job {job_id} still {state} after {within:g} s; stopped watching")
        change = api.poll(job_id, since=since, wait=wait).model_dump(mode="json")
        since, state = change["event_id"], change["status"]["state"]
        if change["changed"] or change["terminal"]:
            yield change
        if change["terminal"]:
            return


def follow_json(updates: Iterator[dict[str, Any]]) -> str:
    """One compact JSON line per change (the API's long-poll answers, unchanged)."""
    state = "unknown"
    for change in updates:
        print_json(change, compact=True)
        state = change["status"]["state"]
    return state


def follow_live(updates: Iterator[dict[str, Any]], job_id: str) -> str:
    """A rich progress bar with the job's state and attempt, its log lines above it, then a summary."""
    console = out()
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
    )
    status: dict[str, Any] = {}
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(job_id, total=100)
        for change in updates:
            status = change["status"]
            for line in change["logs"]:
                progress.console.print(Text(f"  {line}", style="dim"))
            attempt = f"attempt {status['attempts']}/{status['max_attempts']}"
            done = 100 if status["state"] == "completed" else status["progress"]
            progress.update(task, completed=done, description=f"{job_id} {status['state']} ({attempt})")
    console.print(summary(job_id, status))
    return str(status["state"])


def summary(job_id: str, status: dict[str, Any]) -> Text:
    line = Text("job ")
    line.append(job_id, style="bold")
    line.append(" ")
    line.append_text(state_text(status["state"]))
    if status["state"] == "completed":
        line.append(f": {json.dumps(status.get('result'), default=str)[:200]}")
    elif status.get("error"):
        line.append(f": {status['error']['message']}", style="red")
    return line
