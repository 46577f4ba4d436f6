"""What a consumer function needs, built once per warm instance, and the bounded run every trigger makes.

A bounded run (a scheduled tick or a push) drains within its budget, then, when work is due before the
next tick (a retry's backoff, a delayed job), books one wake-up for its lane: a delayed push through the
trigger (QStash's Upstash-Delay), deduplicated in Redis so at most one is pending per lane.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import Any

from shared.consumer import Consumer, ConsumerConfig, DrainReport
from shared.engine import Engine
from shared.errors import JobqError
from shared.factory import build_engine
from shared.logs import configure_logging
from shared.registry import Registry
from shared.registry import registry as default_registry
from shared.settings import Settings, get_settings
from shared.triggers import Trigger, build_trigger
from shared.usage import UsageBook

log = logging.getLogger("jobq.consumer")

PUSH_PATH = "/consume"  # where pushes arrive (push.py), on each lane function's own URL
SAFETY_MARGIN = 5.0  # seconds kept after the run's grace period for the final finish and the reply


def run_budget(context: Any, grace: float, *, default: float) -> float:
    """A Lambda run's budget: the invocation's remaining time less the shutdown grace and a margin."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return default
    return max(0.0, float(remaining()) / 1000 - grace - SAFETY_MARGIN)


@dataclass
class ConsumerRuntime:
    settings: Settings
    redis: Any  # upstash_redis.asyncio.Redis
    engine: Engine
    registry: Registry
    consumer: Consumer
    trigger: Trigger

    @property
    def lane(self) -> str:
        """The lane this function serves (its wake-ups go there); the shortest when it serves all."""
        return self.consumer.config.lane or self.settings.lane_set.names[0]


def build_runtime(
    settings: Settings | None = None,
    *,
    registry: Registry | None = None,
    redis: Any = None,
    config: ConsumerConfig | None = None,
    trigger: Trigger | None = None,
) -> ConsumerRuntime:
    settings = settings or get_settings()
    configure_logging(settings)
    if registry is None:
        registry = default_registry
        registry.load(settings.job_modules)
    registry.check_lanes(settings.lane_set)
    config = config or ConsumerConfig()
    if config.lane is None and settings.lane is not None:
        config = replace(config, lane=settings.lane)
    engine = build_engine(settings, registry, redis=redis)
    return ConsumerRuntime(
        settings=settings,
        redis=engine.store.redis,
        engine=engine,
        registry=registry,
        consumer=Consumer(
            engine,
            registry,
            config,
            usage=UsageBook(engine.store, engine.keys, budget_ttl=settings.budget_cache_seconds),
        ),
        trigger=trigger if trigger is not None else build_trigger(settings),
    )


async def run_bounded(runtime: ConsumerRuntime, budget: float) -> DrainReport:
    """One serverless run: drain within `budget` seconds, then book a wake-up for work due before the tick."""
    report = await runtime.consumer.drain(budget)
    if report.claimed and report.stopped != "budget":
        try:  # the run's own claims and retries moved the due times it read at its start
            report.next_due = await runtime.consumer.next_due()
        except JobqError as exc:
            log.warning("due-index read failed: %s", exc)
    await book_wake(runtime, report)
    return report


async def book_wake(runtime: ConsumerRuntime, report: DrainReport) -> None:
    if report.next_due is None:
        return
    delay = max(0.0, report.next_due - time.time())
    if delay >= runtime.settings.tick_seconds:  # the scheduled tick comes first
        return
    try:
        if not await runtime.engine.book_wake(runtime.lane, report.next_due):
            return  # a wake-up at or before that time is already pending
    except JobqError as exc:  # the tick is the fallback
        log.warning("could not book a wake-up: %s", exc)
        return
    log.debug("wake-up booked for lane %s in %.1f s", runtime.lane, delay)
    await runtime.trigger.fire(runtime.lane, delay=delay)
