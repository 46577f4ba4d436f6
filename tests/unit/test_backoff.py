"""Retry delays: exponential, capped, jittered by the caller's draw."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.backoff import jitter_draw, retry_delay
from shared.models import Backoff


def test_exponential_without_jitter() -> None:
    b = Backoff(delay=1, factor=2, max_delay=100, jitter=0)
    assert [retry_delay(b, n, 0.5) for n in (1, 2, 3, 4)] == [1, 2, 4, 8]
    assert retry_delay(b, 30, 0.5) == 100


def test_fixed() -> None:
    b = Backoff(kind="fixed", delay=5, jitter=0)
    assert {retry_delay(b, n, 0.3) for n in range(1, 10)} == {5}


def test_jitter_bounds() -> None:
    b = Backoff(delay=10, factor=1, jitter=0.2)
    assert retry_delay(b, 1, 0.0) == pytest.approx(8)
    assert retry_delay(b, 1, 0.5) == pytest.approx(10)
    assert retry_delay(b, 1, 0.999999) == pytest.approx(12, rel=1e-5)


@given(
    delay=st.floats(0, 86400),
    factor=st.floats(1, 10),
    cap=st.floats(0, 7 * 86400),
    jitter=st.floats(0, 1),
    attempt=st.integers(1, 1000),
    u=st.floats(0, 1, exclude_max=True),
)
def test_never_negative_never_beyond_cap(
    delay: float, factor: float, cap: float, jitter: float, attempt: int, u: float
) -> None:
    b = Backoff(delay=delay, factor=factor, max_delay=cap, jitter=jitter)
    value = retry_delay(b, attempt, u)
    assert 0 <= value <= cap * (1 + jitter) + 1e-9


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        retry_delay(Backoff(), 0, 0.5)
    with pytest.raises(ValueError):
        retry_delay(Backoff(), 1, 1.0)


def test_draws_are_in_range() -> None:
    draws = [jitter_draw() for _ in range(1000)]
    assert all(0 <= d < 1 for d in draws) and len(set(draws)) > 900
