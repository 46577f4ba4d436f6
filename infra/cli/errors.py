"""What can go wrong in a CLI command, each with its exit code; `output.handled` prints them as one line,
and the API client's errors (jobq.client.errors) too: 1 the API refused, 2 usage, 3 unreachable.

Apart from the HTTP client, so a command module can raise them without loading httpx.
"""

from __future__ import annotations


class CliError(Exception):
    """A failure the CLI reports as one line on stderr with `exit_code`."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(CliError):
    exit_code = 2
