"""One error hierarchy for jobq. Each error carries a stable code and the HTTP status it maps to."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# pydantic's messages for "not an object" name the model class ("... or instance of SleepPayload"), which
# is our code's name, not the caller's: these say what was expected in JSON terms instead.
_OBJECT_EXPECTED = frozenset({"model_type", "model_attributes_type", "dict_type"})


class JobqError(Exception):
    """Base of every error jobq raises on purpose."""

    code = "error"
    status_code = 500

    def __init__(self, message: str = "", *, field: str | None = None) -> None:
        super().__init__(message or self.code)
        self.message = message or self.code
        self.field = field

    def to_dict(self) -> dict[str, str]:
        body = {"code": self.code, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        return body


def validation_message(error: Mapping[str, Any]) -> str:
    """A caller's message for one of pydantic's validation errors (`ValidationError.errors()` items)."""
    if error.get("type") in _OBJECT_EXPECTED:
        return "Input should be a JSON object"
    return str(error.get("msg", "invalid value"))


class ValidationError(JobqError):
    code = "invalid"
    status_code = 422


class PayloadTooLargeError(JobqError):
    code = "too_large"
    status_code = 413


class UnknownJobTypeError(ValidationError):
    code = "unknown_type"


class JobNotFoundError(JobqError):
    code = "not_found"
    status_code = 404


class IdempotencyConflictError(JobqError):
    code = "idempotency_conflict"
    status_code = 409


class InvalidTransitionError(JobqError):
    code = "invalid_transition"
    status_code = 409


class SingletonConflictError(JobqError):
    """A submit with a singleton key while a job holding that key waits or runs: `job_id` names it."""

    code = "singleton_conflict"
    status_code = 409

    def __init__(self, message: str = "", *, field: str | None = None, job_id: str | None = None) -> None:
        super().__init__(message, field=field)
        self.job_id = job_id


class LeaseLostError(JobqError):
    code = "lease_lost"
    status_code = 409


class FlowKeysError(JobqError):
    """A script met a flow link into a queue whose keys the call did not carry (message: the queues). The
    engine calls again with them; it never reaches a caller."""

    code = "needs_queues"
    status_code = 500


class AuthError(JobqError):
    code = "unauthorized"
    status_code = 401


class ForbiddenError(JobqError):
    code = "forbidden"
    status_code = 403


class RateLimitedError(JobqError):
    code = "rate_limited"
    status_code = 429

    def __init__(self, message: str = "", *, retry_after: float = 1.0) -> None:
        super().__init__(message or "rate limit exceeded")
        self.retry_after = retry_after


class StoreUnavailableError(JobqError):
    """Redis (the REST endpoint) could not be reached or answered 5xx; safe to retry later."""

    code = "store_unavailable"
    status_code = 503


class StoreError(JobqError):
    """Redis answered with an error reply that jobq does not map to a typed error."""

    code = "store_error"
    status_code = 500


class PermanentJobError(JobqError):
    """Raised by a handler: the job fails at once, without retries (straight to the dead-letter set)."""

    code = "permanent"
    status_code = 422


class StepLimitError(PermanentJobError):
    """A durable step that cannot be recorded: its result too large, or the job has too many steps.

    Raised by `ctx.step` (and `ctx.sleep`), naming the step; uncaught, it fails the job at once, since
    running the attempt again would hit the same limit."""

    code = "step_limit"


class RetryJobError(JobqError):
    """Raised by a handler: retry after `after` seconds (the attempt still counts towards max attempts)."""

    code = "retry"
    status_code = 503

    def __init__(self, message: str = "", *, after: float = 0.0) -> None:
        super().__init__(message or f"retry in {after:g} s")
        if after < 0:
            raise ValueError("after must be >= 0 seconds")
        self.after = after
