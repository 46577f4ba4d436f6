"""`http`: a general outbound HTTP request (method, URL, headers, body) with the webhook's retry rules."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from functions.jobs.outbound import send
from shared.context import JobContext
from shared.models import Backoff
from shared.registry import job_type
from shared.urlguard import PublicHttpUrl


class HttpPayload(BaseModel):
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"] = "GET"
    url: PublicHttpUrl
    headers: dict[str, str] = Field(default_factory=dict, max_length=50)
    body: str | None = None
    timeout: float = Field(default=5.0, gt=0, le=10)


@job_type(
    "http", payload=HttpPayload, max_attempts=5, backoff=Backoff(kind="exponential", delay=5.0), timeout=12
)
async def http(payload: HttpPayload, ctx: JobContext) -> dict[str, Any]:
    content = payload.body.encode() if payload.body is not None else None
    return await send(
        payload.method, str(payload.url), headers=payload.headers, content=content, timeout=payload.timeout
    )
