"""Options shared by every command that talks to a jobq API: where it is, the credential, `--json`."""

from __future__ import annotations

import re
from typing import Annotated

import typer

from infra.cli.api_client import DEFAULT_TIMEOUT, DEFAULT_URL, ApiClient, UsageError

API = "Connection"

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
Json = Annotated[bool, typer.Option("--json", help="Print the API's JSON (for scripts).")]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]

__all__ = ["DEFAULT_TIMEOUT", "DEFAULT_URL", "Json", "Key", "Timeout", "Url", "Yes", "connect", "duration"]


def connect(url: str, key: str | None, timeout: float) -> ApiClient:
    return ApiClient(url, key, timeout=timeout)


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d)?$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def duration(value: str) -> float:
    """`90`, `90s`, `30m`, `2h`, `7d` -> seconds."""
    match = _DURATION.match(value.strip().lower())
    if not match:
        raise UsageError(f"invalid duration {value!r}: use seconds or a number with s, m, h or d (e.g. 2h)")
    return float(match.group(1)) * _UNITS[match.group(2)]
