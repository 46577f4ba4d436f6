"""The jitter draw the retry rule takes (the rule itself is pinned on Redis: test_engine_backoff.py)."""

from __future__ import annotations

from shared.backoff import jitter_draw


def test_draws_are_in_range_and_spread() -> None:
    draws = [jitter_draw() for _ in range(1000)]
    assert all(0 <= d < 1 for d in draws) and len(set(draws)) > 900
    assert min(draws) < 0.05 and max(draws) > 0.95
