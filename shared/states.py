"""A job's states, apart from the models so the CLI can name them without loading pydantic."""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    WAITING = "waiting"
    DELAYED = "delayed"
    ACTIVE = "active"
    COMPLETED = "completed"
    FAILED = "failed"  # the dead-letter set: retries exhausted or a permanent error
    CANCELLED = "cancelled"
    WAITING_CHILDREN = "waiting-children"  # a flow's parent (or a job with depends_on) waiting for them
