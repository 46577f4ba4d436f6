"""The `jobq` command line. Each module here adds one group of subcommands to `app`."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="jobq",
    help="Serverless background jobs on Upstash Redis.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def main() -> None:
    """jobq: serverless background jobs on Upstash Redis."""


# Imported for their side effect of registering commands on `app`.
from infra.cli import client, dev, gateway, keys, worker  # noqa: E402, F401


@app.command()
def version() -> None:
    """Print jobq's version."""
    from importlib.metadata import version as pkg_version

    typer.echo(pkg_version("jobq"))
