"""The consumer's AWS Lambda entry point: HTTP events go to the push app (mangum), schedule events to a run.

mangum cannot infer a handler for an EventBridge event, so this small dispatcher decides first.
One event loop per warm instance keeps the Redis client's connection pool usable across invocations.
The HTTP side (Starlette, mangum, QStash's verifier) is imported by the first HTTP event: a scheduled
run's cold start does not pay for it.
Each lane (shared/lanes.py) is one such function, with JOBQ_LANE naming it and a timeout that holds it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import asdict
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from functions.consumer.runtime import PUSH_PATH, ConsumerRuntime, build_runtime, run_bounded, run_budget
from shared.errors import JobqError
from shared.settings import get_settings

if TYPE_CHECKING:
    from mangum import Mangum

log = logging.getLogger("jobq.consumer")

DEFAULT_BUDGET = 55.0  # when the context cannot tell the remaining time (local runs)


@lru_cache(maxsize=1)
def runtime() -> ConsumerRuntime:
    settings = get_settings()
    lane = settings.lane or settings.lane_set.names[0]
    if settings.push_url(lane) is None and (name := os.environ.get("AWS_LAMBDA_FUNCTION_NAME")):
        own = own_push_url(name)
        if own is not None:
            settings.consumer_urls = {**settings.consumer_urls, lane: own}
    return build_runtime(settings)


def own_push_url(function_name: str, client: Any = None) -> str | None:
    """This function's push URL (its Function URL + /consume), where its delayed wake-ups go."""
    try:
        if client is None:
            import boto3  # type: ignore[import-untyped]  # in Lambda's runtime; only this lookup needs it

            client = boto3.client("lambda")
        url = str(client.get_function_url_config(FunctionName=function_name)["FunctionUrl"])
    except Exception as exc:  # no URL or no permission: wake-ups then wait for the schedule
        log.warning("no Function URL for %s (%s); wake-ups fall back to the schedule", function_name, exc)
        return None
    return url.rstrip("/") + PUSH_PATH


@lru_cache(maxsize=1)
def adapter() -> Mangum:
    from mangum import Mangum

    from functions.consumer.push import create_push_app

    return Mangum(create_push_app(runtime()), lifespan="off")


@lru_cache(maxsize=1)
def event_loop() -> asyncio.AbstractEventLoop:
    return asyncio.new_event_loop()


def is_http(event: dict[str, Any]) -> bool:
    return "requestContext" in event or "httpMethod" in event or "routeKey" in event


def is_schedule(event: dict[str, Any]) -> bool:
    return event.get("source") == "aws.events" or event.get("detail-type") == "Scheduled Event"


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    loop = event_loop()
    asyncio.set_event_loop(loop)  # mangum runs the app on the current loop: make it ours
    if is_http(event):
        response: dict[str, Any] = adapter()(event, context)
        return response
    if is_schedule(event):
        budget = run_budget(context, runtime().consumer.config.grace, default=DEFAULT_BUDGET)
        try:
            report = loop.run_until_complete(run_bounded(runtime(), budget))
        except JobqError as exc:  # the next tick tries again; a Lambda retry would only pile up runs
            log.warning("scheduled run failed: %s", exc)
            return {"ok": False, "error": exc.code}
        return {"ok": True, "report": asdict(report)}
    log.warning("ignored an event that is neither HTTP nor a schedule: keys %s", sorted(event)[:10])
    return {"ok": False, "error": "unsupported event"}
