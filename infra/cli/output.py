"""How the CLI shows things: rich tables and panels for people, the API's JSON for scripts, errors on stderr.

Consoles are made per call, so they write to whatever `sys.stdout`/`sys.stderr` are at that moment (the
test runner swaps them).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import typer
from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from infra.cli.errors import CliError
from jobq.client.errors import ApiError, InvalidArgumentError, JobqError, RateLimitedError, TransportError

STATES = ("waiting", "delayed", "active", "completed", "failed", "cancelled")
FLOW_STATE = "waiting-children"  # a column of its own only when some queue has such jobs
STATE_STYLES = {
    "waiting": "cyan",
    "waiting-children": "cyan",
    "delayed": "blue",
    "active": "yellow",
    "completed": "green",
    "failed": "red",
    "cancelled": "magenta",
}
HINTS = {
    "unauthorized": "pass --key or set JOBQ_API_KEY to a valid API key",
    "forbidden": "this command needs an admin key",
}
MAX_LOG_LINES = 10


def out() -> Console:
    return Console(highlight=False, soft_wrap=False)


def err() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)  # one error, one line (grep-able)


def plain(data: Any) -> Any:
    """The API's JSON for what the client returned (a model, a list of them, or JSON already)."""
    if isinstance(data, list):
        return [plain(item) for item in data]
    dump = getattr(data, "model_dump", None)
    return data if dump is None else dump(mode="json")


def print_json(data: Any, *, compact: bool = False) -> None:
    """The API's JSON as is, without styling, for scripts (`--json`)."""
    data = plain(data)
    typer.echo(json.dumps(data, separators=(",", ":")) if compact else json.dumps(data, indent=2))


def error_line(exc: CliError | JobqError) -> Text:
    text = Text("error: ", style="bold red")
    if isinstance(exc, ApiError):
        text.append(f"{exc.code} (HTTP {exc.status}): ", style="red")
    text.append(exc.message, style="red")
    if isinstance(exc, RateLimitedError) and exc.retry_after is not None:
        text.append(f" (retry after {exc.retry_after:g} s)", style="red")
    if isinstance(exc, ApiError) and exc.field:
        text.append(f" [field: {exc.field}]", style="red")
    return text


def exit_code(exc: CliError | JobqError) -> int:
    """1 the API refused (or a CliError's own), 2 usage, 3 no usable answer."""
    if isinstance(exc, CliError):
        return exc.exit_code
    if isinstance(exc, InvalidArgumentError):
        return 2
    return 3 if isinstance(exc, TransportError) else 1


@contextmanager
def handled() -> Iterator[None]:
    """Turn a CliError or a client error into one red line on stderr and its exit code (no traceback)."""
    try:
        yield
    except (CliError, JobqError) as exc:
        console = err()
        console.print(error_line(exc))
        hint = HINTS.get(exc.code) if isinstance(exc, ApiError) else None
        if hint:
            console.print(f"hint: {hint}", style="dim")
        raise typer.Exit(exit_code(exc)) from None


def state_text(state: str) -> Text:
    return Text(state, style=f"bold {STATE_STYLES.get(state, '')}".strip())


def when(value: str | None) -> str:
    """An API timestamp as `YYYY-MM-DD HH:MM:SS` (UTC), or a dash."""
    if not value:
        return "-"
    try:
        return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return value


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.1f} s"
    if value < 7200:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


