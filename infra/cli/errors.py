"""What can go wrong in a CLI command, each with its exit code; `output.handled` prints them as one line.

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


class ApiError(CliError):
    """The API answered with an error: `{"error": {"code", "message", "field"?}}` and its status."""

    exit_code = 1

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.field = field


class UnreachableError(CliError):
    """No usable answer: connection refused, timeout, or a response that is not the jobq API's."""

    exit_code = 3
