"""/health: liveness plus one Redis round trip with its latency; 503 when Redis cannot be reached."""

from __future__ import annotations

import time

from functions.api.deferred import api_router
from functions.api.deps import ServicesDep
from functions.api.schemas import ErrorBody, Health, RedisHealth

router = api_router(tags=["health"])


@router.get("/health", responses={503: {"model": ErrorBody, "description": "Redis is unreachable"}})
async def health(services: ServicesDep) -> Health:
    started = time.perf_counter()
    await services.store.call(services.redis.ping)
    return Health(
        status="ok", redis=RedisHealth(ok=True, latency_ms=round((time.perf_counter() - started) * 1000, 2))
    )
