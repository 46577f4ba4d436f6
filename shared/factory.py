"""The one way to build the engine a deployment describes; the API and the consumers both build it here."""

from __future__ import annotations

from typing import Any

from shared.engine import Engine
from shared.registry import Registry
from shared.settings import Settings
from shared.store import make_redis


def build_engine(settings: Settings, registry: Registry, *, redis: Any = None) -> Engine:
    """The engine for `settings` speaking for `registry`'s queues, on `redis` (an upstash_redis.asyncio
    client; by default a new one from the settings, see shared.store.make_redis)."""
    return Engine(
        redis if redis is not None else make_redis(settings),
        prefix=settings.key_prefix,
        queue_options=registry.queue_options,
        queues=registry.queues(),
        max_payload_bytes=settings.max_payload_bytes,
        idempotency_window=settings.idempotency_window,
        timeout=settings.redis_timeout,
        lease_margin=settings.lease_margin,
        lanes=settings.lane_set,
        cluster=settings.redis_cluster,
    )
