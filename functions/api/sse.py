"""Server-sent events: the polling loop every stream shares, and the event ids that let a client resume.

A stream polls the engine, sends what changed, and ends after a bounded time; the client reconnects with
the last event id as Last-Event-ID. A job's id (`Mark`) records what the client has seen of it: state,
progress, attempts, the cancel flag, how many log lines and a digest of the last one, so a reconnecting
client receives only what changed, and only the log lines it has not seen.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass

from fastapi.responses import StreamingResponse

from functions.api.errors import public_message
from functions.api.schemas import JobErrorPublic, JobStatus
from shared.errors import JobqError
from shared.models import TERMINAL_STATES, Job, State

RECONNECT_MS = 2000  # the client's reconnect delay after a stream ends (the `retry:` field)
KEEPALIVE_SECONDS = 15.0  # a comment line when nothing was sent this long, so proxies keep the stream

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


# What one poll of a stream found: the events to send, and whether the stream is over.
Step = Callable[[], Awaitable[tuple[list[str], bool]]]


def stream_response(body: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(
        body, media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )


async def poll_stream(
    step: Step, *, poll: float, max_seconds: float, opening: Iterable[str] = ()
) -> AsyncIterator[str]:
    """The loop every stream runs: the reconnect delay and `opening`, then `step` every `poll` seconds
    until it says the stream is over or `max_seconds` have passed, with a keep-alive comment when quiet.
    A JobqError (Redis unavailable) ends the stream with an `error` event."""
    yield f"retry: {RECONNECT_MS}\n\n"
    for event in opening:
        yield event
    deadline = time.monotonic() + max_seconds
    quiet_since = time.monotonic()
    while True:
        try:
            events, over = await step()
        except JobqError as exc:
            yield sse("error", json.dumps({"code": exc.code, "message": public_message(exc)}))
            return
        for event in events:
            yield event
        if events:
            quiet_since = time.monotonic()
        if over or time.monotonic() >= deadline:
            return
        if time.monotonic() - quiet_since >= KEEPALIVE_SECONDS:
            yield ": keep-alive\n\n"
            quiet_since = time.monotonic()
        await asyncio.sleep(min(poll, max(0.0, deadline - time.monotonic())))
