"""The `jobq` command line. Each module here adds one group of subcommands to `app`.

`jobq version` and `--help` must answer at once: command modules import only typer and small modules at
the top, and what one command needs (httpx, the local stack, the consumer) inside that command.
"""

from __future__ import annotations

import typer

from infra.cli.options import DEFAULT_TIMEOUT, DEFAULT_URL, ApiOptions, Json, Key, Timeout, Url

app = typer.Typer(
    name="jobq",
    help="Serverless background jobs on Upstash Redis.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def main(
    ctx: typer.Context,
    url: Url = DEFAULT_URL,
    key: Key = None,
    timeout: Timeout = DEFAULT_TIMEOUT,
    as_json: Json = False,
) -> None:
    """jobq: serverless background jobs on Upstash Redis. Connection options go before the command:
    `jobq --json stats`."""
    ctx.obj = ApiOptions(url=url, key=key, timeout=timeout, as_json=as_json)


def import_from_working_directory() -> None:
    """Let JOBQ_JOB_MODULES name modules in the working directory, as `python -m` would: an installed
    script's `sys.path` starts at its own bin directory instead."""
    import os
    import sys

    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)


# Imported for their side effect of registering commands on `app`.
from infra.cli import client, dev, gateway, keys, schedules, worker  # noqa: E402, F401


@app.command()
def version() -> None:
    """Print jobq's version."""
    from importlib.metadata import version as pkg_version

    typer.echo(pkg_version("jobq"))
