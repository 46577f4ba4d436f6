"""How a handler's return or exception becomes the Outcome the engine records."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from shared.codec import dumps
from shared.errors import PermanentJobError, RetryJobError
from shared.models import ErrorKind, JobError, Outcome

MAX_ERROR_CHARS = 1000


def describe(exc: BaseException) -> str:
    text = str(exc)
    message = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return message[:MAX_ERROR_CHARS]


def _failed(job_id: str, token: str, kind: ErrorKind, message: str, attempt: int) -> Outcome:
    error = JobError(kind=kind, message=message[:MAX_ERROR_CHARS], attempt=attempt)
    return Outcome(job_id=job_id, token=token, status="failed", error=error)


def completed(job_id: str, token: str, result: Any, attempt: int) -> Outcome:
    if isinstance(result, BaseModel):
        result = result.model_dump(mode="json")
    try:
        dumps(result)  # the engine's own encoder: no NaN or Infinity, which JSON does not have
    except (TypeError, ValueError, RecursionError) as exc:
        # Retrying cannot make the result serialisable: a bug in the handler. Only this job fails.
        return _failed(job_id, token, ErrorKind.PERMANENT, f"result is not JSON: {exc}", attempt)
    return Outcome(job_id=job_id, token=token, status="completed", result=result)


def from_error(job_id: str, token: str, exc: BaseException, attempt: int) -> Outcome:
    """Permanent -> failed at once; retry-after -> retry with its delay; anything else -> retryable."""
    if isinstance(exc, PermanentJobError):
        return _failed(job_id, token, ErrorKind.PERMANENT, exc.message, attempt)
    if isinstance(exc, RetryJobError):
        error = JobError(kind=ErrorKind.RETRYABLE, message=exc.message, attempt=attempt)
        return Outcome(job_id=job_id, token=token, status="retry", error=error, retry_after=exc.after)
    return _failed(job_id, token, ErrorKind.RETRYABLE, describe(exc), attempt)


def timed_out(job_id: str, token: str, timeout: float, attempt: int) -> Outcome:
    return _failed(
        job_id, token, ErrorKind.TIMEOUT, f"handler exceeded its timeout of {timeout:g} s", attempt
    )


def permanent(job_id: str, token: str, message: str, attempt: int) -> Outcome:
    return _failed(job_id, token, ErrorKind.PERMANENT, message, attempt)


def cancelled(job_id: str, token: str, attempt: int) -> Outcome:
    error = JobError(kind=ErrorKind.CANCELLED, message="cancelled while running", attempt=attempt)
    return Outcome(job_id=job_id, token=token, status="cancelled", error=error)


def asleep(job_id: str, token: str, seconds: float, step: str) -> Outcome:
    """The handler sleeps (JobContext.sleep): delayed `seconds`, its attempt given back, the sleep a step."""
    return Outcome(job_id=job_id, token=token, status="sleep", retry_after=seconds, step=step)


def interrupted(job_id: str, token: str, attempt: int) -> Outcome:
    """A handler still running when the shutdown grace ran out: retry at once (the attempt counts)."""
    error = JobError(kind=ErrorKind.RETRYABLE, message="interrupted by consumer shutdown", attempt=attempt)
    return Outcome(job_id=job_id, token=token, status="retry", error=error, retry_after=0.0)
