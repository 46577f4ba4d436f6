"""The queue engine: every state change is one idempotent, fenced Lua script run over the REST API.

Each public method is exactly one round trip (a script by SHA, or one plain read). The scripts live in
shared/scripts/ (one per state change); the key schema, the scripts' costs and the lease clock are
described in docs/redis-schema.md, the allowed transitions in docs/states.md.

Clock: by default the scripts read the Redis server's clock (TIME), which is the single authority on
lease expiry, so consumers with skewed clocks cannot steal each other's jobs. Tests inject `clock`, whose
reading is then sent with every call instead.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from shared.backoff import jitter_draw
from shared.codec import (
    as_fields,
    compact_backoff,
    decode_job,
    decode_metrics,
    dt,
    dumps,
    ms,
)
from shared.errors import (
    IdempotencyConflictError,
    JobNotFoundError,
    PayloadTooLargeError,
    ValidationError,
)
from shared.ids import is_job_id, new_id
from shared.keys import Keys
from shared.lanes import DEFAULT_LANES, Lanes
from shared.limits import (
    MAX_JSON_DEPTH,
    MAX_LOG_LINE_BYTES,
    MAX_LOG_LINES,
    MAX_METADATA_BYTES,
    json_depth,
)
from shared.models import (
    NAME_PATTERN,
    TAG_PATTERN,
    ClaimedJob,
    EnqueueReply,
    EnqueueResult,
    Event,
    FinishResult,
    Job,
    JobPage,
    JobSpec,
    Lease,
    LeaseStatus,
    Outcome,
    ProgressUpdate,
    QueueMetrics,
    QueueOptions,
    QueueStats,
    State,
    stall_reason,
)
from shared.settings import Settings
from shared.store import Store

_NAME = re.compile(NAME_PATTERN)
_TAG = re.compile(TAG_PATTERN)
_ID_CURSOR = re.compile(r"^[0-7][0-9A-HJKMNP-TV-Z]{25}$")
_QUEUE_CURSOR = re.compile(r"^[1-6]\.[0-9]{1,9}$")
MAX_BATCH = 1000
LEASE_MARGIN = 30.0  # seconds added to a job's timeout for its default lease
STREAM_ID = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")  # an event stream position, e.g. 1700000000000-0
MAX_STREAM_PART = 2**64 - 1  # each half of a stream id is an unsigned 64-bit number
LISTING_CAP = 10_000  # an owner's (or tag's) listing index keeps its newest 10,000 jobs
TRIGGER_TTL = 30.0  # a pending trigger is forgotten after this, so a lost one cannot block pushes
TERMINAL_INDEXES = ("completed", "failed", "cancelled")


class Engine:
    """The job queue on one Redis, under one key prefix. Every method is one round trip."""

    @classmethod
    def for_settings(
        cls,
        settings: Settings,
        redis: Any,
        queue_options: Callable[[str], QueueOptions],
        queues: Sequence[str] = (),
    ) -> Engine:
        """The engine a deployment's settings describe: the API and the consumers build it this one way."""
        return cls(
            redis,
            prefix=settings.key_prefix,
            queue_options=queue_options,
            queues=queues,
            max_payload_bytes=settings.max_payload_bytes,
            idempotency_window=settings.idempotency_window,
            timeout=settings.redis_timeout,
            lease_margin=settings.lease_margin,
            lanes=settings.lane_set,
        )

    def __init__(
        self,
        redis: Any,  # upstash_redis.asyncio.Redis (see shared.store.make_redis)
        *,
        prefix: str = "jobq",
        clock: Callable[[], float] | None = None,
        queue_options: Callable[[str], QueueOptions] | None = None,
        queues: Sequence[str] = (),
        max_payload_bytes: int = 256 * 1024,
        idempotency_window: float = 24 * 3600,
        timeout: float = 5.0,
        lease_margin: float = LEASE_MARGIN,
        lanes: Lanes | None = None,
    ) -> None:
        """`clock=None` (the default) lets Redis's clock decide; a callable is sent as "now" instead.

        `lanes` are the consumer lanes (job timeout classes) jobs are sorted into for push triggers and
        wake-ups; by default DEFAULT_LANES.

        `queue_options` gives each queue's policy and `queues` names the queues it speaks for (a
        registry's): before its first call the engine writes their policies to Redis, where every script
        reads them (publish_policies). Given `queue_options` without `queues`, it speaks for every queue
        it uses, publishing each before its first call there; with neither, it publishes nothing and
        the scripts apply what is stored (QueueOptions' defaults where nothing is).
        """
        self.keys = Keys(prefix)
        self.lanes = lanes or Lanes.of(DEFAULT_LANES)
        self.store = Store(redis, timeout=timeout)
        self.clock = clock
        self.queue_options = queue_options or (lambda _queue: QueueOptions())
        self.max_payload_bytes = max_payload_bytes
        self.idempotency_window = idempotency_window
        self.lease_margin = lease_margin
        self._known_queues = tuple(queues)
        self._publish_any = queue_options is not None and not queues
        self._published: set[str] = set()

    # -- helpers -------------------------------------------------------------------------------

    def _now_arg(self) -> str:
        return "-1" if self.clock is None else str(ms(self.clock()))

    def _base(self) -> list[str]:
        return [f"{self.keys.prefix}:", self._now_arg()]

    def _now_ms(self) -> int:
        return ms(self.clock() if self.clock is not None else time.time())

    async def publish_policies(self, queues: Iterable[str]) -> None:
        """Write these queues' policies (queue_options) to Redis, where every script reads them. One call.

        Each engine does this before it first uses a queue, so every process applies one policy: the
        last one written (a deployment runs one registry; a rolling deploy converges as processes start).
        """
        policies = {queue: dumps(self.queue_options(queue).stored()) for queue in queues}
        if policies:
            await self.store.script("policy", [*self._base(), dumps(policies)])
            self._published.update(policies)

    async def _ensure_policies(self, queues: Iterable[str] = ()) -> None:
        """Publish, once per engine, the policies of the queues it speaks for (`queues` among them)."""
        missing = {*self._known_queues, *(queues if self._publish_any else ())} - self._published
        if missing:
            await self.publish_policies(sorted(missing))

    def _lane_limit(self, lane: str) -> float:
        try:
            return self.lanes.limit(lane)
        except ValueError as exc:
            raise ValidationError(str(exc), field="lane") from exc

    def _check_queue(self, queue: str, field: str = "queue") -> str:
        if not isinstance(queue, str) or not _NAME.match(queue):
            raise ValidationError(f"queue names must match {NAME_PATTERN}", field=field)
        return queue

    # -- submit --------------------------------------------------------------------------------

    def _plan_job(self, index: int, spec: JobSpec) -> dict[str, Any]:
        """A validated spec (JobSpec checks its own fields) as enqueue.lua's plan item. What depends on
        this engine is checked here: the lane its timeout fits, and the stored sizes."""
        where = f"jobs[{index}]."
        queue = spec.queue or spec.type
        lane = self.lanes.lane_for(spec.timeout)
        if lane is None:
            lane = self.lanes.check(spec.timeout, field=where + "timeout")
        payload = _stored_json(spec.payload, where + "payload")
        if len(payload.encode()) > self.max_payload_bytes:
            raise PayloadTooLargeError(
                f"payload exceeds {self.max_payload_bytes} bytes", field=where + "payload"
            )
        metadata_bytes = len(_stored_json(spec.metadata, where + "metadata").encode())
        if metadata_bytes > MAX_METADATA_BYTES:
            raise PayloadTooLargeError(
                f"metadata exceeds {MAX_METADATA_BYTES} bytes", field=where + "metadata"
            )
        run_at = None if spec.run_at is None else ms(spec.run_at.timestamp())  # UTC (JobSpec)
        # The policy head comes first and "y" (type) right after it: the scripts decode only the head.
        immutable: dict[str, Any] = {
            "q": queue,
            "o": spec.owner,
            "p": spec.priority,
            "m": spec.max_attempts,
            "t": spec.timeout,
        }
        backoff = compact_backoff(spec.backoff)
        if backoff is not None:
            immutable["b"] = backoff
        immutable["y"] = spec.type
        if spec.idempotency_key is not None:
            immutable["i"] = spec.idempotency_key
        if spec.metadata:
            immutable["md"] = spec.metadata
        if spec.tags:
            immutable["g"] = spec.tags
        request = {**immutable, "x": spec.payload, "delay": spec.delay, "run_at": run_at}
        d = dumps(immutable)[:-1] + ',"x":' + payload + "}"
        job_id = new_id(self._now_ms())
        idem = None
        if spec.idempotency_key is not None:
            idem = self.keys.idempotency(queue, spec.owner, spec.idempotency_key)
        tag_keys = (self.keys.tag_jobs(spec.owner, tag) for tag in spec.tags)
        index_keys = [self.keys.owner_jobs(spec.owner), *tag_keys]
        return {
            "id": job_id,
            "q": queue,
            "d": d,
            "pr": spec.priority,
            "delay": ms(spec.delay),
            "at": run_at,
            "o": spec.owner,
            "ik": idem,
            "ih": hashlib.sha256(dumps(request).encode()).hexdigest()[:32],
            "ix": index_keys,
            "tk": self.keys.trigger(lane),
        }

    async def enqueue(self, specs: Sequence[JobSpec]) -> EnqueueReply:
        """One or many (<= 1000) jobs in one call, all or none.

        An idempotency key (per queue and owner, kept `idempotency_window`) that repeats with the same
        request returns the existing job (created=False); with a different request it raises
        IdempotencyConflictError and writes nothing. Each job belongs to the smallest consumer lane its
        timeout fits (a timeout that fits none is refused). `triggers` names the lanes of the created
        jobs for which no consumer run was pending: the caller should ask each for one (a burst of
        submits yields one trigger per lane until a claim clears it); `trigger` is `bool(triggers)`.
        """
        if not 1 <= len(specs) <= MAX_BATCH:
            raise ValidationError(f"submit 1 to {MAX_BATCH} jobs per call", field="jobs")
        jobs = [self._plan_job(i, spec) for i, spec in enumerate(specs)]
        await self._ensure_policies(job["q"] for job in jobs)
        plan = {"w": ms(self.idempotency_window), "tr": ms(TRIGGER_TTL), "cap": LISTING_CAP, "jobs": jobs}
        try:
            reply = await self.store.script_json("enqueue", [*self._base(), dumps(plan)])
        except IdempotencyConflictError as exc:  # the script names the item: "jobs[<index>]"
            raise IdempotencyConflictError(
                "this idempotency key was already used for a different request",
                field=f"{exc.message}.idempotency_key",
            ) from exc
        now = int(reply["now"])
        results = []
        for job, item in zip(jobs, reply["r"], strict=True):
            if item[1] == 1:
                fields = {"d": job["d"], "m": item[3]}
                results.append(EnqueueResult(job=decode_job(job["id"], fields, now), created=True))
            else:
                existing = decode_job(item[0], as_fields(item[2]), now)
                results.append(EnqueueResult(job=existing, created=False))
        lane_of_key = {self.keys.trigger(lane): lane for lane in self.lanes.names}
        return EnqueueReply(results=results, triggers=[lane_of_key[key] for key in reply["t"] or []])

    # -- consume -------------------------------------------------------------------------------

    async def due(self) -> dict[str, float]:
        """Queues with work, mapped to the earliest time (epoch seconds) they have some. One read.

        Work means a waiting job, a delayed job's run-at time or an active job's lease deadline (to
        reap); a rate-limited queue shows the end of its window; paused queues are absent. Times may
        be in the future: compare with the current time to pick what is ready now.
        """
        flat = await self.store.command("ZRANGE", self.keys.due(), 0, -1, "WITHSCORES")
        return {queue: float(score) / 1000 for queue, score in as_fields(flat).items()}

    async def claim(
        self,
        queue: str,
        n: int,
        lease: float | None = None,
        *,
        max_timeout: float | None = None,
        lane: str | None = None,
    ) -> list[ClaimedJob]:
        """Reap expired leases, promote due delayed jobs, take up to n jobs by priority.

        `lease` overrides the lease length; by default each job's lease is its timeout plus a margin,
        so a job that finishes within its timeout never needs a heartbeat. Honours the queue's rate
        limit and queue-wide concurrency (QueueOptions.rate_limit, .concurrency). `max_timeout` takes
        only jobs whose own timeout is at most that many seconds; the others stay waiting in place.
        `lane` is the consumer lane the caller serves: it defaults `max_timeout` to the lane's limit,
        and a claim that takes jobs clears that lane's pending-trigger flag (lane=None, a worker serving
        every lane: every lane's flag), so the next submit asks for a new consumer run. A paused or
        empty queue returns [] (one inner read).
        """
        args = await self._claim_args(queue, n, lease, max_timeout, lane)
        return self._claimed(await self.store.script_json("claim", [*self._base(), *args]))

    async def finish_and_claim(
        self,
        outcomes: Sequence[Outcome],
        queue: str,
        n: int,
        *,
        max_timeout: float | None = None,
        lane: str | None = None,
    ) -> tuple[list[FinishResult], list[ClaimedJob]]:
        """`finish(outcomes)` then `claim(queue, n, ...)` in one atomic call: a consumer's refill in one
        round trip instead of two (its finish frees the slots its claim then fills)."""
        if not outcomes:
            return [], await self.claim(queue, n, max_timeout=max_timeout, lane=lane)
        plan = await self._finish_plan(outcomes)
        args = await self._claim_args(queue, n, None, max_timeout, lane)
        finished, claimed = await self.store.script_json("cycle", [*self._base(), plan, *args])
        return self._finished(outcomes, finished), self._claimed(claimed)

    async def _claim_args(
        self, queue: str, n: int, lease: float | None, max_timeout: float | None, lane: str | None
    ) -> list[str]:
        """claim.lua's arguments after the prefix and the clock (checked here, so the script needs not)."""
        self._check_queue(queue)
        if not 1 <= n <= MAX_BATCH:
            raise ValidationError(f"claim 1 to {MAX_BATCH} jobs", field="n")
        if lease is not None and not 0 < lease <= 7 * 86400:
            raise ValidationError("lease must be in (0, 7 days]", field="lease")
        if lane is not None:
            max_timeout = self._lane_limit(lane) if max_timeout is None else max_timeout
            triggers = [self.keys.trigger(lane)]
        else:
            triggers = [self.keys.trigger(name) for name in self.lanes.names]
        if max_timeout is not None and not max_timeout > 0:
            raise ValidationError("max_timeout must be > 0", field="max_timeout")
        await self._ensure_policies([queue])
        return [
            queue,
            str(n),
            str(-1 if lease is None else ms(lease)),
            str(ms(self.lease_margin)),
            secrets.token_hex(8),
            "-1" if max_timeout is None else repr(float(max_timeout)),
            *triggers,
        ]

    @staticmethod
    def _claimed(reply: Any) -> list[ClaimedJob]:
        return [
            ClaimedJob(
                job=decode_job(job_id, as_fields(flat), int(reply["now"])),
                token=token,
                lease_until=dt(until) or datetime.now(UTC),
            )
            for job_id, token, until, flat in reply["j"] or []
        ]

    async def book_wake(self, lane: str, at: float) -> bool:
        """Book a delayed wake-up of `lane`'s consumer at `at` (epoch seconds). One script call.

        True: the caller should publish one (no wake is pending for the lane, or the pending one is
        later than `at`, which is now recorded instead). False: a wake at or before `at` is pending.
        A pending wake is forgotten once its time has passed, so a lost one never blocks later ones.
        """
        self._lane_limit(lane)
        args = [*self._base(), self.keys.wake(lane), str(ms(at))]
        return int(await self.store.script("wake", args)) == 1

    async def finish(self, outcomes: Sequence[Outcome]) -> list[FinishResult]:
        """Record outcomes (any queues) in one call; stale tokens change nothing and come back ok=False.

        Re-sending an outcome that was already applied (same token) reports ok=True and changes
        nothing. `state` is the job's state after the call (delayed for a scheduled retry).
        """
        if not outcomes:
            return []
        plan = await self._finish_plan(outcomes)
        return self._finished(outcomes, await self.store.script_json("finish", [*self._base(), plan]))

    async def _finish_plan(self, outcomes: Sequence[Outcome]) -> str:
        """finish.lua's plan (JSON): each outcome checked (a result that is not JSON is refused)."""
        if len(outcomes) > MAX_BATCH:
            raise ValidationError(f"at most {MAX_BATCH} outcomes per call", field="outcomes")
        plan_outcomes = []
        for index, o in enumerate(outcomes):
            try:
                result = None if o.result is None else dumps(o.result)
            except (ValueError, TypeError, RecursionError) as exc:
                raise ValidationError(
                    "result is not JSON-serialisable", field=f"outcomes[{index}].result"
                ) from exc
            error = None
            if o.error is not None:
                error = {"kind": o.error.kind.value, "message": o.error.message[:2000]}
            elif o.status == "failed":
                error = {"kind": "retryable", "message": "failed"}
            plan_outcomes.append(
                {
                    "id": o.job_id,
                    "k": o.token,
                    "st": o.status,
                    "r": result,
                    "e": error,
                    "ra": None if o.retry_after is None else ms(o.retry_after),
                    "p": o.progress,
                    "g": _bound_logs(o.logs),
                }
            )
        await self._ensure_policies()
        return dumps({"o": plan_outcomes, "u": jitter_draw()})

    @staticmethod
    def _finished(outcomes: Sequence[Outcome], reply: Any) -> list[FinishResult]:
        return [
            FinishResult(job_id=o.job_id, ok=ok == 1, state=State(state) if state else None)
            for o, (ok, state) in zip(outcomes, reply, strict=True)
        ]

    async def extend(self, leases: Sequence[Lease], seconds: float) -> list[LeaseStatus]:
        """Heartbeat: each lease ends `seconds` from now (Redis clock). Reports cancel requests."""
        if not 0 < seconds <= 7 * 86400:
            raise ValidationError("seconds must be in (0, 7 days]", field="seconds")
        if not leases:
            return []
        args = [*self._base(), str(ms(seconds))]
        for lease in leases:
            args += [lease.job_id, lease.token]
        reply = await self.store.script_json("extend", args)
        return [
            LeaseStatus(job_id=lease.job_id, ok=ok == 1, cancel_requested=cancel == 1)
            for lease, (ok, cancel) in zip(leases, reply, strict=True)
        ]

    async def report(self, updates: Sequence[ProgressUpdate]) -> list[LeaseStatus]:
        """Progress and log lines of many running jobs in one call, fenced by token.

        Logs keep the last MAX_LOG_LINES lines of at most MAX_LOG_LINE_BYTES each.
        """
        if not updates:
            return []
        plan = [{"id": u.job_id, "k": u.token, "p": u.progress, "g": _bound_logs(u.logs)} for u in updates]
        reply = await self.store.script_json("report", [*self._base(), dumps(plan)])
        return [
            LeaseStatus(job_id=u.job_id, ok=ok == 1, cancel_requested=cancel == 1)
            for u, (ok, cancel) in zip(updates, reply, strict=True)
        ]

    async def release(self, leases: Sequence[Lease]) -> list[FinishResult]:
        """Hand claimed-but-unstarted jobs back to waiting at once, attempt not counted.

        They go to the front of their priority level. Fenced like finish.
        """
        if not leases:
            return []
        args = self._base()
        for lease in leases:
            args += [lease.job_id, lease.token]
        reply = await self.store.script_json("release", args)
        return [
            FinishResult(job_id=lease.job_id, ok=ok == 1, state=State(state) if state else None)
            for lease, (ok, state) in zip(leases, reply, strict=True)
        ]

    # -- manage --------------------------------------------------------------------------------

    async def cancel(self, job_id: str, *, owner: str | None = None) -> Job:
        """Waiting/delayed: cancelled now. Active: cancel_requested set. Owner mismatch: not found.

        A terminal job is returned unchanged.
        """
        job_id = _valid_id(job_id)
        await self._ensure_policies()
        args = [*self._base(), job_id, owner or ""]
        reply = await self.store.script_json("cancel", args)
        return decode_job(job_id, as_fields(reply["j"]), int(reply["now"]))

    async def retry(self, job_id: str, *, owner: str | None = None) -> Job:
        """A failed or cancelled job back to waiting (attempts reset, errors and logs kept).

        Any other state: InvalidTransitionError.
        """
        job_id = _valid_id(job_id)
        reply = await self.store.script_json("rerun", [*self._base(), "job", job_id, owner or ""])
        return decode_job(job_id, as_fields(reply["j"]), int(reply["now"]))

    async def retry_failed(self, queue: str, *, limit: int = 1000) -> int:
        """Up to `limit` (<= 1000) jobs of the dead-letter set back to waiting; call again for more."""
        self._check_queue(queue)
        if not 1 <= limit <= MAX_BATCH:
            raise ValidationError(f"limit must be 1-{MAX_BATCH}", field="limit")
        return int(await self.store.script("rerun", [*self._base(), "queue", queue, str(limit)]))

    async def pause(self, queue: str) -> None:
        """Claims return nothing and the queue leaves the due index until resumed."""
        await self.store.script("pause", [*self._base(), self._check_queue(queue), "1"])

    async def resume(self, queue: str) -> None:
        await self.store.script("pause", [*self._base(), self._check_queue(queue), "0"])

    async def clean(self, queue: str, state: State, *, older_than: float, limit: int = 1000) -> int:
        """Delete up to `limit` jobs of a terminal state that finished more than `older_than` s ago."""
        self._check_queue(queue)
        if State(state).value not in TERMINAL_INDEXES:
            raise ValidationError("only completed, failed or cancelled jobs can be cleaned", field="state")
        if older_than < 0:
            raise ValidationError("older_than must be >= 0", field="older_than")
        if not 1 <= limit <= 10_000:
            raise ValidationError("limit must be 1-10000", field="limit")
        args = [*self._base(), queue, State(state).value, str(ms(older_than)), str(limit)]
        return int(await self.store.script("clean", args))

    async def obliterate(self, queue: str) -> None:
        """Delete a queue and every job in it (tests and admins; unbounded work in one script)."""
        await self.store.script("obliterate", [*self._base(), self._check_queue(queue)])

    # -- read ----------------------------------------------------------------------------------

    async def get(self, job_id: str, *, owner: str | None = None) -> Job:
        """The job; JobNotFoundError if missing or (when owner given) owned by someone else."""
        job_id = _valid_id(job_id)
        fields = as_fields(await self.store.command("HGETALL", self.keys.job(job_id)))
        if "d" not in fields or "m" not in fields:
            raise JobNotFoundError("job not found")
        job = decode_job(job_id, fields, ms(time.time()) if self.clock is None else self._now_ms())
        if owner is not None and job.owner != owner:
            raise JobNotFoundError("job not found")
        return job

    async def list_jobs(
        self,
        *,
        owner: str | None = None,
        queue: str | None = None,
        tag: str | None = None,
        state: State | None = None,
        type: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> JobPage:
        """Jobs of an owner (by tag when given: tag listings are per owner), else of a queue, newest first.

        Owner and tag listings are newest created first (ids are time-ordered); a queue listing walks
        its state indexes (the given state, or all of them in STATE_INDEXES order), newest entry first.
        `cursor` is the opaque value of the previous page (None at the end). One round trip; a page may
        come back short when the filters are sparse (the script scans at most 1000 entries).
        """
        if not 1 <= limit <= 1000:
            raise ValidationError("limit must be 1-1000", field="limit")
        if type is not None and not _NAME.match(type):
            raise ValidationError(f"type must match {NAME_PATTERN}", field="type")
        if tag is not None and not _TAG.match(tag):
            raise ValidationError(f"tags must match {TAG_PATTERN}", field="tag")
        cursor_pattern = _ID_CURSOR
        owner_filter = ""
        if tag is not None:
            if owner is None:
                raise ValidationError("a tag listing is an owner's: give the owner", field="owner")
            mode, target = "index", self.keys.tag_jobs(owner, tag)
        elif owner is not None and queue is None:
            mode, target = "index", self.keys.owner_jobs(owner)
        elif queue is not None:
            mode, target, owner_filter = "queue", self._check_queue(queue), owner or ""
            cursor_pattern = _QUEUE_CURSOR
        else:
            raise ValidationError("list by owner, queue or tag", field="owner")
        if cursor is not None and not cursor_pattern.match(cursor):
            raise ValidationError("invalid cursor", field="cursor")
        args = [
            *self._base(),
            mode,
            target,
            cursor or "",
            str(limit),
            State(state).value if state is not None else "",
            type or "",
            owner_filter,
        ]
        reply = await self.store.script_json("list", args)
        now = int(reply["now"])
        jobs = [decode_job(job_id, as_fields(flat), now) for job_id, flat in reply["j"] or []]
        return JobPage(jobs=jobs, cursor=reply["c"] or None)

    async def stats(self, queue: str) -> QueueStats:
        """Counts per state, paused flag, counters, backlog age, last claim and stall reason of one queue.

        One round trip."""
        [metrics] = await self._metrics([self._check_queue(queue)])
        return QueueStats.model_validate(metrics.model_dump(include=set(QueueStats.model_fields)))

    async def stats_all(self) -> list[QueueStats]:
        """`stats` of every queue that has had a job, sorted by name. One round trip."""
        return [
            QueueStats.model_validate(m.model_dump(include=set(QueueStats.model_fields)))
            for m in await self._metrics([])
        ]

    async def metrics(self) -> list[QueueMetrics]:
        """Stats plus histograms and per-minute throughput of every queue. One round trip."""
        return await self._metrics([])

    async def _metrics(self, queues: list[str]) -> list[QueueMetrics]:
        reply = await self.store.script_json("stats", [*self._base(), "1", *queues])
        now = int(reply["now"])
        at = datetime.fromtimestamp(now / 1000, UTC)
        result = []
        for entry in reply["q"] or []:
            metrics = decode_metrics(entry, now)
            metrics.stalled = stall_reason(metrics, at, self.queue_options(metrics.queue))
            result.append(metrics)
        return sorted(result, key=lambda m: m.queue)

    async def queue_names(self) -> list[str]:
        """Every queue that has had a job, sorted. One plain read."""
        return sorted(await self.store.command("SMEMBERS", self.keys.queues()) or [])

    async def events(self, queue: str, *, after: str = "0-0", count: int = 100) -> list[Event]:
        """State changes of a queue's jobs after stream id `after`, oldest first. One read.

        The scripts write one stream entry per call and state; it expands to one Event per job, all
        with the entry's id (pass the last id back as `after`). The stream keeps ~1000 entries.
        """
        self._check_queue(queue)
        _check_stream_id(after)
        _check_count(count)
        entries = await self.store.command(
            "XRANGE", self.keys.queue_events(queue), f"({after}", "+", "COUNT", count
        )
        return _events_of(entries)

    async def events_since(self, positions: dict[str, str], *, count: int = 100) -> dict[str, list[Event]]:
        """`events` of many queues at once: queue -> stream id to read after. ONE read (XREAD) for all,
        so a live view of every queue costs one command per poll, not one per queue."""
        if not positions:
            return {}
        for queue, after in positions.items():
            self._check_queue(queue)
            _check_stream_id(after)
        _check_count(count)
        queues = list(positions)
        reply = await self.store.command(
            "XREAD",
            "COUNT",
            count,
            "STREAMS",
            *(self.keys.queue_events(q) for q in queues),
            *(positions[q] for q in queues),
        )
        by_key = {key: entries for key, entries in reply or []}
        return {q: _events_of(by_key.get(self.keys.queue_events(q))) for q in queues}


def _check_stream_id(after: str) -> None:
    if not is_stream_id(after):
        raise ValidationError("after must be a stream id like 1700000000000-0", field="after")


def is_stream_id(text: str) -> bool:
    """A stream position Redis accepts: two unsigned 64-bit numbers, e.g. 1700000000000-0."""
    return STREAM_ID.fullmatch(text) is not None and all(
        int(part) <= MAX_STREAM_PART for part in text.split("-")
    )


def _stored_json(value: Any, field: str) -> str:
    """`value` as the JSON text the job record stores; ValidationError (naming `field`) when it has none."""
    name = field.rpartition(".")[2]
    if json_depth(value) > MAX_JSON_DEPTH:
        raise ValidationError(f"{name} nests deeper than {MAX_JSON_DEPTH} levels", field=field)
    try:
        text = dumps(value)
        text.encode()
    except UnicodeEncodeError as exc:
        message = f"{name} holds a lone UTF-16 surrogate, which UTF-8 cannot carry"
        raise ValidationError(message, field=field) from exc
    except (ValueError, TypeError, RecursionError) as exc:
        raise ValidationError(f"{name} is not JSON-serialisable", field=field) from exc
    return text


def _check_count(count: int) -> None:
    if not 1 <= count <= 1000:
        raise ValidationError("count must be 1-1000", field="count")


def _events_of(entries: Any) -> list[Event]:
    """Stream entries (id, flat fields) as Events: one per job id the entry names."""
    events = []
    for entry_id, flat in entries or []:
        fields = as_fields(flat)
        ids = fields.get("j", "").split()
        progress = fields.get("p", "").split()
        at = dt(fields.get("t")) or datetime.now(UTC)
        for i, job_id in enumerate(ids):
            events.append(
                Event(
                    id=entry_id,
                    job_id=job_id,
                    state=State(fields["s"]),
                    progress=int(progress[i]) if i < len(progress) else None,
                    at=at,
                )
            )
    return events


def _valid_id(job_id: str) -> str:
    """A malformed or hostile id names no job (never reaches a key)."""
    if not is_job_id(job_id):
        raise JobNotFoundError("job not found")
    return job_id


def _bound_logs(lines: Sequence[str]) -> list[str]:
    kept = list(lines)[-MAX_LOG_LINES:]
    return [line.encode()[:MAX_LOG_LINE_BYTES].decode(errors="ignore") for line in kept]


__all__ = ["Engine"]
