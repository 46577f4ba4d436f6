"""What the client raises: one class per kind of failure, each carrying the API's error `code`, `message`,
`field` (the request field at fault, when one is) and HTTP `status` (None when no answer came back).

Apart from the transport, so a caller can catch them without loading httpx.
"""

from __future__ import annotations


class JobqError(Exception):
    """Base of every error the client raises."""

    def __init__(
        self, message: str, *, code: str = "error", status: int | None = None, field: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.field = field

    def __str__(self) -> str:
        where = f" [field: {self.field}]" if self.field else ""
        status = f" (HTTP {self.status})" if self.status is not None else ""
        return f"{self.code}{status}: {self.message}{where}"


class InvalidArgumentError(JobqError, ValueError):
    """Refused before sending: an API URL or key that cannot be sent, an id that is not one."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="invalid_argument")


class ApiError(JobqError):
    """The API answered with its error shape `{"error": {"code", "message", "field"}}`."""


class BadRequestError(ApiError):
    """400, 413 or 422: the request was refused as it is (`field` names what to fix)."""


class AuthenticationError(ApiError):
    """401: no credential, or one the API does not accept."""


class PermissionDeniedError(ApiError):
    """403: the credential may not do this (an admin route, another owner's jobs)."""


class NotFoundError(ApiError):
    """404: no such job (another owner's job is not found either)."""


class ConflictError(ApiError):
    """409: the job's state does not allow it (retry of a running job), or an idempotency key reused for
    a different request."""


class RateLimitedError(ApiError):
    """429: too many submits; `retry_after` seconds until the window resets (None when not said)."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.retry_after = retry_after


class ServerError(ApiError):
    """5xx: the API or its Redis failed; retrying later is safe for reads, cancels and idempotent submits."""


class TransportError(JobqError):
    """No usable answer: the API could not be reached, timed out, or answered something that is not jobq's."""


class WaitTimeoutError(JobqError):
    """`wait()` reached its deadline before the job finished (the job carries on)."""

    def __init__(self, message: str, *, job_id: str, state: str) -> None:
        super().__init__(message, code="wait_timeout")
        self.job_id = job_id
        self.state = state


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    405: BadRequestError,
    409: ConflictError,
    413: BadRequestError,
    415: BadRequestError,
    422: BadRequestError,
    429: RateLimitedError,
}


def api_error(status: int, code: str, message: str, field: str | None, retry_after: float | None) -> ApiError:
    """The typed error for an error answer of the API."""
    kind = _BY_STATUS.get(status) or (ServerError if status >= 500 else ApiError)
    if kind is RateLimitedError:
        return RateLimitedError(message, retry_after=retry_after, code=code, status=status, field=field)
    return kind(message, code=code, status=status, field=field)
