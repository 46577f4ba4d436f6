"""Every Redis key jobq uses, built in one place under one deployment prefix.

Each queue's keys share one hash tag, `{<queue>}`, so they live in one Redis Cluster slot, and every
script touches the keys of one queue only (enqueue: of the queues its batch names), all of them
declared in KEYS: Upstash then runs the script under key locking instead of its global lock, and a
Redis Cluster can route it. The scripts never build a key name: they use KEYS, laid out by
`QueueKeys.block()` (shared/scripts/lib.lua `block` reads the same order). A job id carries its queue
(shared/ids.py), so a read or change of one job knows its keys before it runs.
`tests/unit/test_keys.py` pins the names; `docs/redis-schema.md` describes each key.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

PREFIX_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")

# The index states: each job is in exactly one of these per queue.
STATE_INDEXES = ("waiting", "delayed", "active", "completed", "failed", "cancelled")

# A queue's fixed block of keys, in the order every script receives them (lib.lua `block`).
# "children": jobs waiting for their flow children or dependencies (state waiting-children).
BLOCK = (
    "jobs",
    *STATE_INDEXES,
    *("meta", "due", "events", "owners", "fair", "dedup", "children"),
    *("schedules", "schedule_times"),
)


@dataclass(frozen=True)
class QueueKeys:
    """The keys of one queue: `<prefix>:{<queue>}:<part>`."""

    tag: str  # "<prefix>:{<queue>}"

    def _key(self, *parts: str) -> str:
        return ":".join((self.tag, *parts))

    def block(self) -> list[str]:
        """The queue's keys in BLOCK order: what every script of the queue gets first in KEYS.

        - jobs: hash of every job record of the queue, fields `<unique id>` (immutable JSON) and
          `<unique id>:<m|e|g|r|s|f|p>` (state, errors, logs, result, steps, a flow's links);
        - the six state indexes: sorted sets of unique ids (scores in docs/redis-schema.md);
        - meta: hash of policy, paused flag, counters, histograms, throughput, due mirror, triggers;
        - due: string, epoch ms when the queue next has work (absent: none, or paused), read by ticks;
        - events: capped stream of state changes; owners, fair: per-owner counts (limit per owner);
        - dedup: hash of singleton and debounce keys held, `s:<digest>` / `d:<digest>` -> unique id
          (`hold_digest` names a key per owner);
        - children: sorted set of the jobs waiting for their flow children or dependencies;
        - schedules: hash of the queue's schedules, id -> JSON record (shared/schedules.py Schedule);
        - schedule_times: sorted set of schedule ids by next slot ms (meta 'ns' mirrors its first).
        """
        return [self._key(part) for part in BLOCK]

    def state(self, state: str) -> str:
        if state not in STATE_INDEXES:
            raise ValueError(f"unknown state {state!r}")
        return self._key(state)

    def jobs(self) -> str:
        return self._key("jobs")

    def waiting_children(self) -> str:
        """Sorted set (score: since when) of the jobs waiting for their flow children or dependencies."""
        return self._key("children")

    def meta(self) -> str:
        return self._key("meta")

    def due(self) -> str:
        return self._key("due")

    def events(self) -> str:
        return self._key("events")

    def owner_jobs(self, owner: str) -> str:
        """Sorted set (scores 0, unique ids, so ordered by creation) of an owner's jobs in this queue."""
        return self._key("owner", owner)

    def tag_jobs(self, owner: str, tag: str) -> str:
        """An owner's jobs of this queue under one tag: every owner has its own (the owner hashed, so no
        owner text can reach into another's key)."""
        return self._key("tag", _digest(owner), tag)

    def schedules(self) -> str:
        return self._key("schedules")

    def owner_schedules(self, owner: str) -> str:
        """Sorted set (scores 0) of an owner's schedule ids in this queue (the owner hashed)."""
        return self._key("schedule_owner", _digest(owner))

    def idempotency(self, owner: str, key: str) -> str:
        """String: job id and request hash for an idempotency key; hashed so any owner/key text is safe."""
        return self._key("idem", _digest(owner, key))


@dataclass(frozen=True)
class Keys:
    """Key builder for one deployment; `prefix` must match PREFIX_PATTERN (no separator inside)."""

    prefix: str = "jobq"

    def __post_init__(self) -> None:
        if not PREFIX_PATTERN.match(self.prefix):
            raise ValueError(f"key prefix must match {PREFIX_PATTERN.pattern}: {self.prefix!r}")

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def queue(self, queue: str) -> QueueKeys:
        """The keys of one queue (queue names never hold braces: models.NAME_PATTERN)."""
        return QueueKeys(f"{self.prefix}:{{{queue}}}")

    # Deployment-wide keys, never touched by a queue's scripts.
    def queues(self) -> str:
        """Set of every queue name that ever had a job (stats of all queues, ticks, owner listings)."""
        return self._key("queues")

    def wake(self, lane: str) -> str:
        """String: epoch ms of the delayed wake-up of the lane's consumer that is pending, expiring then."""
        return self._key("wake", lane)

    # --- API (issue 4, functions/api): credentials and submit rate limits. Owned by the API area. ---
    def api_keys(self) -> str:
        """Hash: API key id -> JSON record (owner, admin, rate, SHA-256 of the secret, created, revoked)."""
        return self._key("apikeys")

    def rate_limits(self) -> str:
        """Prefix of upstash-ratelimit's window keys (it appends ':<credential>:<window>')."""
        return self._key("ratelimit")


def hold_digest(owner: str, key: str) -> str:
    """The field name part of an owner's singleton or debounce key in its queue's dedup hash: the key
    per owner, so no owner's submits can interfere with another's."""
    return _digest(owner, key)


def _digest(*parts: str) -> str:
    """32 hex characters naming any text safely inside a key; parts are joined by NUL, so they never mix."""
    return hashlib.sha256("\0".join(parts).encode(errors="surrogatepass")).hexdigest()[:32]
