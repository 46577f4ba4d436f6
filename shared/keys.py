"""Every Redis key jobq uses, built in one place under one deployment prefix.

Every key the caller can name (a lane's trigger or wake key, idempotency and listing keys) is built here
and passed to the scripts; the keys of jobs and queues a script discovers inside Redis (a claim pops
ids it could not know in advance) are derived from the prefix by templates in shared/scripts/lib.lua.
`tests/unit/test_keys.py` pins both; `docs/redis-schema.md` describes each key.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

PREFIX_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")

# The index states: each job id is in exactly one of these per queue.
STATE_INDEXES = ("waiting", "delayed", "active", "completed", "failed", "cancelled")


@dataclass(frozen=True)
class Keys:
    """Key builder for one deployment; `prefix` must match PREFIX_PATTERN (no separator inside)."""

    prefix: str = "jobq"

    def __post_init__(self) -> None:
        if not PREFIX_PATTERN.match(self.prefix):
            raise ValueError(f"key prefix must match {PREFIX_PATTERN.pattern}: {self.prefix!r}")

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    # Deployment-wide keys.
    def due(self) -> str:
        """Sorted set: queue -> earliest epoch ms it has work (waiting, a delayed job, a lease to reap)."""
        return self._key("due")

    def trigger(self, lane: str) -> str:
        """String with a short expiry: a run of the lane's consumer has been asked for, no claim yet."""
        return self._key("trigger", lane)

    def wake(self, lane: str) -> str:
        """String: epoch ms of the delayed wake-up of the lane's consumer that is pending, expiring then."""
        return self._key("wake", lane)

    def queues(self) -> str:
        """Set of every queue name that ever had a job (for stats of all queues)."""
        return self._key("queues")

    # Per job.
    def job(self, job_id: str) -> str:
        """Hash of one job (fields in docs/redis-schema.md)."""
        return self._key("job", job_id)

    def idempotency(self, queue: str, owner: str, key: str) -> str:
        """String: job id and request hash for an idempotency key; hashed so any owner/key text is safe."""
        return self._key("idem", _digest(queue, owner, key))

    # Per queue.
    def queue_state(self, queue: str, state: str) -> str:
        """Sorted set of the queue's job ids in one state (scores in docs/redis-schema.md)."""
        if state not in STATE_INDEXES:
            raise ValueError(f"unknown state {state!r}")
        return self._key("q", queue, state)

    def queue_states(self, queue: str) -> list[str]:
        """The six state indexes of a queue, in STATE_INDEXES order (scripts rely on this order)."""
        return [self.queue_state(queue, state) for state in STATE_INDEXES]

    def queue_meta(self, queue: str) -> str:
        """Hash: paused flag, priority sequence, rate-limit window, counters, histograms, throughput."""
        return self._key("q", queue, "meta")

    def queue_events(self, queue: str) -> str:
        """Capped stream of state changes of the queue's jobs."""
        return self._key("q", queue, "events")

    # Listing indexes (scores 0, members ordered by id, so by creation time).
    def owner_jobs(self, owner: str) -> str:
        return self._key("owner", owner)

    def tag_jobs(self, owner: str, tag: str) -> str:
        """An owner's jobs under one tag: every owner has its own (the owner hashed, so no owner text
        can reach into another's key)."""
        return self._key("tag", _digest(owner), tag)

    # --- API (issue 4, functions/api): credentials and submit rate limits. Owned by the API area. ---
    def api_keys(self) -> str:
        """Hash: API key id -> JSON record (owner, admin, rate, SHA-256 of the secret, created, revoked)."""
        return self._key("apikeys")

    def rate_limits(self) -> str:
        """Prefix of upstash-ratelimit's bucket keys (it appends ':<rate>:<credential>')."""
        return self._key("ratelimit")


def _digest(*parts: str) -> str:
    """32 hex characters naming any text safely inside a key; parts are joined by NUL, so they never mix."""
    return hashlib.sha256("\0".join(parts).encode(errors="surrogatepass")).hexdigest()[:32]
