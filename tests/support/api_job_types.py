"""Job types registered in the global registry when imported (JOBQ_JOB_MODULES) by tests of the real entry
points; named `api_*` so they never clash with the built-in types."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from shared.registry import job_type


class ApiEcho(BaseModel):
    message: str


@job_type("api_echo", payload=ApiEcho)
async def api_echo(payload: ApiEcho, ctx: Any) -> str:
    return payload.message
