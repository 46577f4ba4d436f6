"""Request and response bodies of the HTTP API, named by role (JobCreate, JobPublic, JobPage, ...)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    HttpUrl,
    Strict,
    field_validator,
    model_validator,
)
from pydantic import ValidationError as PydanticValidationError

from shared.codec import dt
from shared.limits import MAX_CALLBACK_URL, MAX_DEPENDS_ON, MAX_FLOW_NODES, MAX_TAGS, utc_run_at
from shared.models import (
    TAG_PATTERN,
    Backoff,
    Debounce,
    ErrorKind,
    FailurePolicy,
    Job,
    ParentLink,
    QueueMetrics,
    State,
    ThroughputPoint,
    Usage,
)
from shared.percentiles import percentile
from shared.priorities import PRIORITIES, priority_value

# The Python client (jobq.client) reuses these models: what only the server needs is imported where used,
# so the client does not load the store, the settings and the registry.
if TYPE_CHECKING:
    from shared.registry import Registry
from shared.schedules import MAX_CRON_LENGTH, MAX_EVERY, MAX_LIMIT, MIN_EVERY, CatchUp, Schedule, Timetable


def _integral(value: Any) -> Any:
    """JSON Schema's integer: 3.0 is 3 (every JSON number is a number); 3.5 stays for Strict() to refuse."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


# Request numbers and flags are strict: `true` is not 1 and "10" is not 10 (JSON has types; we keep them).
# A float field takes an integer, never a bool or a numeric string.
StrictInt = Annotated[int, Strict(), BeforeValidator(_integral)]
StrictFloat = Annotated[float, Strict()]
StrictBool = Annotated[bool, Strict()]
# Page cursors are opaque and issued by the engine; this only keeps hostile text out.
CURSOR_PATTERN = r"^[0-9A-Za-z.:_-]{1,64}$"
# A queue listing's cursor (state index number and offset); pinned to the engine's by a test, so every
# cursor the schema allows is one the engine accepts.
QUEUE_CURSOR_PATTERN = r"^[1-7]\.[0-9]{1,9}$"
MAX_LIST_LIMIT = 200
# A key's owner starts with a letter or digit, so no key can take the bootstrap admin's owner ("@admin").
OWNER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@:-]*$"


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None
    request_id: str | None = None
    job_id: str | None = None  # a conflict's other job (409 singleton_conflict)


class ErrorBody(BaseModel):
    """The one error shape: every failure answers with it."""

    error: ErrorDetail


