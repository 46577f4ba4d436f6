"""`jobq submit|status|flow|list|cancel|retry`: a job's commands, as a client of a jobq HTTP API.

Exit codes: 0 success; 1 the API answered with an error (or a confirmation was declined); 2 usage; 3 the
API could not be reached; `status --watch` exits 4 when the job failed, 5 when it was cancelled, 6 when
`--within` ran out.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from infra.cli import app
from infra.cli.errors import UsageError
from infra.cli.options import api_options
from infra.cli.output import (
    flow_tree,
    handled,
    job_panel,
    jobs_table,
    out,
    plain,
    print_json,
    state_text,
)
from shared.priorities import PRIORITIES
from shared.states import State

# Jobs.


@app.command()
def submit(
    ctx: typer.Context,
    type: Annotated[
        str, typer.Argument(metavar="TYPE", help="A registered job type, e.g. echo.", show_default=False)
    ],
    payload: Annotated[
        str, typer.Option("--payload", "-p", help="JSON text, @file.json, or - to read stdin.")
    ] = "{}",
    priority: Annotated[
        str | None, typer.Option(help=f"One of {', '.join(PRIORITIES)}, or 0 (first) to 9 (last).")
    ] = None,
    delay: Annotated[
        float | None, typer.Option(min=0, help="Run no earlier than this many seconds from now.")
    ] = None,
    idempotency_key: Annotated[
        str | None, typer.Option(help="Submitting again with the same key returns the same job.")
    ] = None,
    max_attempts: Annotated[
        int | None, typer.Option(min=1, max=100, help="Attempts before it fails.")
    ] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="A tag to list by (repeatable).")] = None,
    depends_on: Annotated[
        list[str] | None,
        typer.Option(
            "--depends-on", metavar="ID", help="Run after this job of yours completes (repeatable)."
        ),
    ] = None,
) -> None:
    """Submit a job; print its id and state. A whole flow (a job with children) goes with `jobq flow
    submit`."""
    with handled():
        body = read_payload(payload)
        options = api_options(ctx)
        with options.connect() as api:
            job = api.submit(
                type,
                body,
                priority=parse_priority(priority),
                delay=delay,
                idempotency_key=idempotency_key,
                max_attempts=max_attempts,
                tags=tag or None,
                depends_on=depends_on or None,
            )
        if options.as_json:
            print_json(job.model_dump(mode="json", exclude={"created"}))
            return
        line = Text(job.id, style="bold")
        line.append(" ")
        line.append_text(state_text(job.state))
        if not job.created:
            line.append("  (existing job: idempotency key already used)", style="dim")
        out().print(line)


def read_payload(value: str) -> Any:
    """The payload from JSON text, `@path` or `-` (stdin)."""
    if value == "-":
        text, source = sys.stdin.read(), "stdin"
    elif value.startswith("@"):
        source = value[1:]
        try:
            text = Path(source).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read --payload file {source!r}: {exc.__class__.__name__}") from exc
    else:
        text, source = value, "--payload"
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"payload from {source} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from exc


def parse_priority(value: str | None) -> int | str | None:
    if value is None:
        return None
    if value.isdigit() and 0 <= int(value) <= 9:
        return int(value)
    if value in PRIORITIES:
        return value
    raise UsageError(f"--priority must be one of {', '.join(PRIORITIES)} or 0-9, got {value!r}")


@app.command()
def status(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(metavar="ID", help="The job's id.", show_default=False)],
    watch: Annotated[
        bool,
        typer.Option(
            "--watch",
            "-w",
            help="Follow until it ends: exit 0 completed, 4 failed, 5 cancelled. "
            "With --json: one JSON line per change.",
        ),
    ] = False,
    within: Annotated[
        float | None, typer.Option(min=0, help="With --watch: give up after this many seconds (exit 6).")
    ] = None,
) -> None:
    """Show a job (state, progress, attempts, result or errors, logs); --watch follows it live."""
    options = api_options(ctx)
    with handled(), options.connect() as api:
        if not watch:
            job = plain(api.get(job_id))
            if options.as_json:
                print_json(job)
            else:
                out().print(job_panel(job))
            return
        from infra.cli.watch import follow  # rich's live progress, for this command alone

        code = follow(api, job_id, as_json=options.as_json, within=within)
    raise typer.Exit(code)


flow_app = typer.Typer(
    help="Flows: a job and its children, shown as a tree with every node's state.", no_args_is_help=True
)
app.add_typer(flow_app, name="flow")


@flow_app.command("show")
def flow_show(
    ctx: typer.Context,
    job_id: Annotated[
        str, typer.Argument(metavar="ID", help="The flow's root (or any job).", show_default=False)
    ],
) -> None:
    """Show a flow as a tree: each job's type, id and state, its children under it."""
    options = api_options(ctx)
    with handled(), options.connect() as api:
        tree = plain(api.get_flow(job_id))
    if options.as_json:
        print_json(tree)
    else:
        out().print(flow_tree(tree))


