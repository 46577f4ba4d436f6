"""Live job updates for the event stream and the long poll, by polling the engine (one GET per interval).

An event id records what the client has seen: state, progress, attempts, the cancel flag, how many log
lines and a digest of the last one. Sent back as Last-Event-ID it lets a reconnecting client receive only
what changed, and only the log lines it has not seen.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from functions.api.schemas import JobErrorPublic, JobStatus
from shared.models import TERMINAL_STATES, Job, State

_MARK = re.compile(r"^([a-z]+)\.(\d{1,3})\.(\d{1,3})\.([01])\.(\d{1,4})\.([0-9a-f]{8}|-)$")


@dataclass(frozen=True)
class Mark:
    state: str
    progress: int
    attempts: int
    cancel: bool
    logs: int  # log lines seen
    tail: str  # digest of the last seen line, "-" when none

    def encode(self) -> str:
        return f"{self.state}.{self.progress}.{self.attempts}.{int(self.cancel)}.{self.logs}.{self.tail}"

    @classmethod
    def decode(cls, raw: str | None) -> Mark | None:
        """A client-supplied id; anything malformed counts as nothing seen."""
        match = _MARK.match(raw or "")
        if match is None:
            return None
        state, progress, attempts, cancel, logs, tail = match.groups()
        return cls(state, int(progress), int(attempts), cancel == "1", int(logs), tail)

    @classmethod
    def of(cls, job: Job) -> Mark:
        tail = _digest(job.logs[-1]) if job.logs else "-"
        return cls(job.state.value, job.progress, job.attempts, job.cancel_requested, len(job.logs), tail)


def _digest(line: str) -> str:
    return hashlib.sha256(line.encode()).hexdigest()[:8]


def new_logs(logs: list[str], seen: Mark | None) -> list[str]:
    """Log lines after the last one the client saw (the engine keeps only the last N, so it may scroll)."""
    if seen is None or seen.tail == "-":
        return list(logs)
    if 0 < seen.logs <= len(logs) and _digest(logs[seen.logs - 1]) == seen.tail:
        return logs[seen.logs :]
    for index in range(len(logs) - 1, -1, -1):
        if _digest(logs[index]) == seen.tail:
            return logs[index + 1 :]
    return list(logs)


def status_changed(job: Job, seen: Mark | None) -> bool:
    if seen is None:
        return True
    now = Mark.of(job)
    return (now.state, now.progress, now.attempts, now.cancel) != (
        seen.state,
        seen.progress,
        seen.attempts,
        seen.cancel,
    )


def is_terminal(job: Job) -> bool:
    return job.state in TERMINAL_STATES


def status_of(job: Job) -> JobStatus:
    return JobStatus(
        id=job.id,
        state=job.state,
        progress=job.progress,
        attempts=job.attempts,
        max_attempts=job.max_attempts,
        cancel_requested=job.cancel_requested,
        result=job.result if job.state is State.COMPLETED else None,
        error=JobErrorPublic.model_validate(job.error.model_dump()) if job.error else None,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )


def sse(event: str, data: str, event_id: str | None = None) -> str:
    """One server-sent event; data is JSON (one line), so no line splitting is needed."""
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\ndata: {data}\n\n"
