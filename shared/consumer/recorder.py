"""Outcomes and hand-backs on their way to the engine: batched into one `finish` and one `release` call.

A finished job's outcome waits at most `flush_interval` for company (or until `flush_count` are waiting),
so a busy run shares each script call's fixed cost over many jobs while a lone job is recorded at once.
When the store is unreachable the outcomes are kept and re-sent with backoff (finish and release are
idempotent and fenced, so a call that did land is harmless to repeat) until each one's lease runs out;
after that the job is the reaper's, and reporting it would be refused anyway.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from shared.engine import Engine
from shared.errors import JobqError, StoreUnavailableError
from shared.models import FinishResult, Lease, Outcome, State

log = logging.getLogger("jobq.consumer")

RETRY_MIN, RETRY_MAX = 0.1, 2.0  # seconds between re-sends while the store is unavailable


@dataclass
class Tally:
    claimed: int = 0
    completed: int = 0
    failed: int = 0
    retried: int = 0
    slept: int = 0  # jobs that went to sleep (ctx.sleep): back to delayed, no attempt used
    cancelled: int = 0
    released: int = 0
    lost: int = 0  # outcomes the engine refused (lease expired or taken over) or that outlived their lease

    def count(self, outcomes: list[Outcome], results: list[FinishResult]) -> None:
        for outcome, result in zip(outcomes, results, strict=True):
            if not result.ok:
                self.lost += 1
            elif result.state == State.COMPLETED:
                self.completed += 1
            elif result.state == State.FAILED:
                self.failed += 1
            elif result.state == State.CANCELLED:
                self.cancelled += 1
            elif outcome.status == "sleep":
                self.slept += 1
            else:  # back to delayed or waiting
                self.retried += 1

    def add(self, other: Tally) -> None:
        for name in Tally.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class Pending:
    outcome: Outcome
    lease_until: float  # wall-clock epoch seconds: after this the job is the reaper's
    fields: dict[str, object] = field(default_factory=dict)  # for the per-job log line


class Recorder:
    def __init__(
        self,
        engine: Engine,
        tally: Tally,
        *,
        flush_interval: float,
        flush_count: int,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._engine, self._tally = engine, tally
        self._flush_interval, self._flush_count = flush_interval, flush_count
        self._clock, self._wall = clock, wall
        self._outcomes: list[Pending] = []
        self._releases: list[tuple[Lease, float]] = []  # with each lease's deadline (epoch seconds)
        self._since: float | None = None  # when the oldest waiting item arrived (monotonic)
        self._retry_at: float | None = None  # after a failed send: not before this
        self._retry_delay = RETRY_MIN
        self.retries_scheduled = False  # a finish put jobs back to delayed: their due time is news

    @property
    def pending(self) -> bool:
        return bool(self._outcomes or self._releases)

    def latest_lease(self) -> float | None:
        """The last lease deadline (epoch seconds) of what waits to be sent."""
        deadlines = [p.lease_until for p in self._outcomes] + [until for _, until in self._releases]
        return max(deadlines, default=None)

    def add(self, pending: Pending) -> None:
        self._outcomes.append(pending)
        self._since = self._since if self._since is not None else self._clock()

    def hand_back(self, lease: Lease, lease_until: float) -> None:
        self._releases.append((lease, lease_until))
        self._since = self._since if self._since is not None else self._clock()

    def send_at(self) -> float | None:
        """When the waiting items should go (monotonic), or None when nothing waits."""
        if not self.pending:
            return None
        if self._retry_at is not None:
            return self._retry_at
        if len(self._outcomes) >= self._flush_count:
            return self._clock()
        assert self._since is not None
        return self._since + self._flush_interval

    async def flush(self) -> bool:
        """Send what waits (one release, one finish). False when the store was unavailable: kept for later.

        Items that arrive while a call is under way wait for the next flush.
        """
        self._drop_expired()
        if not await self._send_releases():
            self._settle(False)
            return False
        batch = self.take_outcomes()
        if not batch:
            self._settle(True)
            return True
        try:
            results: list[FinishResult] | JobqError = await self._engine.finish([p.outcome for p in batch])
        except JobqError as exc:
            results = exc
        return self.sent(batch, results)

    @property
    def outcomes_waiting(self) -> bool:
        return bool(self._outcomes)

    def take_outcomes(self) -> list[Pending]:
        """The outcomes to send now (any past their lease dropped); report what became of them to `sent`.

        For a caller that sends them with another call (a claim: Engine.finish_and_claim)."""
        self._drop_expired()
        batch, self._outcomes = self._outcomes, []
        return batch

    def sent(self, batch: list[Pending], results: list[FinishResult] | JobqError) -> bool:
        """Settle a batch of take_outcomes: recorded or refused (True), or kept for a re-send with backoff
        because the store was unavailable (False)."""
        if isinstance(results, StoreUnavailableError):
            log.warning("finish of %d outcomes failed, will retry: %s", len(batch), results)
            self._outcomes = batch + self._outcomes
            self._settle(False)
            return False
        if isinstance(results, JobqError):  # an error reply cannot heal by repeating: the leases will expire
            log.error("finish of %d outcomes refused (their leases will expire): %s", len(batch), results)
        else:
            self._tally.count([p.outcome for p in batch], results)
            # A delivery job of callbacks or hooks, too, is work the due-index now shows.
            if any(r.ok and (r.state in (State.DELAYED, State.WAITING) or r.delivery) for r in results):
                self.retries_scheduled = True
            if log.isEnabledFor(logging.DEBUG):
                for pending, result in zip(batch, results, strict=True):
                    _log_outcome(pending, result)
        self._settle(True)
        return True

    def _settle(self, ok: bool) -> None:
        """After a send: back to normal when it went through, else back off before the next attempt."""
        if ok:
            self._retry_at, self._retry_delay = None, RETRY_MIN
            self._since = self._clock() if self.pending else None
        else:
            self._retry_at = self._clock() + self._retry_delay
            self._retry_delay = min(RETRY_MAX, self._retry_delay * 2)

    async def flush_until(self, stop_at: float) -> None:
        """The final flush: keep re-sending with backoff until everything is sent or `stop_at` (monotonic)."""
        while self.pending:
            if await self.flush():
                return
            if self._clock() >= stop_at:
                break
            pause = max(0.0, min(self._retry_at or 0.0, stop_at) - self._clock())
            await asyncio.sleep(pause)  # backoff between re-sends to an unavailable store
        if self.pending:
            log.warning(
                "store unavailable: %d outcomes not recorded before the run ended; their leases will "
                "expire and the jobs run again",
                len(self._outcomes),
            )

    def _drop_expired(self) -> None:
        now = self._wall()
        self._releases = [(lease, until) for lease, until in self._releases if until > now]
        expired = [p for p in self._outcomes if p.lease_until <= now]
        if not expired:
            return
        self._outcomes = [p for p in self._outcomes if p.lease_until > now]
        self._tally.lost += len(expired)
        log.warning(
            "store unavailable past the lease of %d jobs: their outcomes are dropped and the jobs will be "
            "reaped and run again",
            len(expired),
        )

    async def _send_releases(self) -> bool:
        sending, self._releases = self._releases, []
        if not sending:
            return True
        try:
            results = await self._engine.release([lease for lease, _ in sending])
        except StoreUnavailableError as exc:
            log.warning("release of %d jobs failed, will retry: %s", len(sending), exc)
            self._releases = sending + self._releases
            return False
        except JobqError as exc:  # an error reply cannot heal by repeating: the leases will expire
            log.error("release of %d jobs refused (their leases will expire): %s", len(sending), exc)
            results = []
        self._tally.released += sum(1 for r in results if r.ok)
        return True


def _log_outcome(pending: Pending, result: FinishResult) -> None:
    """One DEBUG line per recorded outcome (the run's summary is the INFO line); never payload or result."""
    outcome = pending.outcome
    fields = {**pending.fields, "status": outcome.status}
    if not result.ok:
        log.debug("job lease lost", extra=fields)
        return
    fields["state"] = result.state.value if result.state else None
    if outcome.error is not None:
        fields["error"] = outcome.error.kind.value  # the message stays in the job record
    log.debug("job failed" if outcome.status in ("failed", "retry") else "job finished", extra=fields)
