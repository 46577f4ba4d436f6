"""Submit rate limits per credential with upstash-ratelimit on the same Redis: one EVAL per checked call."""

from __future__ import annotations

import math
import time
from typing import Any

from upstash_ratelimit.asyncio import Ratelimit, SlidingWindow

from functions.api.auth import Principal
from shared.apikeys import parse_rate
from shared.errors import RateLimitedError
from shared.store import Store

_UPSTASH_FLAGS = "#!lua flags=allow-key-locking"


class _PortableEval:
    """upstash-ratelimit's scripts open with an Upstash-only shebang flag that Redis 7 refuses ("Unexpected
    flag"); dropping that line (a locking hint only) runs the same limiter on Upstash and on plain Redis."""

    def __init__(self, redis: Any) -> None:
        self._redis = redis

    async def eval(self, script: str, keys: list[str] | None = None, args: list[Any] | None = None) -> Any:
        return await self._redis.eval(script.replace(_UPSTASH_FLAGS, "", 1), keys, args)


class SubmitLimiter:
    def __init__(self, store: Store, prefix: str, default_rate: str) -> None:
        parse_rate(default_rate)
        self._store = store
        self._redis: Any = _PortableEval(store.redis)  # all Ratelimit calls: eval
        self._prefix = prefix
        self._default = default_rate
        self._limiters: dict[str, Ratelimit] = {}

    async def check(self, principal: Principal) -> None:
        """Count one submit; RateLimitedError (429 with Retry-After) when over the credential's rate."""
        rate = principal.rate or self._default
        limiter = self._limiter(rate)
        response = await self._store.call(lambda: limiter.limit(principal.credential))
        if not response.allowed:
            wait = max(1, math.ceil(response.reset - time.time()))
            raise RateLimitedError(f"rate limit of {rate} exceeded; retry in {wait}s", retry_after=wait)

    def _limiter(self, rate: str) -> Ratelimit:
        limiter = self._limiters.get(rate)
        if limiter is None:
            count, window = parse_rate(rate)
            # Keyed by rate too, so a key whose rate changes starts a fresh window.
            prefix = f"{self._prefix}:{count}/{window}"
            limiter = Ratelimit(
                self._redis, SlidingWindow(max_requests=count, window=window, unit="s"), prefix
            )
            self._limiters[rate] = limiter
        return limiter
