"""What a consumer function needs, built once per warm instance: Redis client, engine, registry, consumer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.consumer import Consumer, ConsumerConfig
from shared.engine import Engine
from shared.logs import configure_logging
from shared.registry import Registry
from shared.registry import registry as default_registry
from shared.settings import Settings, get_settings
from shared.store import make_redis


@dataclass
class ConsumerRuntime:
    settings: Settings
    redis: Any  # upstash_redis.asyncio.Redis
    engine: Engine
    registry: Registry
    consumer: Consumer


def build_runtime(
    settings: Settings | None = None,
    *,
    registry: Registry | None = None,
    redis: Any = None,
    config: ConsumerConfig | None = None,
) -> ConsumerRuntime:
    settings = settings or get_settings()
    configure_logging(settings)
    if registry is None:
        registry = default_registry
        registry.load(settings.job_modules)
    redis = redis if redis is not None else make_redis(settings)
    engine = Engine(
        redis,
        prefix=settings.key_prefix,
        queue_options=registry.queue_options,
        max_payload_bytes=settings.max_payload_bytes,
        idempotency_window=settings.idempotency_window,
        timeout=settings.redis_timeout,
    )
    consumer = Consumer(engine, registry, config)
    return ConsumerRuntime(
        settings=settings, redis=redis, engine=engine, registry=registry, consumer=consumer
    )
