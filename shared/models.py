"""The job model and the value types the engine takes and returns.

Times in these models are `datetime` (UTC) or seconds as `float`; Redis stores integer milliseconds.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.limits import (
    MAX_CALLBACK_URL,
    MAX_DEBOUNCE_SECONDS,
    MAX_DEPENDS_ON,
    MAX_FLOW_NODES,
    MAX_TAGS,
    utc_run_at,
)
from shared.priorities import DEFAULT_PRIORITY
from shared.states import State as State  # re-exported: most code takes it with the models

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
TAG_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:=/-]{0,127}$"


TERMINAL_STATES = frozenset({State.COMPLETED, State.FAILED, State.CANCELLED})
UNSUCCESSFUL_STATES = frozenset({State.FAILED, State.CANCELLED})


class ErrorKind(StrEnum):
    RETRYABLE = "retryable"
    PERMANENT = "permanent"
    TIMEOUT = "timeout"
    LEASE_EXPIRED = "lease_expired"
    CANCELLED = "cancelled"
    CHILD_FAILED = "child_failed"  # a flow child (or dependency) failed under the "fail" policy


# What a flow's parent does when this child fails (BullMQ's failParentOnFailure, the default;
# removeDependencyOnFailure; ignoreDependencyOnFailure): fail too, go on without it, or go on and see the
# failure in ctx.children().
FailurePolicy = Literal["fail", "ignore", "continue"]
POLICY_CODES: dict[str, str] = {"fail": "f", "ignore": "i", "continue": "c"}


class Backoff(BaseModel):
    """Delay before retry n (1-based): min(max_delay, delay * factor**(n-1)), with +-jitter share."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["exponential", "fixed"] = "exponential"
    delay: float = Field(default=1.0, ge=0, le=86400)
    factor: float = Field(default=2.0, ge=1, le=10)
    max_delay: float = Field(default=3600.0, ge=0, le=7 * 86400)
    jitter: float = Field(default=0.1, ge=0, le=1)


class JobError(BaseModel):
    kind: ErrorKind
    message: str
    attempt: int = 0
    at: datetime | None = None


MAX_TOKENS_RECORDED = 10**12  # per call of record_usage: far above any real call, bounded for the scripts
MAX_COST_RECORDED = 10**6  # USD per call of record_usage


class Usage(BaseModel):
    """Tokens and cost (USD) a job used, over all its attempts: what `ctx.record_usage` adds up."""

    input_tokens: int = Field(default=0, ge=0, le=MAX_TOKENS_RECORDED)
    output_tokens: int = Field(default=0, ge=0, le=MAX_TOKENS_RECORDED)
    cost: float = Field(default=0.0, ge=0, le=MAX_COST_RECORDED)
    model: str | None = Field(default=None, max_length=128)  # the last model recorded

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def cost_micros(self) -> int:
        """The cost in millionths of a USD: what Redis adds up (integers stay exact)."""
        return round(self.cost * 1_000_000)


CacheOutcome = Literal["hit", "miss"]


