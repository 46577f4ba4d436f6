"""The Python client of the jobq HTTP API, sync and async (docs/client.md):

    from jobq.client import Client

    with Client("https://jobs.example.com", key) as jobq:
        job = jobq.submit("report", {"project_id": 7}, tags=["session:abc"])
        done = jobq.wait(job.id, timeout=120)

Errors are typed (jobq.client.errors) and carry the API's `code`, `field` and HTTP `status`.

Names are loaded on first use, so `jobq.client.errors` alone (what the CLI's start-up imports) does not
load httpx and pydantic.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobq.client.aio import AsyncClient
    from jobq.client.calls import submit_body
    from jobq.client.errors import (
        ApiError,
        AuthenticationError,
        BadRequestError,
        ConflictError,
        InvalidArgumentError,
        JobqError,
        NotFoundError,
        PermissionDeniedError,
        RateLimitedError,
        ServerError,
        TransportError,
        WaitTimeoutError,
    )
    from jobq.client.models import Job, JobEvent, JobPage, JobStatus, State, Submitted
    from jobq.client.sync import Client

_HOMES = {
    "AsyncClient": "aio",
    "Client": "sync",
    "submit_body": "calls",
    **dict.fromkeys(("Job", "JobEvent", "JobPage", "JobStatus", "State", "Submitted"), "models"),
    **dict.fromkeys(
        (
            "ApiError",
            "AuthenticationError",
            "BadRequestError",
            "ConflictError",
            "InvalidArgumentError",
            "JobqError",
            "NotFoundError",
            "PermissionDeniedError",
            "RateLimitedError",
            "ServerError",
            "TransportError",
            "WaitTimeoutError",
        ),
        "errors",
    ),
}
__all__ = [
    "ApiError",
    "AsyncClient",
    "AuthenticationError",
    "BadRequestError",
    "Client",
    "ConflictError",
    "InvalidArgumentError",
    "Job",
    "JobEvent",
    "JobPage",
    "JobStatus",
    "JobqError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitedError",
    "ServerError",
    "State",
    "Submitted",
    "TransportError",
    "WaitTimeoutError",
    "submit_body",
]

assert set(__all__) == set(_HOMES)


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'jobq.client' has no attribute {name!r}")
    return getattr(import_module(f"jobq.client.{home}"), name)
