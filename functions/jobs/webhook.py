"""`webhook`: POST a JSON body to a URL, HMAC-SHA256 signed (shared/signing.py) when a secret is set."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, Field

from functions.jobs.outbound import send
from shared.context import JobContext
from shared.models import Backoff
from shared.registry import job_type
from shared.settings import get_settings
from shared.signing import signed_headers
from shared.urlguard import PublicHttpUrl


class WebhookPayload(BaseModel):
    url: PublicHttpUrl
    body: Any = None
    headers: dict[str, str] = Field(default_factory=dict, max_length=50)
    timeout: float = Field(default=5.0, gt=0, le=10)


@job_type(
    "webhook",
    payload=WebhookPayload,
    max_attempts=5,
    backoff=Backoff(kind="exponential", delay=5.0),
    timeout=12,
)
async def webhook(payload: WebhookPayload, ctx: JobContext) -> dict[str, Any]:
    content = json.dumps(payload.body, separators=(",", ":")).encode()
    headers = {**payload.headers, "Content-Type": "application/json", "Jobq-Job-Id": ctx.job_id}
    secret = get_settings().webhook_secret
    if secret is not None:
        headers.update(signed_headers(secret.get_secret_value(), content))
    return await send("POST", str(payload.url), headers=headers, content=content, timeout=payload.timeout)