class BackoffCreate(Backoff):
    """A job's backoff as a request gives it: the engine's Backoff with strict numbers."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class DebounceCreate(Debounce):
    """A submit's debounce as a request gives it: the engine's Debounce with strict numbers."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    type: str = Field(min_length=1, max_length=64, description="A registered job type.")
    payload: Any = Field(default=None, description="Validated against the job type's payload model.")
    priority: int | str | None = Field(
        default=None, description=f"0 (first) to 9 (last), or one of {sorted(PRIORITIES)}."
    )
    delay_seconds: StrictFloat | None = Field(default=None, ge=0, le=365 * 86400)
    # JSON has no date type: an RFC 3339 string (or epoch seconds); naive means UTC.
    run_at: datetime | None = Field(default=None, strict=False)
    max_attempts: StrictInt | None = Field(default=None, ge=1, le=100)
    backoff: BackoffCreate | None = None
    timeout_seconds: StrictFloat | None = Field(default=None, gt=0, le=24 * 3600)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=255)
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="Free-form labels; size bound in shared/limits.py."
    )
    tags: list[str] = Field(default_factory=list, max_length=MAX_TAGS)
    children: list[JobCreate] = Field(
        default_factory=list,
        max_length=MAX_FLOW_NODES,
        description="A flow: jobs (of any types and queues) that run first; this job waits for them.",
    )
    on_failure: FailurePolicy = Field(
        default="fail",
        description="As a child: fail the parent (default), ignore the failure, or continue (recorded).",
    )
    depends_on: list[Annotated[str, Field(max_length=128)]] = Field(
        default_factory=list,
        max_length=MAX_DEPENDS_ON,
        description="Ids of the caller's existing jobs this job waits for (simple chains).",
    )
    singleton_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description="At most one waiting or running job per key (per queue and owner): 409 while one is.",
    )
    debounce: DebounceCreate | None = Field(
        default=None, description="Submits with the same key within the window make one run, the last."
    )

    callback_url: str | None = Field(
        default=None,
        description="An http(s) URL POSTed (signed) when the job completes, fails or is cancelled; "
        "see docs/api.md.",
    )

    @field_validator("callback_url", mode="plain", json_schema_input_type=str | None)
    @classmethod
    def _public_url(cls, value: Any) -> str | None:
        """An http(s) URL, not a literal private address (the webhook type's rule, shared.urlguard)."""
        if value is None:
            return None
        if not isinstance(value, str):
            raise ValueError("callback_url must be a string")
        if len(value) > MAX_CALLBACK_URL:
            raise ValueError(f"callback_url must be at most {MAX_CALLBACK_URL} characters")
        from shared.urlguard import refuse_private_literal  # settings: server side only (see the imports)

        try:
            url = HttpUrl(value)
        except PydanticValidationError as exc:
            raise ValueError(exc.errors()[0]["msg"]) from None
        return str(refuse_private_literal(url))

    @field_validator("priority", mode="plain", json_schema_input_type=int | str | None)
    @classmethod
    def _known_priority(cls, value: Any) -> int | None:
        """Plain, so an error names `priority` itself (not a member of the union); bools are refused."""
        if value is None:
            return None
        value = _integral(value)
        if not isinstance(value, int | str):
            raise ValueError(f"priority must be an integer 0-9 or one of {sorted(PRIORITIES)}")
        return priority_value(value)

    @field_validator("run_at")
    @classmethod
    def _real_instant(cls, value: datetime | None) -> datetime | None:
        return None if value is None else utc_run_at(value)

    @field_validator("tags")
    @classmethod
    def _tag_pattern(cls, value: list[str]) -> list[str]:
        for tag in value:
            if not re.fullmatch(TAG_PATTERN, tag):
                raise ValueError(f"tags must match {TAG_PATTERN}")
        return value

    @model_validator(mode="after")
    def _one_schedule(self) -> JobCreate:
        if self.delay_seconds is not None and self.run_at is not None:
            raise ValueError("give delay_seconds or run_at, not both")
        return self


class JobBatchCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    jobs: list[JobCreate] = Field(min_length=1)


class JobErrorPublic(BaseModel):
    kind: ErrorKind
    message: str
    attempt: int = 0
    at: datetime | None = None


class JobPublic(BaseModel):
    """A job as its owner sees it."""

    id: str
    type: str
    queue: str
    owner: str
    state: State
    priority: int
    payload: Any = None
    progress: int = 0
    result: Any = None
    error: JobErrorPublic | None = None
    errors: list[JobErrorPublic] = Field(default_factory=list)
    attempts: int = 0
    max_attempts: int = 3
    logs: list[str] = Field(default_factory=list)
    run_at: datetime | None = None
    timeout_seconds: float = 300.0
    idempotency_key: str | None = None
    cancel_requested: bool = False
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    steps: int = Field(default=0, description="Durable steps recorded (sleeps included).")
    step_results: dict[str, Any] = Field(
        default_factory=dict, description="Each recorded step's result by name, in the order recorded."
    )
    singleton_key: str | None = None
    debounce_key: str | None = None
    children: list[str] = Field(default_factory=list, description="Its flow children's ids.")
    depends_on: list[str] = Field(default_factory=list)
    pending_children: int = Field(default=0, description="Children and dependencies not yet ended.")
    parents: list[ParentLink] = Field(default_factory=list, description="Jobs waiting on this one.")
    usage: Usage | None = None  # tokens and cost the handler recorded, over all attempts
    callback_url: str | None = None

    @classmethod
    def of(cls, job: Job, registry: Registry) -> JobPublic:
        """The owner's view; the payload with its type's secret fields masked (shared.registry)."""
        data = job.model_dump(exclude={"backoff", "timeout", "steps"})
        data["steps"], data["step_results"] = len(job.steps), job.steps
        payload = registry.public_payload(job.type, job.payload)
        return cls.model_validate({**data, "payload": payload, "timeout_seconds": job.timeout})


