"""A response cache for handlers: identical requests answered from Redis instead of a provider.

A handler reaches it through its context (`ctx.cache`), bound to the job's queue and owner: entries are
the owner's own unless the job type opts into the shared scope, so no tenant reads another's answers.
A request is normalised (keys sorted, no whitespace) and hashed, so equal requests share an entry
whatever their key order. A get is one GET, a put one SET with an expiry; whether the cache answered is
sent with the job's outcome and counted per queue (finish.lua: meta 'ch' and 'cm').
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from shared.codec import dumps
from shared.keys import Keys
from shared.models import CacheOutcome
from shared.store import Store

MAX_CACHED_BYTES = 256 * 1024  # a larger response is not cached


def request_hash(request: Any) -> str:
    """SHA-256 of the request as canonical JSON: key order and whitespace never matter."""
    text = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


class ResponseCache:
    """Cached responses under the queue's keys. Counts the commands it sends (`commands`)."""

    def __init__(self, store: Store, keys: Keys) -> None:
        self.store, self.keys = store, keys
        self.commands = 0

    async def get(self, queue: str, owner: str | None, digest: str) -> Any | None:
        self.commands += 1
        text = await self.store.command("GET", self.keys.queue(queue).llm_cache(owner, digest))
        if text is None:
            return None
        try:
            return json.loads(text)
        except ValueError:  # not ours (or cut short): a miss
            return None

    async def put(self, queue: str, owner: str | None, digest: str, value: Any, ttl: float) -> bool:
        """Keep `value` for `ttl` seconds; False (nothing sent) when it is too large to cache."""
        text = dumps(value)
        if len(text.encode()) > MAX_CACHED_BYTES:
            return False
        self.commands += 1
        key = self.keys.queue(queue).llm_cache(owner, digest)
        await self.store.command("SET", key, text, "PX", str(max(1, round(ttl * 1000))))
        return True


class JobCache:
    """The cache as one job sees it (`ctx.cache`): its queue, its owner's scope (or the shared one)."""

    def __init__(
        self, cache: ResponseCache, queue: str, owner: str, answered: Callable[[CacheOutcome], None]
    ) -> None:
        self._cache, self._queue, self._owner, self._answered = cache, queue, owner, answered

    async def get(self, request: Any, *, shared: bool = False) -> Any | None:
        """The cached response to `request` (any JSON value), or None; counts a hit or a miss."""
        found = await self._cache.get(self._queue, self._scope(shared), request_hash(request))
        self._answered("miss" if found is None else "hit")
        return found

    async def put(self, request: Any, response: Any, *, ttl: float, shared: bool = False) -> bool:
        return await self._cache.put(self._queue, self._scope(shared), request_hash(request), response, ttl)

    def _scope(self, shared: bool) -> str | None:
        return None if shared else self._owner
