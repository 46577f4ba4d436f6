"""Submit rate limits per credential with upstash-ratelimit on the same Redis: one EVAL per checked call.

"N per window" is a fixed window (upstash-ratelimit's FixedWindow): each credential's counter counts the
submits of the current window and refuses beyond N. It is the cheapest of the library's limiters, two
commands per submit (the EVAL and its INCRBY; the first of a window also sets the expiry) where its token
bucket takes four, and the submit path's command count is our headline figure. The price: around a
window's boundary a client may get up to 2N through in a short span (docs/decisions.md). A refused submit
is told when its window ends: that is its Retry-After. The library's script carries Upstash's
allow-key-locking flag and names its key, as every jobq script does.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from upstash_ratelimit.asyncio import FixedWindow, Ratelimit

from functions.api.auth import Principal
from shared.apikeys import parse_rate
from shared.errors import RateLimitedError
from shared.store import Store


def window(rate: str) -> FixedWindow:
    """N submits per window of the rate's length (in ms)."""
    count, seconds = parse_rate(rate)
    return FixedWindow(max_requests=count, window=math.ceil(seconds * 1000), unit="ms")


class SubmitLimiter:
    def __init__(
        self, store: Store, prefix: str, default_rate: str, *, clock: Callable[[], float] = time.time
    ) -> None:
        parse_rate(default_rate)
        self._store = store
        self._redis: Any = store.redis
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
            # `reset` is when the window ends; Retry-After is whole seconds, so round up.
            wait = max(1, math.ceil(response.reset - self._clock()))
            raise RateLimitedError(f"rate limit of {rate} exceeded; retry in {wait}s", retry_after=wait)

    def _limiter(self, rate: str) -> Ratelimit:
        limiter = self._limiters.get(rate)
        if limiter is None:
            count, seconds = parse_rate(rate)
            # Keyed by rate too, so a key whose rate changes starts with an empty window of its new rate.
            limiter = Ratelimit(self._redis, window(rate), f"{self._prefix}:fw:{count}/{seconds}")
            self._limiters[rate] = limiter
        return limiter
