"""Completion callbacks and hooks: what a delivery job does when a consumer runs it.

When a job with a callback URL (or of a type with hooks) reaches a final state, the script that records
that state also writes a delivery job of type CALLBACK_TYPE into the job's queue (lib.lua `notify`), so a
consumer that dies between the two loses nothing. Running it:

1. the type's hooks for that state, with the finished Job, unless an earlier attempt already ran them
   (its log says so); a hook's error is logged and does not stop the others or the delivery;
2. a POST of the job's outcome to the callback URL, signed like the webhook type (shared/signing.py)
   when JOBQ_WEBHOOK_SECRET is set, through the same outbound guard (functions/jobs/outbound.py): a 5xx,
   408, 429 or network error retries the delivery with backoff (CALLBACK_ATTEMPTS), another 4xx ends it.

Delivery is at least once: a delivery whose consumer dies mid-way runs again, so a receiver deduplicates by
the `Jobq-Delivery` header (the delivery job's id), and a hook must be safe to repeat.
"""

from __future__ import annotations

import inspect
import json
import logging
from typing import Any

from pydantic import BaseModel, Field

from functions.jobs.outbound import send
from shared.context import JobContext
from shared.engine import Engine
from shared.errors import JobNotFoundError
from shared.limits import CALLBACK_ATTEMPTS, CALLBACK_TIMEOUT, CALLBACK_TYPE, MAX_CALLBACK_URL
from shared.models import Job, State
from shared.registry import JobType, Registry
from shared.settings import get_settings
from shared.signing import signed_headers

log = logging.getLogger("jobq.callbacks")

HOOKS_DONE = "hooks done"  # the log line that tells a retried delivery its hooks already ran
SEND_TIMEOUT = 10.0  # seconds per HTTP phase of the POST
# What the POST carries of the job: its outcome and labels, never its payload (it may hold secrets).
BODY_FIELDS = frozenset(
    {
        *("id", "type", "queue", "owner", "attempts", "result", "error"),
        *("created_at", "started_at", "finished_at", "metadata", "tags"),
    }
)


class Delivery(BaseModel):
    """A delivery job's payload, written by lib.lua `notify`."""

    job: str = Field(max_length=200)
    state: State
    url: str | None = Field(default=None, max_length=MAX_CALLBACK_URL)


class Deliveries:
    """The delivery job type, bound to the engine and registry of the consumer that runs it."""

    def __init__(self, engine: Engine, registry: Registry) -> None:
        self.engine, self.registry = engine, registry
        self.job_type = JobType(
            name=CALLBACK_TYPE,
            payload_model=Delivery,
            handler=self.deliver,
            queue=CALLBACK_TYPE,
            max_attempts=CALLBACK_ATTEMPTS,
            timeout=CALLBACK_TIMEOUT,
        )

    async def deliver(self, delivery: Delivery, ctx: JobContext) -> dict[str, Any]:
        try:
            job: Job | None = await self.engine.get(delivery.job)
        except JobNotFoundError:
            job = None  # deleted by retention since: the URL still hears of the outcome
        if HOOKS_DONE not in ctx.job.logs:
            await self.run_hooks(job, delivery)
            await ctx.log(HOOKS_DONE)
        if delivery.url is None:
            return {"hooks": True}
        content = json.dumps(body(delivery, job), separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            "Jobq-Job-Id": delivery.job,
            "Jobq-Event": f"job.{delivery.state.value}",
            "Jobq-Delivery": ctx.job_id,
        }
        secret = get_settings().webhook_secret
        if secret is not None:
            headers.update(signed_headers(secret.get_secret_value(), content))
        return await send("POST", delivery.url, headers=headers, content=content, timeout=SEND_TIMEOUT)

    async def run_hooks(self, job: Job | None, delivery: Delivery) -> None:
        if job is None:
            log.warning("job %s is gone: its %s hooks cannot run", delivery.job, delivery.state.value)
            return
        hooks = self.registry.get(job.type).hooks if job.type in self.registry else {}
        for hook in hooks.get(delivery.state, ()):
            try:
                done = hook(job)
                if inspect.isawaitable(done):
                    await done
            except Exception:  # a hook's failure is the app's to fix; the job's outcome stands
                log.exception("hook %s of job type %s failed", getattr(hook, "__name__", hook), job.type)


def body(delivery: Delivery, job: Job | None) -> dict[str, Any]:
    """The JSON a callback URL receives: the final state it is for, and the job's outcome."""
    fields = {} if job is None else job.model_dump(mode="json", include=set(BODY_FIELDS))
    return {**fields, "id": delivery.job, "state": delivery.state.value}
