"""What a handler sees of its job while it runs.

Progress and log lines are only buffered here: the consumer collects the buffers of every running job and
sends them in one `report` call every few seconds (and with the finish call), never one command per call.

`progress` and `log` do their work when called and return an already-finished awaitable, so an async
handler writes `await ctx.log(...)` and a blocking one (run in a worker thread) writes `ctx.log(...)`.

Durable steps (`step`, `sleep`, `sleep_until`) are for async handlers: a step's result is recorded in the
job as it completes (one command each), so a later attempt or invocation returns it instead of running
the step again; a sleep ends the invocation and the job resumes when it is due (docs/workflows.md).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections.abc import Awaitable, Callable, Generator
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from shared.codec import dumps
from shared.errors import LeaseLostError, PayloadTooLargeError, StepLimitError
from shared.limits import (
    MAX_LOG_LINE_BYTES,
    MAX_LOG_LINES,
    MAX_STEP_BYTES,
    MAX_STEP_NAME_CHARS,
    MAX_STEPS,
)
from shared.models import ClaimedJob, Job, ProgressUpdate

# Records a step for the running attempt: (name, result JSON) -> False when its lease was lost.
StepRecorder = Callable[[str, str], Awaitable[bool]]
MAX_SLEEP_SECONDS = 365 * 86400


class Sleep(BaseException):
    """Raised by `JobContext.sleep` to end the invocation: the consumer records the job asleep (an
    outcome of its own). A BaseException, so a handler's `except Exception` cannot swallow it."""

    def __init__(self, step: str, seconds: float) -> None:
        super().__init__(f"sleep {step!r} for {seconds:g} s")
        self.step, self.seconds = step, seconds


def clip_line(line: str, limit: int = MAX_LOG_LINE_BYTES) -> str:
    """A log line cut to at most `limit` UTF-8 bytes, never splitting a character."""
    data = line.encode()
    if len(data) <= limit:
        return line
    return data[:limit].decode(errors="ignore")