class Debounce(BaseModel):
    """Submits with the same key (per queue and owner) within `seconds` of each other make one run, with
    the last submit's payload: the run starts once `seconds` pass without a new submit, and at the
    latest `max_wait_seconds` after the first (default: 10 windows), so a steady stream still runs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = Field(min_length=1, max_length=255)
    seconds: float = Field(gt=0, le=MAX_DEBOUNCE_SECONDS)
    max_wait_seconds: float | None = Field(default=None, gt=0, le=MAX_DEBOUNCE_SECONDS)

    @property
    def max_wait(self) -> float:
        return self.max_wait_seconds if self.max_wait_seconds is not None else 10 * self.seconds

    @model_validator(mode="after")
    def _wait_covers_window(self) -> Debounce:
        if self.max_wait_seconds is not None and self.max_wait_seconds < self.seconds:
            raise ValueError("max_wait_seconds must be at least seconds")
        return self


def debounce_conflict(
    *, singleton_key: str | None, scheduled: bool, idempotency_key: str | None
) -> str | None:
    """Why a debounced submit cannot also ask for this, else None: its run time is its window's
    (`scheduled`: a delay or run-at was given), and a repeat of its submit is itself debounced."""
    if singleton_key is not None:
        return "give debounce or singleton_key, not both"
    if scheduled:
        return "a debounced job runs when its window ends: give no delay or run_at"
    if idempotency_key is not None:
        return "a debounced job takes no idempotency key: a repeated submit is debounced"
    return None


class JobSpec(BaseModel):
    """What a caller asks the engine to enqueue, validated whole on construction, so the engine trusts it
    (a spec built with model_construct skips that and is not supported). `JobType.spec` builds one with
    the type's defaults filled in."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(pattern=NAME_PATTERN)
    payload: Any = None
    queue: str | None = Field(default=None, pattern=NAME_PATTERN)
    owner: str = Field(default="anonymous", min_length=1, max_length=128)
    priority: int = Field(default=DEFAULT_PRIORITY, ge=0, le=9)
    run_at: datetime | None = None
    delay: float = Field(default=0.0, ge=0, le=365 * 86400)
    max_attempts: int = Field(default=3, ge=1, le=100)
    backoff: Backoff = Backoff()
    timeout: float = Field(default=300.0, gt=0, le=24 * 3600)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=255)
    metadata: dict[str, Any] = Field(default_factory=dict)
    tags: list[Annotated[str, Field(pattern=TAG_PATTERN)]] = Field(default_factory=list, max_length=MAX_TAGS)
    # Flows: jobs created with this one that run first (it waits for them: waiting-children), what its
    # parent does when this job fails, and existing jobs of the same owner it waits for.
    children: list[JobSpec] = Field(default_factory=list, max_length=MAX_FLOW_NODES)
    on_failure: FailurePolicy = "fail"
    depends_on: list[str] = Field(default_factory=list, max_length=MAX_DEPENDS_ON)
    # At most one queued or active job per key (per queue and owner): a submit while one holds it is
    # refused (SingletonConflictError). Debounce: see Debounce.
    singleton_key: str | None = Field(default=None, min_length=1, max_length=255)
    debounce: Debounce | None = None

    # When the job ends (completed, failed, cancelled): a signed POST to this URL, and the type's hooks
    # when `notify` (JobType.spec sets it for a type with hooks); both ride on one delivery job
    # (shared/callbacks.py).
    callback_url: str | None = Field(default=None, max_length=MAX_CALLBACK_URL)
    notify: bool = False

    @model_validator(mode="after")
    def _dedup_alone(self) -> JobSpec:
        scheduled = bool(self.delay) or self.run_at is not None
        conflict = debounce_conflict(
            singleton_key=self.singleton_key, scheduled=scheduled, idempotency_key=self.idempotency_key
        )
        if self.debounce is not None and conflict:
            raise ValueError(conflict)
        return self

    def flow_size(self) -> int:
        """How many jobs this spec submits: itself and its flow children, theirs included."""
        return 1 + sum(child.flow_size() for child in self.children)

    @field_validator("run_at")
    @classmethod
    def _utc_instant(cls, value: datetime | None) -> datetime | None:
        """A real instant in UTC: a naive time is ambiguous, and Redis stores epoch milliseconds."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("run_at needs a time zone")
        return utc_run_at(value)


class ParentLink(BaseModel):
    """A job waiting on this one: a flow parent or a job that depends on it, with its failure policy."""

    id: str
    policy: FailurePolicy


class Job(BaseModel):
    """A job as stored in its Redis hash, decoded."""

    id: str
    queue: str
    type: str
    owner: str
    payload: Any = None
    priority: int = DEFAULT_PRIORITY
    state: State
    attempts: int = 0
    max_attempts: int = 3
    backoff: Backoff = Backoff()
    run_at: datetime | None = None
    timeout: float = 300.0
    idempotency_key: str | None = None
    progress: int = 0
    result: Any = None
    error: JobError | None = None
    errors: list[JobError] = Field(default_factory=list)  # the last few attempts' errors
    logs: list[str] = Field(default_factory=list)
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    cancel_requested: bool = False
    steps: dict[str, Any] = Field(default_factory=dict)  # durable steps recorded: name -> result, in order
    singleton_key: str | None = None
    debounce_key: str | None = None
    # Flows: the jobs this one waits for (its flow children, then its depends_on), how many of them it
    # still waits for, and the jobs waiting on it (each with its policy).
    children: list[str] = Field(default_factory=list)
    depends_on: list[str] = Field(default_factory=list)
    pending_children: int = 0
    parents: list[ParentLink] = Field(default_factory=list)
    usage: Usage | None = None  # recorded by the handler (ctx.record_usage), summed over attempts
    callback_url: str | None = None


class EnqueueResult(BaseModel):
    job: Job
    created: bool  # False when an idempotency key matched an existing job, or the submit was debounced
    debounced: bool = False  # the submit joined a job waiting out its debounce window (it took its payload)


class EnqueueReply(BaseModel):
    results: list[EnqueueResult]
    triggers: list[str] = Field(default_factory=list)  # lanes with no consumer run pending: ask each

    @property
    def trigger(self) -> bool:
        """True when some lane had no consumer run pending: the caller should send a trigger."""
        return bool(self.triggers)


class Lease(BaseModel):
    job_id: str
    token: str


class ClaimedJob(BaseModel):
    job: Job
    token: str  # the fencing token: every later write for this attempt must present it
    lease_until: datetime


OutcomeStatus = Literal["completed", "failed", "retry", "cancelled", "sleep"]


class Outcome(BaseModel):
    """What a consumer reports for one claimed job."""

    job_id: str
    token: str
    status: OutcomeStatus
    result: Any = None
    error: JobError | None = None
    # For status "retry": the handler's delay; for "sleep": how long the job sleeps (JobContext.sleep).
    retry_after: float | None = Field(default=None, ge=0)
    step: str | None = None  # for status "sleep": the sleep's step name
    progress: int | None = Field(default=None, ge=0, le=100)
    logs: list[str] = Field(default_factory=list)
    usage: Usage | None = None  # what this attempt recorded (ctx.record_usage)
    cache: CacheOutcome | None = None  # whether a response cache answered this attempt (ctx.cache)


class FinishResult(BaseModel):
    job_id: str
    ok: bool  # False: the lease was lost (expired and re-claimed, or cancelled); nothing changed
    state: State | None = None
    delivery: bool = False  # the finish wrote a delivery job of callbacks or hooks (shared/callbacks.py)


class LeaseStatus(BaseModel):
    job_id: str
    ok: bool
    cancel_requested: bool = False


class ProgressUpdate(BaseModel):
    job_id: str
    token: str
    progress: int | None = Field(default=None, ge=0, le=100)
    logs: list[str] = Field(default_factory=list)


class QueueOptions(BaseModel):
    """Per-queue policy the scripts apply. The job-type registry supplies it and every engine writes it to
    the queue's meta in Redis before using the queue (`Engine.publish_policies`), so every process,
    whatever its own registry, applies the same (the last one written)."""

    keep_completed_seconds: float = 24 * 3600
    keep_completed_count: int = 1000
    keep_failed_seconds: float = 7 * 24 * 3600
    keep_cancelled_seconds: float = 24 * 3600
    rate_limit: tuple[int, float] | None = None  # at most N jobs claimed per interval (seconds)
    concurrency: int | None = Field(default=None, ge=1)  # max active jobs across every consumer; None: any
    # Max active jobs of one owner across every consumer (Inngest's concurrency keys, BullMQ Pro's groups),
    # with a fair share between owners: one owner's backlog does not delay another's first job.
    owner_concurrency: int | None = Field(default=None, ge=1)

    @property
    def limited(self) -> bool:
        """A limit across consumers: a finish anywhere may make room for a claim."""
        return self.concurrency is not None or self.owner_concurrency is not None

    def stored(self) -> dict[str, int]:
        """The policy as the scripts read it (the queue meta's `pol` field): integer ms, 0 for none."""
        rate_n, rate_s = self.rate_limit or (0, 1.0)
        return {
            "kc": round(self.keep_completed_seconds * 1000),
            "kn": self.keep_completed_count,
            "kf": round(self.keep_failed_seconds * 1000),
            "kx": round(self.keep_cancelled_seconds * 1000),
            "rn": rate_n,
            "ri": max(1, round(rate_s * 1000)),
            "cc": self.concurrency or 0,
            "oc": self.owner_concurrency or 0,
        }


class QueueStats(BaseModel):
    queue: str
    paused: bool = False
    counts: dict[State, int]
    completed_total: int = 0
    failed_total: int = 0
    retried_total: int = 0
    cancelled_total: int = 0
    run_seconds_total: float = 0.0
    wait_seconds_total: float = 0.0
    oldest_waiting_age: float | None = None
    last_claim_at: datetime | None = None  # the last claim that found the queue due (any consumer)
    stalled: str | None = None  # why the queue looks stalled (stall_reason), None when it does not


STALL_AFTER = 120.0  # seconds: a waiting job this old while no consumer has claimed for as long


def stall_reason(stats: QueueStats, now: datetime, options: QueueOptions) -> str | None:
    """Why a queue looks stalled, for an operator; None when it does not.

    Stalled: not paused, its oldest waiting job is older than STALL_AFTER and no consumer has claimed
    from it for STALL_AFTER (plus its rate-limit interval, which spaces claims out). A queue at its
    concurrency limit is busy, not stalled.
    """
    waiting = stats.counts.get(State.WAITING, 0)
    oldest = stats.oldest_waiting_age
    if stats.paused or not waiting or oldest is None or oldest <= STALL_AFTER:
        return None
    if options.concurrency is not None and stats.counts.get(State.ACTIVE, 0) >= options.concurrency:
        return None
    patience = STALL_AFTER + (options.rate_limit[1] if options.rate_limit else 0.0)
    if stats.last_claim_at is None:
        quiet = "no consumer has ever claimed from this queue"
    else:
        since = (now - stats.last_claim_at).total_seconds()
        if since <= patience:
            return None
        quiet = f"no consumer has claimed from this queue for {_span(since)}"
    jobs = "1 job" if waiting == 1 else f"{waiting} jobs"
    return f"{jobs} waiting, oldest {_span(oldest)}; {quiet}: is a consumer running for its lane?"


def _span(seconds: float) -> str:
    """A rough duration: 45s, 7m, 3h, 2d."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= 2 * size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


class JobSlice(BaseModel):
    """One stretch of the engine's job listing (the API answers it as a JobPage)."""

    jobs: list[Job]
    cursor: str | None = None  # pass back to get the next page; None at the end


class Event(BaseModel):
    id: str  # stream entry id, usable as Last-Event-ID
    job_id: str
    state: State | None = None
    progress: int | None = None
    at: datetime


# Histogram bucket upper bounds (seconds) of run and wait times; shared/scripts/lib.lua has them in ms.
HISTOGRAM_BOUNDS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class ThroughputPoint(BaseModel):
    minute: datetime  # start of the minute (UTC)
    completed: int = 0
    failed: int = 0


class QueueMetrics(QueueStats):
    """Everything the dashboard and /metrics show for one queue, read in one call for all queues.

    Histograms are PER BUCKET (not cumulative): `run_buckets[i]` counts jobs whose run time was
    <= bounds[i] and > bounds[i-1]; the last entry counts those above the largest bound (+Inf).
    Prometheus exposition must cumulate them. Run time is measured for completed and failed attempts
    (claim to finish, Redis clock); wait time from becoming eligible (created, run-at or retry time)
    to claim.
    """

    bounds: list[float] = Field(default_factory=lambda: list(HISTOGRAM_BOUNDS))
    run_buckets: list[int] = Field(default_factory=lambda: [0] * (len(HISTOGRAM_BOUNDS) + 1))
    wait_buckets: list[int] = Field(default_factory=lambda: [0] * (len(HISTOGRAM_BOUNDS) + 1))
    claimed_total: int = 0  # jobs claimed (each wait time observed once per claim)
    cache_hits_total: int = 0  # attempts a response cache answered (ctx.cache)
    cache_misses_total: int = 0
    input_tokens_total: int = 0  # usage recorded by the queue's jobs (ctx.record_usage)
    output_tokens_total: int = 0
    cost_total: float = 0.0  # USD
    throughput: list[ThroughputPoint] = Field(default_factory=list)  # last 60 minutes, oldest first
