"""`jobq stats` and `jobq queues pause|resume|clean|retry-failed`: the queues' commands (admin).

Exit codes: 0 success; 1 the API answered with an error (or a confirmation was declined); 2 usage; 3 the
API could not be reached.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import typer

from infra.cli import app
from infra.cli.options import ApiOptions, Yes, api_options, confirm, duration
from infra.cli.output import (
    handled,
    out,
    plain,
    print_json,
    queues_table,
)
from shared.states import State


class FinishedState(StrEnum):  # the choices of `clean`: the states a job ends in
    completed = State.COMPLETED.value
    failed = State.FAILED.value
    cancelled = State.CANCELLED.value


@app.command()
def stats(
    ctx: typer.Context,
    queue: Annotated[str | None, typer.Argument(help="One queue; all queues when omitted.")] = None,
) -> None:
    """A table of queues: jobs per state, paused, totals, mean run and wait times (admin)."""
    options = api_options(ctx)
    with handled(), options.connect() as api:
        body = plain(api.queue(queue)) if queue else {"queues": plain(api.queues())}
    if options.as_json:
        print_json(body)
        return
    queues = [body] if queue else body["queues"]
    console = out()
    if not queues:
        console.print("no queues yet")
    else:
        console.print(queues_table(queues, console.width))


queues_app = typer.Typer(help="Pause, resume, clean or retry a queue (admin).", no_args_is_help=True)
app.add_typer(queues_app, name="queues")

QueueArg = Annotated[str, typer.Argument(metavar="QUEUE", help="The queue's name.", show_default=False)]


@queues_app.command("pause")
def pause_queue(
    ctx: typer.Context,
    queue: QueueArg,
) -> None:
    """Stop consumers from claiming the queue's jobs (submits are still accepted)."""
    queue_action(api_options(ctx), queue, "pause", None, f"queue {queue} paused")


@queues_app.command("resume")
def resume_queue(
    ctx: typer.Context,
    queue: QueueArg,
) -> None:
    """Let consumers claim the queue's jobs again."""
    queue_action(api_options(ctx), queue, "resume", None, f"queue {queue} resumed")


@queues_app.command("clean")
def clean_queue(
    ctx: typer.Context,
    queue: QueueArg,
    state: Annotated[FinishedState, typer.Option(help="Which finished jobs to remove.")],
    older_than: Annotated[
        str, typer.Option(help="Only jobs finished longer ago than this: seconds, or 30m, 2h, 7d.")
    ] = "0",
    limit: Annotated[int, typer.Option(min=1, max=10000, help="Remove at most this many.")] = 1000,
    yes: Yes = False,
) -> None:
    """Remove finished jobs (asks first unless --yes)."""
    with handled():
        age = duration(older_than)
        confirm(f"Remove up to {limit} {state.value} jobs older than {older_than} from queue {queue}?", yes)
    body = {"state": state.value, "older_than_seconds": age, "limit": limit}
    queue_action(api_options(ctx), queue, "clean", body, "removed {count} jobs from queue " + queue)


@queues_app.command("retry-failed")
def retry_failed(
    ctx: typer.Context,
    queue: QueueArg,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Retry at most this many.")] = 1000,
    yes: Yes = False,
) -> None:
    """Move the queue's failed jobs back to waiting (asks first unless --yes)."""
    with handled():
        confirm(f"Run up to {limit} failed jobs of queue {queue} again?", yes)
    done = "{count} failed jobs of queue " + queue + " moved back to waiting"
    queue_action(api_options(ctx), queue, "retry-failed", {"limit": limit}, done)


def queue_action(
    options: ApiOptions, queue: str, action: str, body: dict[str, Any] | None, done: str
) -> None:
    with handled(), options.connect() as api:
        reply = plain(api.queue_action(queue, action, body))
    if options.as_json:
        print_json(reply)
    else:
        out().print(done.format(count=reply.get("count")))
