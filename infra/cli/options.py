"""The options every API command shares, given once before the command (`jobq --json stats`): where the API
is, the credential, the timeout and `--json`. The root callback keeps them in `ctx.obj` as `ApiOptions`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

import click
import typer

from infra.cli.errors import CliError, UsageError

if TYPE_CHECKING:
    from jobq.client import Client

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT = 30.0
API = "Connection (the API commands)"

Url = Annotated[
    str,
    typer.Option("--url", envvar="JOBQ_API_URL", help="The jobq API's base URL.", rich_help_panel=API),
]
Key = Annotated[
    str | None,
    typer.Option(
        "--key",
        envvar="JOBQ_API_KEY",
        help="API key or admin token (prefer the env var: flags show up in `ps`). Never printed.",
        show_default=False,
        rich_help_panel=API,
    ),
]
Timeout = Annotated[
    float,
    typer.Option(
        "--timeout",
        envvar="JOBQ_API_TIMEOUT",
        min=0.1,
        help="Seconds to wait for an answer.",
        rich_help_panel=API,
    ),
]
Json = Annotated[
    bool, typer.Option("--json", help="Print the API's JSON (for scripts).", rich_help_panel=API)
]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


@dataclass(frozen=True)
class ApiOptions:
    url: str = DEFAULT_URL
    key: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    as_json: bool = False

    def connect(self) -> Client:
        """The Python client (jobq.client); httpx is loaded by the commands that call the API alone."""
        from jobq.client import Client, InvalidArgumentError

        try:
            return Client(self.url, self.key or "", timeout=self.timeout)  # "": no second look at the env
        except InvalidArgumentError as exc:
            raise UsageError(f"{exc.message} (--url / JOBQ_API_URL, --key / JOBQ_API_KEY)") from None


def api_options(ctx: typer.Context) -> ApiOptions:
    """The options the root callback read (`jobq --url ... COMMAND`)."""
    return ctx.ensure_object(ApiOptions)


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d)?$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def duration(value: str) -> float:
    """`90`, `90s`, `30m`, `2h`, `7d` -> seconds."""
    match = _DURATION.match(value.strip().lower())
    if not match:
        raise UsageError(f"invalid duration {value!r}: use seconds or a number with s, m, h or d (e.g. 2h)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def confirm(question: str, yes: bool) -> None:
    """Ask before a destructive action unless --yes; declining exits 1 with nothing changed."""
    if yes:
        return
    try:
        agreed = typer.confirm(question, default=False, err=True)
    except click.Abort:
        agreed = False
    if not agreed:
        raise CliError("not confirmed: nothing changed (pass --yes to skip the question)")