class FlowPublic(BaseModel):
    """A flow as a tree: a job and, under it, its flow children (each with theirs)."""

    job: JobPublic
    children: list[FlowPublic] = Field(default_factory=list)


class JobBatchItem(BaseModel):
    index: int
    created: bool
    job: JobPublic


class JobBatchResult(BaseModel):
    results: list[JobBatchItem]


class JobPage(BaseModel):
    jobs: list[JobPublic]
    cursor: str | None = Field(default=None, description="Pass back as ?cursor= for the next page.")


class JobSummary(BaseModel):
    """A job without its payload, result or logs: a row of a queue's listing with `?view=summary`."""

    id: str
    type: str
    owner: str
    state: State
    priority: int
    progress: int
    attempts: int
    max_attempts: int
    error: JobErrorPublic | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @classmethod
    def of(cls, job: Job) -> JobSummary:
        return cls.model_validate(job.model_dump(include=set(cls.model_fields)))


class JobSummaryPage(BaseModel):
    jobs: list[JobSummary]
    cursor: str | None = Field(default=None, description="Pass back as ?cursor= for the next page.")


class JobStatus(BaseModel):
    """What the event stream and the long poll send: a job's state without its payload."""

    id: str
    state: State
    progress: int
    attempts: int
    max_attempts: int
    cancel_requested: bool
    result: Any = None
    error: JobErrorPublic | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


class JobChange(BaseModel):
    """One long-poll answer: `changed` is false when nothing happened within the wait."""

    event_id: str
    changed: bool
    terminal: bool
    status: JobStatus
    logs: list[str] = Field(default_factory=list, description="Log lines new since the given event id.")


class JobUpdate(JobStatus):
    """A change to one of the caller's jobs, as GET /v1/events sends it (no payload)."""

    type: str
    queue: str
    tags: list[str] = Field(default_factory=list)
    created_at: datetime
    logs: list[str] = Field(
        default_factory=list,
        description="Log lines not yet sent for this job (its retained lines when `logs_reset`).",
    )
    logs_reset: bool = Field(
        default=False, description="`logs` holds every retained line: replace what is shown, do not append."
    )


class JobUpdates(BaseModel):
    """One long-poll answer of GET /v1/events?wait=N: the changes since `since`, or none within the wait."""

    event_id: str = Field(description="Pass back as ?since= (or Last-Event-ID) for the next poll.")
    updates: list[JobUpdate]


class AIFigures(BaseModel):
    """A queue's response-cache answers and recorded usage (docs/ai-jobs.md)."""

    cache_hits: int
    cache_misses: int
    input_tokens: int
    output_tokens: int
    cost: float

    @classmethod
    def of(cls, m: QueueMetrics) -> AIFigures | None:
        """None for a queue that never used the cache nor recorded usage."""
        figures = cls(
            cache_hits=m.cache_hits_total,
            cache_misses=m.cache_misses_total,
            input_tokens=m.input_tokens_total,
            output_tokens=m.output_tokens_total,
            cost=m.cost_total,
        )
        return figures if any(figures.model_dump().values()) else None


