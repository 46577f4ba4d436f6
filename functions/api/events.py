"""Live job updates for the event streams and their long polls, by polling the engine.

One job's stream (`Mark`): an event id records what the client has seen: state, progress, attempts, the
cancel flag, how many log lines and a digest of the last one. Sent back as Last-Event-ID it lets a
reconnecting client receive only what changed, and only the log lines it has not seen.

Many jobs' streams (`StreamCursor`, `OwnerFeed`): positions in the per-queue event streams, read for all
queues in one command per poll.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from functions.api.errors import public_message
from functions.api.schemas import JobErrorPublic, JobStatus, JobUpdate
from shared.engine import MAX_BATCH, MAX_STREAM_PART, Engine, is_stream_id
from shared.errors import JobqError
from shared.models import NAME_PATTERN, TERMINAL_STATES, Event, Job, State

RECONNECT_MS = 2000  # the `retry:` a stream asks EventSource to wait before reconnecting
KEEPALIVE_SECONDS = 15.0  # a comment line in quiet times, so proxies keep the connection open

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


async def poll_stream(
    first: str, frames: Callable[[], Awaitable[list[str]]], poll: float, max_seconds: float
) -> AsyncIterator[str]:
    """An SSE body over many queues: `retry`, `first`, then what each poll's `frames()` gives, every `poll`
    seconds until `max_seconds` (the client then reconnects with Last-Event-ID), with keep-alive comments
    in quiet times. A JobqError ends it with an `error` event."""
    yield f"retry: {RECONNECT_MS}\n\n"
    yield first
    quiet_since = time.monotonic()
    deadline = quiet_since + max_seconds
    while True:
        try:
            found = await frames()
        except JobqError as exc:
            yield sse("error", json.dumps({"code": exc.code, "message": public_message(exc)}))
            return
        for frame in found:
            yield frame
        if found:
            quiet_since = time.monotonic()
        if time.monotonic() >= deadline:
            return
        if time.monotonic() - quiet_since >= KEEPALIVE_SECONDS:
            yield ": keep-alive\n\n"
            quiet_since = time.monotonic()
        await asyncio.sleep(min(poll, max(0.0, deadline - time.monotonic())))


_QUEUE = re.compile(NAME_PATTERN)
EVENTS_PER_READ = 100
QUEUE_REFRESH_SECONDS = 5.0  # how often a stream over every queue reads their names again (new queues)
MAX_FOLLOWED = 100  # active jobs an owner's stream re-reads each poll, for log lines that move no state
MAX_REMEMBERED = 1000  # jobs whose last sent mark an owner's stream keeps (the oldest are forgotten)


@dataclass
class StreamCursor:
    """Where a client is in every queue's event stream, sent as the SSE id and returned as Last-Event-ID.

    `base` (epoch ms) is where the client's first connection started: a queue absent from `positions` has
    had nothing new for the client since then, so it is read from `base`. Encoded as
    `base~queue=ms-seq,queue=ms-seq`.
    """

    base: int
    positions: dict[str, str] = field(default_factory=dict)

    def after(self, queue: str) -> str:
        return self.positions.get(queue, f"{self.base}-0")

    def encode(self) -> str:
        return f"{self.base}~" + ",".join(f"{q}={pos}" for q, pos in sorted(self.positions.items()))

    @classmethod
    def decode(cls, raw: str | None, now_ms: int) -> StreamCursor:
        """A client-supplied id; anything malformed starts afresh from now."""
        base, _, rest = (raw or "").partition("~")
        if not (base.isascii() and base.isdigit() and len(base) <= 20 and int(base) <= MAX_STREAM_PART):
            return cls(base=now_ms)
        positions: dict[str, str] = {}
        for item in filter(None, rest.split(",")):
            queue, _, pos = item.rpartition("=")
            if not _QUEUE.fullmatch(queue) or not is_stream_id(pos):
                return cls(base=now_ms)
            positions[queue] = pos
        return cls(base=int(base), positions=positions)

    async def read(self, engine: Engine, queues: list[str]) -> list[Event]:
        """The events of `queues` after this cursor, which moves past them: one read for all queues (one
        per queue on a cluster)."""
        batches = await engine.events_since({q: self.after(q) for q in queues}, count=EVENTS_PER_READ)
        found: list[Event] = []
        for queue, events in batches.items():
            if events:
                self.positions[queue] = events[-1].id
            found.extend(events)
        return found


@dataclass(frozen=True)
class Watch:
    """Whose jobs a feed shows: the owner's, under one tag and in one queue when given."""

    owner: str
    tag: str | None = None
    queue: str | None = None


