"""What the routes need, built once per app (per warm function instance): engine, keys, auth, limiter."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from functions.api.auth import Authenticator
from functions.api.ratelimit import SubmitLimiter
from shared import freshness
from shared.apikeys import ApiKeyStore
from shared.engine import Engine
from shared.factory import build_engine
from shared.keys import Keys
from shared.registry import Registry
from shared.settings import Settings
from shared.store import Store
from shared.triggers import Trigger, build_trigger
from shared.usage import UsageBook


@dataclass
class Services:
    settings: Settings
    redis: Any  # upstash_redis.asyncio.Redis
    store: Store  # bounded, typed calls for the few commands the API sends itself
    engine: Engine
    keys: ApiKeyStore
    auth: Authenticator
    limiter: SubmitLimiter
    trigger: Trigger
    registry: Registry
    usage: UsageBook  # usage totals and budgets (shared/usage.py)


def build_services(
    settings: Settings,
    *,
    registry: Registry,
    redis: Any = None,
    trigger: Trigger | None = None,
) -> Services:
    engine = build_engine(settings, registry, redis=redis)
    redis = engine.store.redis
    freshness.install(redis)  # a request's Jobq-Sync-Token reaches its Redis calls (SyncTokenMiddleware)
    store = Store(redis, timeout=settings.redis_timeout)
    keys = Keys(settings.key_prefix)
    key_store = ApiKeyStore(store, keys.api_keys())
    return Services(
        settings=settings,
        redis=redis,
        store=store,
        engine=engine,
        keys=key_store,
        auth=Authenticator(settings, key_store),
        limiter=SubmitLimiter(store, keys.rate_limits(), settings.default_rate),
        trigger=trigger if trigger is not None else build_trigger(settings),
        registry=registry,
        usage=UsageBook(store, keys, budget_ttl=settings.budget_cache_seconds),
    )