class QueuePublic(BaseModel):
    """A queue's counts, totals and times: the last hour's throughput and p50/p95 run and wait times
    estimated from its histograms (shared/percentiles.py)."""

    queue: str
    paused: bool
    counts: dict[State, int] = Field(description="Jobs per state: every state, in lifecycle order.")
    completed_total: int = 0
    failed_total: int = 0
    retried_total: int = 0
    cancelled_total: int = 0
    avg_run_seconds: float | None = None
    avg_wait_seconds: float | None = None
    run_p50_seconds: float | None = None
    run_p95_seconds: float | None = None
    wait_p50_seconds: float | None = None
    wait_p95_seconds: float | None = None
    oldest_waiting_age: float | None = None
    last_claim_at: datetime | None = None
    stalled: str | None = None  # why waiting jobs are not being taken, when they are not
    throughput: list[ThroughputPoint] = Field(description="Jobs finished per minute, last 60, oldest first")
    ai: AIFigures | None = Field(default=None, description="Null for a queue without cache use or usage")

    @classmethod
    def of(cls, metrics: QueueMetrics) -> QueuePublic:
        done = metrics.completed_total + metrics.failed_total
        started = done + metrics.cancelled_total

        def pct(buckets: list[int], q: float) -> float | None:
            return percentile(metrics.bounds, buckets, q)

        return cls(
            queue=metrics.queue,
            paused=metrics.paused,
            counts={state: metrics.counts.get(state, 0) for state in State},
            completed_total=metrics.completed_total,
            failed_total=metrics.failed_total,
            retried_total=metrics.retried_total,
            cancelled_total=metrics.cancelled_total,
            avg_run_seconds=metrics.run_seconds_total / done if done else None,
            avg_wait_seconds=metrics.wait_seconds_total / started if started else None,
            run_p50_seconds=pct(metrics.run_buckets, 0.5),
            run_p95_seconds=pct(metrics.run_buckets, 0.95),
            wait_p50_seconds=pct(metrics.wait_buckets, 0.5),
            wait_p95_seconds=pct(metrics.wait_buckets, 0.95),
            last_claim_at=metrics.last_claim_at,
            stalled=metrics.stalled,
            oldest_waiting_age=metrics.oldest_waiting_age,
            throughput=metrics.throughput,
            ai=AIFigures.of(metrics),
        )


class QueueTotals(BaseModel):
    """Every queue together: counts per state, finished totals, and throughput per minute."""

    counts: dict[State, int]
    completed_total: int
    failed_total: int
    throughput: list[ThroughputPoint]

    @classmethod
    def of(cls, queues: list[QueuePublic]) -> QueueTotals:
        minutes: dict[datetime, ThroughputPoint] = {}
        for queue in queues:
            for point in queue.throughput:
                total = minutes.setdefault(point.minute, ThroughputPoint(minute=point.minute))
                total.completed += point.completed
                total.failed += point.failed
        return cls(
            counts={state: sum(q.counts[state] for q in queues) for state in State},
            completed_total=sum(q.completed_total for q in queues),
            failed_total=sum(q.failed_total for q in queues),
            throughput=[minutes[m] for m in sorted(minutes)],
        )


class QueueList(BaseModel):
    queues: list[QueuePublic]
    totals: QueueTotals