@flow_app.command("submit")
def flow_submit(
    ctx: typer.Context,
    body: Annotated[
        str,
        typer.Argument(
            metavar="FLOW",
            help='The flow as JSON (a job with "children"), @file.json, or - to read stdin.',
            show_default=False,
        ),
    ],
) -> None:
    """Submit a flow (POST /v1/flows) and show its tree."""
    options = api_options(ctx)
    with handled():
        flow = read_payload(body)
        with options.connect() as api:
            tree = plain(api.submit_flow(flow))
    if options.as_json:
        print_json(tree)
    else:
        out().print(flow_tree(tree))


@app.command("list")
def list_jobs(
    ctx: typer.Context,
    state: Annotated[State | None, typer.Option(help="Only jobs in this state.")] = None,
    type: Annotated[str | None, typer.Option("--type", help="Only jobs of this type.")] = None,
    queue: Annotated[
        str | None, typer.Option(help="Any owner's jobs in this queue (admin), instead of your own jobs.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=200, help="Jobs per page.")] = 50,
    cursor: Annotated[str | None, typer.Option(help="The cursor a previous page printed.")] = None,
) -> None:
    """List your jobs, newest first (or a queue's jobs with --queue, admin)."""
    options = api_options(ctx)
    with handled(), options.connect() as api:
        chosen = state.value if state else None
        if queue:
            page = plain(api.queue_jobs(queue, state=chosen, type=type, limit=limit, cursor=cursor))
        else:
            page = plain(api.list(state=chosen, type=type, limit=limit, cursor=cursor))
    if options.as_json:
        print_json(page)
        return
    console = out()
    if not page["jobs"]:
        console.print("no jobs")
    else:
        console.print(jobs_table(page["jobs"], console.width))
    if page.get("cursor"):
        console.print(f"more: --cursor {page['cursor']}", style="dim")


@app.command()
def cancel(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(metavar="ID", show_default=False)],
) -> None:
    """Cancel a job: at once when it is waiting or delayed; a running job's consumer is asked to stop."""
    options = api_options(ctx)
    with handled(), options.connect() as api:
        job = plain(api.cancel(job_id))
    if options.as_json:
        print_json(job)
    elif job["state"] == "cancelled":
        out().print(Text.assemble((job["id"], "bold"), " ", state_text("cancelled")))
    else:
        out().print(Text.assemble((job["id"], "bold"), f" {job['state']}: cancellation requested"))


@app.command()
def retry(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(metavar="ID", show_default=False)],
) -> None:
    """Run a failed or cancelled job again."""
    options = api_options(ctx)
    with handled(), options.connect() as api:
        job = plain(api.retry(job_id))
    if options.as_json:
        print_json(job)
    else:
        out().print(Text.assemble((job["id"], "bold"), " ", state_text(job["state"]), " (retried)"))


# Queues (admin).
