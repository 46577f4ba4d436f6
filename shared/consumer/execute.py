"""Run one handler to its Outcome: the payload parsed, the timeout held, every ending mapped.

An async handler is cancelled at its timeout. A plain (blocking) function runs in a worker thread; Python
cannot stop a thread, so at the timeout the attempt fails and the thread is left to end on its own: its
late return is discarded, and any write it could still make is refused by the lease fence.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
from typing import Any

from pydantic import BaseModel

from shared.consumer import outcomes
from shared.context import JobContext, Sleep
from shared.errors import UnknownJobTypeError, ValidationError
from shared.models import ClaimedJob, Outcome
from shared.registry import JobType, Registry


async def execute(
    registry: Registry, claimed: ClaimedJob, ctx: JobContext, internal: JobType | None = None
) -> Outcome:
    """The job's outcome; raises CancelledError only when the consumer itself cancels the run.
    `internal` is a type of jobq's own the registry does not hold (the delivery of callbacks)."""
    job, token = claimed.job, claimed.token
    try:
        job_type = internal if internal is not None and job.type == internal.name else registry.get(job.type)
        payload: BaseModel = job_type.parse(job.payload)
    except (UnknownJobTypeError, ValidationError) as exc:
        return outcomes.permanent(job.id, token, f"{exc.field}: {exc.message}", job.attempts)
    result: Any = None
    try:
        async with asyncio.timeout(job.timeout) as scope:
            result = await _call(job_type.handler, payload, ctx)
    except Sleep as sleep:  # the handler ends this invocation; the job resumes when the sleep is over
        return outcomes.asleep(job.id, token, sleep.seconds, sleep.step)
    except TimeoutError as exc:
        if scope.expired():
            return outcomes.timed_out(job.id, token, job.timeout, job.attempts)
        return outcomes.from_error(job.id, token, exc, job.attempts)
    except asyncio.CancelledError as exc:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise  # the consumer is cancelling this run (shutdown past the grace)
        # A cancellation raised by the handler's own code is its failure, not ours.
        return outcomes.from_error(job.id, token, exc, job.attempts)
    except Exception as exc:  # a handler's failure is data for the engine, never a crash of the run
        if ctx.cancel_requested:
            return outcomes.cancelled(job.id, token, job.attempts)
        return outcomes.from_error(job.id, token, exc, job.attempts)
    if ctx.cancel_requested:  # the engine records a late completion as cancelled too; say so here
        return outcomes.cancelled(job.id, token, job.attempts)
    return outcomes.completed(job.id, token, result, job.attempts)


async def _call(handler: Any, payload: BaseModel, ctx: JobContext) -> Any:
    if inspect.iscoroutinefunction(handler):
        return await handler(payload, ctx)
    # A blocking handler: a worker thread, with the caller's context variables (logging fields).
    call = functools.partial(contextvars.copy_context().run, handler, payload, ctx)
    result = await asyncio.get_running_loop().run_in_executor(None, call)
    if inspect.isawaitable(result):  # a plain function that returned a coroutine (a lambda, a partial)
        return await result
    return result
