"""Retry delays. The finish and claim scripts compute the same formula in Lua (shared/scripts/lib.lua);
this is the reference the tests compare them with.

delay(n) = min(max_delay, delay * factor**(n-1)) for exponential (delay for fixed), then scaled by
1 + jitter * (2u - 1) with u uniform in [0, 1) drawn by the caller (scripts get u in ARGV: Lua's own
random generator is seeded identically on every call, so it cannot jitter).
"""

from __future__ import annotations

import secrets

from shared.models import Backoff


def retry_delay(backoff: Backoff, attempt: int, u: float) -> float:
    """Seconds to wait before the retry that follows failed attempt number `attempt` (1-based)."""
    if attempt < 1:
        raise ValueError("attempt is 1-based")
    if not 0 <= u < 1:
        raise ValueError("u must be in [0, 1)")
    base = backoff.delay
    if backoff.kind == "exponential":
        base = backoff.delay * backoff.factor ** min(attempt - 1, 64)
    base = min(backoff.max_delay, base)
    return max(0.0, base * (1 + backoff.jitter * (2 * u - 1)))


def jitter_draw() -> float:
    """A uniform draw in [0, 1) for one retry decision."""
    return secrets.randbelow(1 << 30) / float(1 << 30)