def compact(value: Any, limit: int = 400) -> str:
    text = json.dumps(value, separators=(",", ":"), default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def job_panel(job: dict[str, Any]) -> Panel:
    """A job's details for `jobq status`."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    attempts = f"{job.get('attempts', 0)} of {job.get('max_attempts', '?')}"
    rows: list[tuple[str, str | Text]] = [
        ("state", state_text(job["state"])),
        ("type", job["type"]),
        ("queue", job["queue"]),
        ("owner", job["owner"]),
        ("priority", str(job["priority"])),
        ("progress", f"{job.get('progress', 0)}%"),
        ("attempts", attempts),
        ("created", when(job.get("created_at"))),
        ("run at", when(job.get("run_at"))),
        ("started", when(job.get("started_at"))),
        ("finished", when(job.get("finished_at"))),
    ]
    if job.get("cancel_requested") and job["state"] == "active":
        rows.append(("cancel", Text("requested", style="magenta")))
    if job.get("idempotency_key"):
        rows.append(("idempotency key", job["idempotency_key"]))
    if job.get("tags"):
        rows.append(("tags", ", ".join(job["tags"])))
    for key in ("singleton_key", "debounce_key"):
        if job.get(key):
            rows.append((key.replace("_", " "), job[key]))
    if job.get("steps"):
        names = ", ".join(job.get("step_results") or {})
        rows.append(("steps", f"{job['steps']}: {names}"))
    if job.get("children") or job.get("depends_on"):
        waits = f"{len(job.get('children', []))} children, {len(job.get('depends_on', []))} dependencies"
        rows.append(("waits for", f"{waits} ({job.get('pending_children', 0)} still to end)"))
    for parent in job.get("parents", []):
        rows.append(("parent", f"{parent['id']} (on failure: {parent['policy']})"))
    rows.append(("payload", compact(job.get("payload"))))
    if job["state"] == "completed":
        rows.append(("result", compact(job.get("result"))))
    if job.get("error"):
        rows.append(("error", Text(_error(job["error"]), style="red")))
    earlier = [e for e in job.get("errors", []) if e != job.get("error")]
    for error in earlier:
        rows.append(("earlier error", _error(error)))
    for name, value in rows:
        grid.add_row(name, value)
    parts: list[Any] = [grid]
    logs = job.get("logs") or []
    if logs:
        shown = logs[-MAX_LOG_LINES:]
        parts.append(Text(f"\nlog ({len(shown)} of {len(logs)} lines)", style="bold"))
        parts.extend(Text(line) for line in shown)
    return Panel(Group(*parts), title=f"job {escape(job['id'])}", title_align="left", expand=False)


def flow_tree(node: dict[str, Any]) -> Tree:
    """A flow (`{job, children}`, as GET /v1/flows answers) as a tree: type, id, state, and what each
    parent still waits for."""

    def label(job: dict[str, Any]) -> Text:
        text = Text(job["type"], style="bold")
        text.append(f"  {job['id']}  ")
        text.append_text(state_text(job["state"]))
        if job["state"] == "waiting-children":
            text.append(f"  ({job.get('pending_children', 0)} to end)", style="dim")
        if job.get("error") and job["state"] == "failed":
            text.append(f"  {_error(job['error'])}", style="red")
        return text

    def grow(branch: Tree, item: dict[str, Any]) -> None:
        for child in item.get("children", []):
            grow(branch.add(label(child["job"])), child)

    tree = Tree(label(node["job"]))
    grow(tree, node)
    return tree


def _error(error: dict[str, Any]) -> str:
    return f"attempt {error.get('attempt', '?')}: {error.get('kind', 'error')}: {error.get('message', '')}"


# Tables are laid out for the console's width: below these, only the essential columns are shown (the
# rest is one `--json` away) instead of squeezing every column into ellipses, and a caption names them.
WIDE_JOBS = 120
WIDE_QUEUES = 150
JOB_EXTRAS = ("queue", "prio", "progress", "attempts")
QUEUE_TOTALS = ("completed_total", "failed_total", "retried_total", "cancelled_total")
QUEUE_TIMES = ("avg run", "avg wait", "oldest waiting")


def hidden_caption(columns: list[str], width: int) -> str:
    return f"hidden at {width} columns: {', '.join(columns)}; widen the terminal or use --json"


def jobs_table(jobs: list[dict[str, Any]], width: int = WIDE_JOBS) -> Table:
    wide = width >= WIDE_JOBS
    caption = None if wide else hidden_caption(list(JOB_EXTRAS), width)
    table = Table(caption=caption, caption_style="dim", caption_justify="left")
    table.add_column("id", no_wrap=True, min_width=26)
    table.add_column("type", no_wrap=True)
    queue, *numbers = JOB_EXTRAS
    if wide:
        table.add_column(queue, no_wrap=True)
    table.add_column("state", no_wrap=True)
    if wide:
        for name in numbers:
            table.add_column(name, justify="right")
    table.add_column("created", no_wrap=True, min_width=19)
    for job in jobs:
        middle: list[str | Text] = [state_text(job["state"])]
        if wide:
            middle = [
                job["queue"],
                *middle,
                str(job["priority"]),
                f"{job.get('progress', 0)}%",
                f"{job.get('attempts', 0)}/{job.get('max_attempts', '?')}",
            ]
        table.add_row(job["id"], job["type"], *middle, when(job.get("created_at")))
    return table


def queues_table(queues: list[dict[str, Any]], width: int = WIDE_QUEUES) -> Table:
    """Jobs per state now, with a footer summing every queue; on a wide console also the paused flag as a
    column, the all-time totals, mean run and wait times and the oldest waiting job's age."""
    wide = width >= WIDE_QUEUES
    labels = ["total " + name.removesuffix("_total") for name in QUEUE_TOTALS]
    caption = None if wide else hidden_caption([*labels, *QUEUE_TIMES], width)  # "paused" follows the name
    table = Table(show_footer=len(queues) > 1, caption=caption, caption_style="dim", caption_justify="left")
    states: tuple[str, ...] = STATES
    if any(q["counts"].get(FLOW_STATE) for q in queues):
        states = (*STATES, FLOW_STATE)
    sums = {state: sum(q["counts"].get(state, 0) for q in queues) for state in states}
    totals = {name: sum(q.get(name, 0) for q in queues) for name in QUEUE_TOTALS}
    table.add_column("queue", footer="all queues", no_wrap=True)
    if wide:
        table.add_column("paused")
    for state in states:
        table.add_column(state, justify="right", footer=str(sums[state]), style=STATE_STYLES[state])
    if wide:
        for name, label in zip(QUEUE_TOTALS, labels, strict=True):  # all-time, not the jobs in each state now
            table.add_column(label.replace(" ", "\n"), justify="right", footer=str(totals[name]))
        for label in QUEUE_TIMES:
            table.add_column(label, justify="right")
    for queue in queues:
        paused = Text("paused", style="bold yellow") if queue["paused"] else Text("no")
        title = Text(queue["queue"])
        if not wide and queue["paused"]:
            title.append(" (paused)", style="bold yellow")
        cells: list[str | Text] = [title, *(str(queue["counts"].get(state, 0)) for state in states)]
        if wide:
            cells[1:1] = [paused]
            cells += [str(queue.get(total, 0)) for total in totals]
            cells += [
                seconds(queue.get("avg_run_seconds")),
                seconds(queue.get("avg_wait_seconds")),
                seconds(queue.get("oldest_waiting_age")),
            ]
        table.add_row(*cells)
    return table


def keys_table(keys: list[dict[str, Any]]) -> Table:
    table = Table()
    table.add_column("id", no_wrap=True)
    table.add_column("owner", no_wrap=True)
    table.add_column("admin")
    table.add_column("rate")
    table.add_column("created", no_wrap=True)
    table.add_column("revoked", no_wrap=True)
    for key in keys:
        table.add_row(
            key["id"],
            key["owner"],
            Text("admin", style="bold yellow") if key["admin"] else "no",
            key.get("rate") or "default",
            when(key.get("created_at")),
            Text(when(key["revoked_at"]), style="red") if key.get("revoked_at") else "-",
        )
    return table