class OwnerFeed:
    """Changes to one owner's jobs, filtered at the source: the events of every watched queue move the
    cursor, but only job ids in the owner's (or the tag's) index are read back and sent, so no other
    owner's job record or event leaves Redis for this client.

    Per poll: one read of the event streams; then, for each queue with new events, one ZMSCORE (which
    ids are the owner's) and, for each queue holding a job to send or an active job followed for its log
    lines, one HMGET of those records (at most EVENTS_PER_READ + MAX_FOLLOWED)."""

    def __init__(self, engine: Engine, watch: Watch, cursor: StreamCursor) -> None:
        self.engine = engine
        self.watch = watch
        self.cursor = cursor
        self._sent: OrderedDict[str, Mark] = OrderedDict()  # what this connection has sent of each job
        self._followed: dict[str, None] = {}  # active jobs, re-read each poll

    async def follow_active(self) -> None:
        """Follow the owner's active jobs from the start (their log lines move no state): one listing per
        watched queue, once per connection."""
        page = await self.engine.list_jobs(
            owner=self.watch.owner,
            tag=self.watch.tag,
            queue=self.watch.queue,
            state=State.ACTIVE,
            limit=MAX_FOLLOWED,
        )
        self._followed = dict.fromkeys(job.id for job in page.jobs)

    async def poll(self, queues: list[str], *, remember: bool = True) -> list[JobUpdate]:
        """What changed since the last poll. Without `remember` (the stateless long poll) every update
        carries the job's retained log lines."""
        watch = self.watch
        events = await self.cursor.read(self.engine, queues)
        candidates = [e.job_id for e in events]
        mine = await self.engine.owned_by(candidates, watch.owner, tag=watch.tag) if candidates else set()
        ids = list(dict.fromkeys([*(job_id for job_id in candidates if job_id in mine), *self._followed]))
        jobs = [
            job
            for start in range(0, len(ids), MAX_BATCH)
            for job in await self.engine.get_many(ids[start : start + MAX_BATCH], owner=watch.owner)
        ]
        updates = []
        for job in jobs:
            seen = self._sent.get(job.id) if remember else None
            if seen is not None and not status_changed(job, seen) and not new_logs(job.logs, seen):
                continue
            updates.append(update_of(job, seen))
            self._remember(job)
        return updates

    def _remember(self, job: Job) -> None:
        self._sent[job.id] = Mark.of(job)
        self._sent.move_to_end(job.id)
        while len(self._sent) > MAX_REMEMBERED:
            self._sent.popitem(last=False)
        if job.state is not State.ACTIVE:  # only a running job writes log lines without an event
            self._followed.pop(job.id, None)
        elif len(self._followed) < MAX_FOLLOWED:
            self._followed[job.id] = None


def update_of(job: Job, seen: Mark | None) -> JobUpdate:
    """The update a client is sent: the job's status, and the log lines it has not seen (all retained
    lines, flagged as a reset, the first time)."""
    return JobUpdate(
        **status_of(job).model_dump(),
        type=job.type,
        queue=job.queue,
        tags=job.tags,
        created_at=job.created_at,
        logs=new_logs(job.logs, seen) if seen is not None else list(job.logs),
        logs_reset=seen is None,
    )
