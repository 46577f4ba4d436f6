"""Submit rate limits per credential with upstash-ratelimit on the same Redis: one EVAL per checked call.

"N per window" is a token bucket (upstash-ratelimit's TokenBucket): a credential holds at most N tokens,
a submit takes one, and one token comes back every window/N. So a client that paces itself at N per window
is never refused, an idle client may burst N at once, and over any span of T seconds at most
N + N*T/window submits get through (docs/decisions.md). A refused submit is told exactly when the next
token arrives: that is its Retry-After.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from upstash_ratelimit.asyncio import Ratelimit, TokenBucket

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


def bucket(rate: str) -> TokenBucket:
    """N tokens, one back every window/N (rounded up to the millisecond, never faster than the rate)."""
    count, window = parse_rate(rate)
    return TokenBucket(max_tokens=count, refill_rate=1, interval=math.ceil(window * 1000 / count), unit="ms")


class SubmitLimiter:
    def __init__(
        self, store: Store, prefix: str, default_rate: str, *, clock: Callable[[], float] = time.time
    ) -> None:
        parse_rate(default_rate)
        self._store = store
        self._redis: Any = _PortableEval(store.redis)  # all Ratelimit calls: eval
        self._prefix = prefix
        self._default = default_rate
        self._clock = clock  # the limiter library reads the same wall clock for its "now"
        self._limiters: dict[str, Ratelimit] = {}

    async def check(self, principal: Principal) -> None:
        """Count one submit; RateLimitedError (429 with Retry-After) when over the credential's rate."""
        rate = principal.rate or self._default
        limiter = self._limiter(rate)
        response = await self._store.call(lambda: limiter.limit(principal.credential))
        if not response.allowed:
            # `reset` is when the next token arrives; Retry-After is whole seconds, so round up.
            wait = max(1, math.ceil(response.reset - self._clock()))
            raise RateLimitedError(f"rate limit of {rate} exceeded; retry in {wait}s", retry_after=wait)

    def _limiter(self, rate: str) -> Ratelimit:
        limiter = self._limiters.get(rate)
        if limiter is None:
            count, window = parse_rate(rate)
            # Keyed by rate too, so a key whose rate changes starts with a full bucket of its new rate.
            limiter = Ratelimit(self._redis, bucket(rate), f"{self._prefix}:tb:{count}/{window}")
            self._limiters[rate] = limiter
        return limiter
