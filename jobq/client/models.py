"""The client's typed models: the API's own response models (one definition for both ends), plus the
answer of a submit and an event of the per-job stream.

functions.api.schemas holds pydantic models only (no FastAPI), so importing it keeps the client light.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from functions.api.schemas import (
    FlowPublic,
    JobBatchItem,
    JobBatchResult,
    JobChange,
    JobErrorPublic,
    JobPage,
    JobPublic,
    JobStatus,
    KeyCreated,
    KeyList,
    KeyPublic,
    QueueAction,
    QueueList,
    QueuePublic,
    ScheduleList,
    SchedulePublic,
    TokenCreated,
)
from shared.models import TERMINAL_STATES, State

Job = JobPublic


class Submitted(JobPublic):
    """A submit's answer: the job, and whether this call created it (False: an idempotency key repeated
    and the existing job came back)."""

    created: bool = True


@dataclass(frozen=True)
class JobEvent:
    """One server-sent event of a job's stream: `status` (data is a JobStatus), `log` (`{"line"}`) or
    `error` (`{"code", "message"}`); `id` is what a reconnect sends back as Last-Event-ID."""

    event: str
    data: dict[str, Any]
    id: str | None = None

    @property
    def status(self) -> JobStatus | None:
        return JobStatus.model_validate(self.data) if self.event == "status" else None

    @property
    def terminal(self) -> bool:
        return self.event == "status" and self.data.get("state") in TERMINAL_STATES


class SseParser:
    """Server-sent events from lines of text (the WHATWG rules jobq's streams need: id, event, data,
    comments, blank line ends an event)."""

    def __init__(self) -> None:
        self._event = "message"
        self._data: list[str] = []
        self._id: str | None = None
        self.last_id: str | None = None

    def feed(self, line: str) -> JobEvent | None:
        if not line:
            if not self._data:
                self._event = "message"
                return None
            text = "\n".join(self._data)
            event = JobEvent(self._event, _object(text), self._id)
            self._event, self._data, self._id = "message", [], None
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            self._id = self.last_id = value or None
        return None


def _object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {"text": text}
    return value if isinstance(value, dict) else {"value": value}


__all__ = [
    "FlowPublic",
    "Job",
    "JobBatchItem",
    "JobBatchResult",
    "JobChange",
    "JobErrorPublic",
    "JobEvent",
    "JobPage",
    "JobPublic",
    "JobStatus",
    "KeyCreated",
    "KeyList",
    "KeyPublic",
    "QueueAction",
    "QueueList",
    "QueuePublic",
    "ScheduleList",
    "SchedulePublic",
    "SseParser",
    "State",
    "Submitted",
    "TokenCreated",
]
