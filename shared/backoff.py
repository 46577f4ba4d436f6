"""The jitter draw of a retry decision.

The retry rule itself (attempts left, permanent errors, the backoff formula) is written once, in Lua:
`retry_delay_ms` in shared/scripts/lib.lua, which finish and claim's reaping both use;
tests/integration/test_engine_backoff.py pins its schedule. The scripts take their random draw from
here because Lua's random generator is seeded alike on every script call, so it cannot jitter.
"""

from __future__ import annotations

import secrets


def jitter_draw() -> float:
    """A uniform draw in [0, 1) for one retry decision."""
    return secrets.randbelow(1 << 30) / float(1 << 30)
