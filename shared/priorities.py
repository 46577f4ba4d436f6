"""Named priority levels; lower runs first. Any integer in [0, 9] is accepted too.

A module of its own, free of pydantic, so the CLI can name the levels without loading the job models.
"""

from __future__ import annotations

# "urgent" is "critical" under the name some of our users' systems give their top level.
PRIORITIES: dict[str, int] = {"critical": 0, "urgent": 0, "high": 3, "normal": 5, "low": 8}
DEFAULT_PRIORITY = PRIORITIES["normal"]


def priority_value(priority: int | str) -> int:
    """Turn a named level or an integer into the integer form, rejecting anything else."""
    if isinstance(priority, str):
        if priority in PRIORITIES:
            return PRIORITIES[priority]
        raise ValueError(f"unknown priority {priority!r}; use one of {sorted(PRIORITIES)} or 0-9")
    if isinstance(priority, bool) or not 0 <= priority <= 9:
        raise ValueError("priority must be an integer from 0 (first) to 9 (last)")
    return priority