class Done:
    """The result of `progress` and `log`: awaiting it is optional and returns at once."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield


DONE = Done()


class JobContext:
    def __init__(
        self,
        claimed: ClaimedJob,
        *,
        deadline: float = float("inf"),
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        record_step: StepRecorder | None = None,
        children: Callable[[Job], Awaitable[list[Job]]] | None = None,
    ) -> None:
        job = claimed.job
        self.job = job
        self.job_id = job.id
        self.attempt = job.attempts
        self.owner = job.owner
        self.idempotency_key = job.idempotency_key
        self.token = claimed.token
        self.deadline = deadline  # on the `clock` scale; the consumer sets it when the handler starts
        self._clock = clock
        self._progress: int | None = None
        self._logs: list[str] = []
        # Plain flags: a blocking handler's worker thread reads them as they are (a bool read is atomic
        # under the GIL), and an Event only for a handler that waits for one (made when it asks).
        self.cancel_requested = False  # the user asked to cancel (as opposed to a lost lease)
        self.lease_lost = False
        self._cancelled_event: asyncio.Event | None = None
        self.steps: dict[str, Any] = dict(job.steps)  # recorded steps, name -> result (from the claim)
        self._record_step = record_step  # None: steps are kept in this context only (tests, tools)
        self._wall = wall
        self._sleeps = 0  # unnamed sleeps asked for in this invocation: they are "sleep:<n>"
        self._children = children

    async def children(self) -> list[Job]:
        """The jobs this one waited for (its flow children, then its depends_on), with their states,
        results and errors; a failed child whose policy is "ignore" is left out. One read per queue
        among them (Engine.children); [] for a job that waited for none."""
        if self._children is None or not (self.job.children or self.job.depends_on):
            return []
        return await self._children(self.job)

    def progress(self, pct: int) -> Done:
        """Record progress 0-100; the latest value is sent with the next flush."""
        if isinstance(pct, bool) or not isinstance(pct, int) or not 0 <= pct <= 100:
            raise ValueError("progress must be an integer from 0 to 100")
        self._progress = pct
        return DONE

    def log(self, line: str) -> Done:
        """Buffer a log line (clipped in size); the store keeps the last MAX_LOG_LINES lines."""
        self._logs.append(clip_line(str(line)))
        del self._logs[:-MAX_LOG_LINES]
        return DONE

    @property
    def cancelled(self) -> bool:
        """True once cancellation was requested (or the lease was lost): stop early, the result is dropped."""
        return self.cancel_requested or self.lease_lost

    async def wait_cancelled(self) -> None:
        """Wait until `cancelled` becomes true (for async handlers that sleep or poll)."""
        if self._cancelled_event is None:
            self._cancelled_event = asyncio.Event()
            if self.cancelled:
                self._cancelled_event.set()
        await self._cancelled_event.wait()

    @property
    def remaining(self) -> float:
        """Seconds left before the job's timeout (or the consumer's budget, whichever comes first)."""
        return max(0.0, self.deadline - self._clock())

    async def step(self, name: str, fn: Callable[..., Any], *args: Any) -> Any:
        """`fn(*args)` (a plain or async function) run once per job: its JSON result is recorded in the
        job, fenced by the lease, and a later attempt or invocation gets it back without running `fn`.

        A step that raises is not recorded (the next attempt runs it again). StepLimitError (permanent,
        naming the step) when its result is not JSON or passes MAX_STEP_BYTES, or the job's steps would
        pass MAX_STEPS or MAX_STEPS_BYTES; LeaseLostError when the lease was lost (stop: another attempt
        owns the job now).
        """
        _check_step_name(name)
        if name in self.steps:
            return self.steps[name]
        self._check_room(name)
        result = fn(*args)
        if inspect.isawaitable(result):
            result = await result
        text = _step_json(name, result)
        if self._record_step is not None:
            try:
                recorded = await self._record_step(name, text)
            except PayloadTooLargeError as exc:
                raise StepLimitError(f"step {name!r} cannot be recorded: {exc.message}") from exc
            if not recorded:
                self.mark_cancelled(requested=False)
                raise LeaseLostError(f"step {name!r} was not recorded: the job's lease was lost")
        self.steps[name] = json.loads(text)
        return self.steps[name]

    async def sleep(self, seconds: float, *, name: str | None = None) -> None:
        """End this invocation and resume the job `seconds` from now (Redis's clock), its slot freed and
        no attempt used. A sleep is a step (unnamed ones are "sleep:1", "sleep:2", ... in call order):
        once slept, the resumed job's call returns at once."""
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise TypeError("seconds must be a number")
        if not 0 <= seconds <= MAX_SLEEP_SECONDS:
            raise ValueError(f"seconds must be from 0 to {MAX_SLEEP_SECONDS}")
        if name is None:  # unnamed sleeps are numbered among themselves, so a named one shifts none
            self._sleeps += 1
        step = name if name is not None else f"sleep:{self._sleeps}"
        _check_step_name(step)
        if step in self.steps:
            return
        self._check_room(step)
        raise Sleep(step, float(seconds))

    async def sleep_until(self, when: datetime | float, *, name: str | None = None) -> None:
        """`sleep` until `when` (an aware datetime or epoch seconds; this process's clock turns it into a
        duration); a time already past resumes the job at once."""
        at = when.timestamp() if isinstance(when, datetime) else float(when)
        await self.sleep(min(MAX_SLEEP_SECONDS, max(0.0, at - self._wall())), name=name)

    def _check_room(self, name: str) -> None:
        if len(self.steps) >= MAX_STEPS:
            raise StepLimitError(f"step {name!r} cannot be recorded: a job records at most {MAX_STEPS} steps")

    # The consumer's side.

    def mark_cancelled(self, *, requested: bool) -> None:
        if requested:
            self.cancel_requested = True
        else:
            self.lease_lost = True
        if self._cancelled_event is not None:
            self._cancelled_event.set()

    def take_update(self) -> ProgressUpdate | None:
        """The buffered progress and lines (clearing the buffer), or None when there is nothing new."""
        if self._progress is None and not self._logs:
            return None
        update = ProgressUpdate(
            job_id=self.job_id, token=self.token, progress=self._progress, logs=self._logs
        )
        self._progress, self._logs = None, []
        return update

    def restore(self, update: ProgressUpdate) -> None:
        """Put back an update whose flush failed, so the next flush carries it (newer progress wins)."""
        if self._progress is None:
            self._progress = update.progress
        self._logs = [*update.logs, *self._logs][-MAX_LOG_LINES:]


def _check_step_name(name: str) -> None:
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_STEP_NAME_CHARS or not name.isprintable():
        raise ValueError(f"a step name is printable text of 1 to {MAX_STEP_NAME_CHARS} characters")


def _step_json(name: str, result: Any) -> str:
    """A step's result as the JSON its record keeps; StepLimitError naming the step when it has none or
    is larger than MAX_STEP_BYTES."""
    if isinstance(result, BaseModel):
        result = result.model_dump(mode="json")
    try:
        text = dumps(result)
        size = len(text.encode())
    except (TypeError, ValueError, RecursionError, UnicodeEncodeError) as exc:
        raise StepLimitError(f"step {name!r} returned a result that is not JSON: {exc}") from exc
    if size > MAX_STEP_BYTES:
        raise StepLimitError(f"step {name!r} returned {size} bytes of JSON; the limit is {MAX_STEP_BYTES}")
    return text
