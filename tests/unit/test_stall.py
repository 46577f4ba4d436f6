"""stall_reason: when a queue's stats say it looks stalled, and the sentence they say it with."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.models import STALL_AFTER, QueueOptions, QueueStats, State, stall_reason

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def stats(
    waiting: int = 3,
    oldest: float | None = 300,
    claimed_ago: float | None = 420,
    active: int = 0,
    paused: bool = False,
) -> QueueStats:
    counts = {state: 0 for state in State}
    counts[State.WAITING], counts[State.ACTIVE] = waiting, active
    last = None if claimed_ago is None else NOW - timedelta(seconds=claimed_ago)
    return QueueStats(queue="q", paused=paused, counts=counts, oldest_waiting_age=oldest, last_claim_at=last)


def test_the_sentence() -> None:
    assert stall_reason(stats(), NOW, QueueOptions()) == (
        "3 jobs waiting, oldest 5m; no consumer has claimed from this queue for 7m: "
        "is a consumer running for its lane?"
    )
    assert stall_reason(stats(oldest=90000, claimed_ago=7300), NOW, QueueOptions()) == (
        "3 jobs waiting, oldest 25h; no consumer has claimed from this queue for 2h: "
        "is a consumer running for its lane?"
    )


def test_not_stalled() -> None:
    options = QueueOptions()
    assert stall_reason(stats(paused=True), NOW, options) is None
    assert stall_reason(stats(waiting=0, oldest=None), NOW, options) is None
    assert stall_reason(stats(oldest=STALL_AFTER), NOW, options) is None  # young enough
    assert stall_reason(stats(claimed_ago=STALL_AFTER), NOW, options) is None  # claimed recently
    assert stall_reason(stats(active=2), NOW, QueueOptions(concurrency=2)) is None  # busy at its limit
    assert stall_reason(stats(active=1), NOW, QueueOptions(concurrency=2)) is not None
    # A rate limit spaces claims out by its interval.
    assert stall_reason(stats(claimed_ago=400), NOW, QueueOptions(rate_limit=(1, 300.0))) is None
    assert stall_reason(stats(claimed_ago=421), NOW, QueueOptions(rate_limit=(1, 300.0))) is not None
