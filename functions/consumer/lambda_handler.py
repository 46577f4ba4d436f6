"""The consumer's AWS Lambda entry point: HTTP events go to the push app (mangum), schedule events to drain.

mangum cannot infer a handler for an EventBridge event, so this small dispatcher decides first.
One event loop per warm instance keeps the Redis client's connection pool usable across invocations.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict
from functools import lru_cache
from typing import Any

from mangum import Mangum

from functions.consumer.push import create_push_app
from functions.consumer.runtime import ConsumerRuntime, build_runtime
from shared.errors import JobqError

log = logging.getLogger("jobq.consumer")

SAFETY_MARGIN = 5.0  # seconds kept after the drain's grace period for the final finish and the reply
DEFAULT_BUDGET = 55.0  # when the context cannot tell the remaining time (local runs)


@lru_cache(maxsize=1)
def runtime() -> ConsumerRuntime:
    return build_runtime()


@lru_cache(maxsize=1)
def adapter() -> Mangum:
    return Mangum(create_push_app(runtime()), lifespan="off")


@lru_cache(maxsize=1)
def event_loop() -> asyncio.AbstractEventLoop:
    return asyncio.new_event_loop()


def is_http(event: dict[str, Any]) -> bool:
    return "requestContext" in event or "httpMethod" in event or "routeKey" in event


def is_schedule(event: dict[str, Any]) -> bool:
    return event.get("source") == "aws.events" or event.get("detail-type") == "Scheduled Event"


def drain_budget(context: Any, grace: float) -> float:
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return DEFAULT_BUDGET
    return max(0.0, float(remaining()) / 1000 - grace - SAFETY_MARGIN)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    loop = event_loop()
    asyncio.set_event_loop(loop)  # mangum runs the app on the current loop: make it ours
    if is_http(event):
        response: dict[str, Any] = adapter()(event, context)
        return response
    if is_schedule(event):
        consumer = runtime().consumer
        budget = drain_budget(context, consumer.config.batch.grace)
        try:
            report = loop.run_until_complete(consumer.drain(budget))
        except JobqError as exc:  # the next tick tries again; a Lambda retry would only pile up runs
            log.warning("scheduled drain failed: %s", exc)
            return {"ok": False, "error": exc.code}
        log.info("scheduled drain: %s", asdict(report))
        return {"ok": True, "report": asdict(report)}
    log.warning("ignored an event that is neither HTTP nor a schedule: keys %s", sorted(event)[:10])
    return {"ok": False, "error": "unsupported event"}
