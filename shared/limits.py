"""The bounds of what a caller may submit and a job keeps: one home, read by the API, the engine, the
scripts and docs/decisions.md.

Sizes are measured on the compact UTF-8 JSON that is stored (shared.codec.dumps), so the API and the
engine can never disagree about what fits.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

MAX_METADATA_BYTES = 4096  # a job's metadata: labels for listings and dashboards, not data
MAX_TAGS = 8  # tags on one job
# What a job record keeps of its history, so it never grows with a handler's chattiness. The scripts
# get these through the constants header shared.store prepends to them (scripts cannot import).
MAX_ERRORS_KEPT = 5  # the last errors of earlier attempts
MAX_LOG_LINES = 100  # the last log lines
MAX_LOG_LINE_BYTES = 2048  # each log line, clipped
# Durable steps (JobContext.step): what a job's record keeps of them. A step result that does not fit
# fails the step (StepLimitError, permanent) naming it.
MAX_STEPS = 100  # recorded steps (sleeps included) per job
MAX_STEP_NAME_CHARS = 100
MAX_STEP_BYTES = 64 * 1024  # one step's result, as stored JSON
MAX_STEPS_BYTES = 256 * 1024  # every recorded step of a job together
# Debounce windows and their longest wait (Inngest's debounce period and timeout), in seconds.
MAX_DEBOUNCE_SECONDS = 7 * 24 * 3600
# Completion callbacks: a job with a callback URL or hooks gets a delivery job of this internal type in its
# own queue when it ends (shared/callbacks.py), retried with the default backoff (1 s doubling to 1 h, so
# about 68 minutes over 12 attempts); its timeout fits the shortest consumer lane.
CALLBACK_TYPE = "jobq.callback"
# A delivery job's owner: no API key can have it (OWNER_PATTERN), so it never shows in a user's listings,
# streams or owner limits.
CALLBACK_OWNER = "@jobq"
CALLBACK_ATTEMPTS = 12
CALLBACK_TIMEOUT = 30.0
MAX_CALLBACK_URL = 2048
MAX_JSON_DEPTH = 64  # nesting of arrays and objects in a request body (a payload and its metadata too)
# Flows (shared/engine.py, shared/scripts/flow.lua): one submit's tree, and the links between jobs.
MAX_FLOW_NODES = 100  # jobs in one flow submit (a tree, every node counted)
MAX_FLOW_DEPTH = 8  # levels of a flow's tree below its root
MAX_DEPENDS_ON = 20  # existing jobs one job may depend on
MAX_PARENTS = 100  # jobs that may wait on one job (its flow parent and depends_on dependents)
# A run-at time must be a real UTC instant: year 9999 at most once its offset is applied.
MAX_RUN_AT = datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)


def json_depth(value: Any, limit: int = MAX_JSON_DEPTH) -> int:
    """How deeply `value` nests lists and dicts (a scalar is 0), counting no further than `limit` + 1.

    Iterative, so a hostile value cannot exhaust the interpreter's stack while being measured.
    """
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        depth += 1
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        stack.extend((child, depth) for child in children)
    return deepest


def utc_run_at(value: datetime) -> datetime:
    """`value` in UTC (naive means UTC); ValueError when it falls outside the years 1-9999 in UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        converted = value.astimezone(UTC)
    except OverflowError:
        raise ValueError("run_at must fall within the years 1 to 9999 in UTC") from None
    if converted > MAX_RUN_AT:  # the millisecond Redis stores must decode back to a datetime
        raise ValueError("run_at must fall within the years 1 to 9999 in UTC")
    return converted
