"""`jobq schedules create|list|show|pause|resume|delete`: the caller's schedules (admins: any owner's),
through the API."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from infra.cli import app
from infra.cli.jobs import parse_priority, read_payload
from infra.cli.options import Yes, api_options, confirm, duration
from infra.cli.output import compact, handled, out, plain, print_json, when

schedules_app = typer.Typer(help="Run a job on a cron timetable or every N seconds.", no_args_is_help=True)
app.add_typer(schedules_app, name="schedules")

Owner = Annotated[str | None, typer.Option(help="Admins: act for this owner.", show_default=False)]


@schedules_app.command("create")
def create_schedule(
    ctx: typer.Context,
    type: Annotated[str, typer.Argument(metavar="TYPE", help="The job type each run submits.")],
    payload: Annotated[
        str, typer.Option("--payload", "-p", help="JSON text, @file.json, or - to read stdin.")
    ] = "{}",
    cron: Annotated[str | None, typer.Option(help='A cron expression, e.g. "0 3 * * *".')] = None,
    tz: Annotated[str, typer.Option("--tz", help="The IANA time zone the cron reads in.")] = "UTC",
    every: Annotated[str | None, typer.Option(help="Instead of cron: every 90s, 5m, 2h, 1d.")] = None,
    start: Annotated[str | None, typer.Option(help="First run no earlier than this (RFC 3339).")] = None,
    end: Annotated[str | None, typer.Option(help="No run after this (RFC 3339).")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Stop after this many runs.")] = None,
    catch_up: Annotated[
        str, typer.Option(help="Runs missed in an outage: once (the latest, once), all, or none.")
    ] = "once",
    priority: Annotated[str | None, typer.Option(help="The jobs' priority (name or 0-9).")] = None,
    owner: Owner = None,
) -> None:
    """Create a schedule; print its id and next run."""
    with handled():
        job: dict[str, Any] = {"type": type, "payload": read_payload(payload)}
        if priority is not None:
            job["priority"] = parse_priority(priority)
        body: dict[str, Any] = {"job": job, "timezone": tz, "catch_up": catch_up}
        optional = {
            "cron": cron,
            "every_seconds": None if every is None else round(duration(every)),
            "start_at": start,
            "end_at": end,
            "limit": limit,
            "owner": owner,
        }
        body.update({name: value for name, value in optional.items() if value is not None})
        options = api_options(ctx)
        with options.connect() as api:
            created = plain(api.create_schedule(body))
    if options.as_json:
        print_json(created)
        return
    line = Text(created["id"], style="bold")
    line.append(f"  next run {when(created.get('next_run_at'))} UTC")
    out().print(line)


@schedules_app.command("list")
def list_schedules(ctx: typer.Context, owner: Owner = None) -> None:
    """List schedules with their timetable, runs so far and next run."""
    options = api_options(ctx)
    with handled(), options.connect() as api:
        body = plain(api.schedules(owner=owner))
    if options.as_json:
        print_json(body)
    elif not body["schedules"]:
        out().print("no schedules")
    else:
        out().print(schedules_table(body["schedules"]))


@schedules_app.command("show")
def show_schedule(
    ctx: typer.Context, schedule_id: Annotated[str, typer.Argument(metavar="ID", help="A schedule id.")]
) -> None:
    """A schedule's details."""
    options = api_options(ctx)
    with handled(), options.connect() as api:
        schedule = plain(api.schedule(schedule_id))
    if options.as_json:
        print_json(schedule)
        return
    grid = Table.grid(padding=(0, 2))
    for name in ("id", "owner", "type", "queue", "timetable", "catch_up", "fired", "last_run_at"):
        value = timetable(schedule) if name == "timetable" else schedule.get(name)
        grid.add_row(Text(name, style="dim"), when(value) if name.endswith("_at") else str(value))
    grid.add_row(Text("next_run_at", style="dim"), when(schedule.get("next_run_at")))
    grid.add_row(Text("payload", style="dim"), compact(schedule.get("payload")))
    out().print(grid)


@schedules_app.command("pause")
def pause_schedule(
    ctx: typer.Context, schedule_id: Annotated[str, typer.Argument(metavar="ID", help="A schedule id.")]
) -> None:
    """Pause a schedule: no runs until it is resumed."""
    _set_paused(ctx, schedule_id, True)


@schedules_app.command("resume")
def resume_schedule(
    ctx: typer.Context, schedule_id: Annotated[str, typer.Argument(metavar="ID", help="A schedule id.")]
) -> None:
    """Resume a paused schedule from its next slot after now (slots missed while paused are skipped)."""
    _set_paused(ctx, schedule_id, False)


def _set_paused(ctx: typer.Context, schedule_id: str, paused: bool) -> None:
    options = api_options(ctx)
    with handled(), options.connect() as api:
        schedule = plain(api.change_schedule(schedule_id, {"paused": paused}))
    if options.as_json:
        print_json(schedule)
        return
    line = Text.assemble("paused " if paused else "resumed ", (schedule["id"], "bold"))
    if not paused:
        line.append(f"  next run {when(schedule.get('next_run_at'))} UTC")
    out().print(line)


@schedules_app.command("delete")
def delete_schedule(
    ctx: typer.Context,
    schedule_id: Annotated[str, typer.Argument(metavar="ID", help="A schedule id.")],
    yes: Yes = False,
) -> None:
    """Delete a schedule (asks first unless --yes): no more runs; jobs already submitted stay."""
    with handled():
        confirm(f"Delete schedule {schedule_id}?", yes)
        options = api_options(ctx)
        with options.connect() as api:
            api.delete_schedule(schedule_id)
    if options.as_json:
        print_json({"id": schedule_id, "deleted": True})
    else:
        out().print(Text.assemble("deleted schedule ", (schedule_id, "bold")))


def timetable(schedule: dict[str, Any]) -> str:
    if schedule.get("cron"):
        return f"{schedule['cron']} ({schedule['timezone']})"
    return f"every {schedule['every_seconds']} s"


def schedules_table(schedules: list[dict[str, Any]]) -> Table:
    table = Table()
    for column in ("id", "type", "timetable", "runs", "next run (UTC)"):
        table.add_column(column, no_wrap=True)
    for schedule in schedules:
        runs = str(schedule["fired"]) + (f"/{schedule['limit']}" if schedule.get("limit") else "")
        upcoming = schedule.get("next_run_at")
        table.add_row(
            schedule["id"],
            schedule["type"] if schedule.get("type_registered", True) else f"{schedule['type']} (gone)",
            timetable(schedule),
            runs,
            when(upcoming) if upcoming else Text("paused" if schedule.get("paused") else "over", style="dim"),
        )
    return table