class QueueClean(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state: Literal[State.COMPLETED, State.FAILED, State.CANCELLED] = Field(
        description="Only finished jobs can be cleaned."
    )
    older_than_seconds: StrictFloat = Field(default=0, ge=0, le=365 * 86400)
    limit: StrictInt = Field(default=1000, ge=1, le=10000)


class QueueRetryFailed(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: StrictInt = Field(
        default=1000, ge=1, le=1000, description="At most 1000 per call; call again for more."
    )


class QueueAction(BaseModel):
    queue: str
    paused: bool | None = None
    count: int | None = Field(default=None, description="Jobs removed (clean) or retried (retry-failed).")


class TokenCreated(BaseModel):
    """A minted browser token (POST /v1/tokens); here so the Python client reads it with this model."""

    token: str = Field(description="Send as Authorization: Bearer, or as ?access_token= on event routes.")
    owner: str
    scopes: list[str] = Field(description="read, submit, cancel (functions/api/tokens.py).")
    tag: str | None = None
    expires_at: datetime


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    owner: str = Field(min_length=1, max_length=128, pattern=OWNER_PATTERN)
    admin: StrictBool = False
    rate: str | None = Field(
        default=None,
        pattern=r"^[1-9][0-9]{0,8}/(s|sec|second|m|min|minute|h|hour|d|day)$",
        description='Submit rate limit, e.g. "100/minute" or "10/s".',
    )

    @field_validator("rate")
    @classmethod
    def _valid_rate(cls, value: str | None) -> str | None:
        if value is not None:
            from shared.apikeys import parse_rate  # the store's module: server side only (see the imports)

            parse_rate(value)
        return value


class KeyPublic(BaseModel):
    id: str
    owner: str
    admin: bool
    rate: str | None = None
    created_at: datetime
    revoked_at: datetime | None = None


class KeyCreated(KeyPublic):
    key: str = Field(description="The secret: shown once, never stored.")


class KeyList(BaseModel):
    keys: list[KeyPublic]


class RedisHealth(BaseModel):
    ok: bool
    latency_ms: float


class Health(BaseModel):
    status: str
    redis: RedisHealth


class ScheduleCreate(Timetable):
    """A new schedule: its timetable and the job each slot submits, as POST /v1/jobs takes one (without
    run_at, delay_seconds and idempotency_key: a slot gives those)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    job: JobCreate
    owner: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        pattern=OWNER_PATTERN,
        description="Admins only: the owner the schedule (and its jobs) belongs to.",
    )


class ScheduleUpdate(BaseModel):
    """A change: the fields given replace the schedule's (null clears an optional one); `job` replaces
    its job whole (same type's queue)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    cron: str | None = Field(default=None, min_length=1, max_length=MAX_CRON_LENGTH)
    timezone: str | None = Field(default=None, min_length=1, max_length=64)
    every_seconds: StrictInt | None = Field(default=None, ge=MIN_EVERY, le=MAX_EVERY)
    start_at: datetime | None = Field(default=None, strict=False)
    end_at: datetime | None = Field(default=None, strict=False)
    limit: StrictInt | None = Field(default=None, ge=1, le=MAX_LIMIT)
    catch_up: CatchUp | None = Field(default=None, strict=False)
    paused: StrictBool | None = Field(default=None, description="Pause (true) or resume (false) it.")
    job: JobCreate | None = None


class SchedulePublic(BaseModel):
    """A schedule as its owner sees it."""

    id: str
    owner: str
    queue: str
    type: str
    type_registered: bool = Field(description="False: no job type of that name is deployed any more.")
    payload: Any = None
    priority: int
    max_attempts: int
    timeout_seconds: float
    metadata: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    cron: str | None = None
    timezone: str
    every_seconds: int | None = None
    start_at: datetime | None = None
    end_at: datetime | None = None
    limit: int | None = None
    catch_up: CatchUp
    paused: bool = False
    fired: int
    last_run_at: datetime | None = Field(default=None, description="The last slot fired.")
    next_run_at: datetime | None = Field(default=None, description="None: the schedule is over.")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, schedule: Schedule, registry: Registry) -> SchedulePublic:
        job = schedule.job
        return cls(
            **schedule.timetable(),
            id=schedule.id,
            owner=job.owner,
            queue=schedule.queue,
            type=job.type,
            type_registered=job.type in registry,
            payload=registry.public_payload(job.type, job.payload),
            priority=job.priority,
            max_attempts=job.max_attempts,
            timeout_seconds=job.timeout,
            metadata=job.metadata,
            tags=job.tags,
            paused=schedule.paused,
            fired=schedule.fired,
            last_run_at=dt(schedule.last_slot),
            next_run_at=dt(schedule.next_slot),
            created_at=schedule.created_at,
            updated_at=schedule.updated_at,
        )


class ScheduleList(BaseModel):
    schedules: list[SchedulePublic]
