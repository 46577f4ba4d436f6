"""The queue engine: every state change is one idempotent, fenced Lua script run over the REST API.

Each script works on the keys of one queue, all declared in KEYS (shared/keys.py), so Upstash runs it
under key locking and a Redis Cluster can route it; a job id names its queue (shared/ids.py). A method
on one queue or one job is one round trip (a script by SHA, or one plain read); a method over several
queues (outcomes of jobs of many queues, stats of every queue, an owner's listing) sends one call per
queue at once. The scripts live in shared/scripts/ (one per state change); the key schema, the scripts'
costs and the lease clock are described in docs/redis-schema.md, the allowed transitions in docs/states.md.

Clock: by default the scripts read the Redis server's clock (TIME), which is the single authority on
lease expiry, so consumers with skewed clocks cannot steal each other's jobs. A submit is the exception:
it carries the submitter's clock, which already dates the job's id. Tests inject `clock`, whose reading is
then sent with every call instead.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

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
    FlowKeysError,
    IdempotencyConflictError,
    JobNotFoundError,
    JobqError,
    PayloadTooLargeError,
    SingletonConflictError,
    StoreError,
    ValidationError,
)
from shared.ids import is_job_id, is_unique_id, job_id, new_id, split_id
from shared.keys import BLOCK, Keys, QueueKeys, hold_digest
from shared.lanes import DEFAULT_LANES, Lanes
from shared.limits import (
    MAX_FLOW_DEPTH,
    MAX_FLOW_NODES,
    MAX_JSON_DEPTH,
    MAX_LOG_LINE_BYTES,
    MAX_LOG_LINES,
    MAX_METADATA_BYTES,
    json_depth,
)
from shared.models import (
    NAME_PATTERN,
    POLICY_CODES,
    TAG_PATTERN,
    ClaimedJob,
    EnqueueReply,
    EnqueueResult,
    Event,
    FinishResult,
    Job,
    JobSlice,
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
from shared.scheduler import Scheduler
from shared.scriptcalls import (
    CANCEL,
    CLAIM,
    CLEAN,
    CYCLE,
    ENQUEUE,
    EXTEND,
    FINISH,
    LIST,
    OBLITERATE,
    PAUSE,
    POLICY,
    RELEASE,
    REPORT,
    RERUN,
    STATS,
    STEP,
    WAKE,
    ClaimPlan,
    CleanPlan,
    EnqueueGroup,
    EnqueueJob,
    EnqueuePlan,
    ExtendPlan,
    FinishOutcome,
    FinishPlan,
    FlowQueues,
    ListPlan,
    ProgressItem,
    RerunPlan,
    StepPlan,
)
from shared.store import Store, retrying
from shared.usage import USAGE_KEEP_MS, month_of, usage_plan

log = logging.getLogger("jobq.engine")
_NAME = re.compile(NAME_PATTERN)
_TAG = re.compile(TAG_PATTERN)
_QUEUE_CURSOR = re.compile(r"^[1-7]\.[0-9]{1,9}$")
_DEPENDENCY_ERROR = re.compile(r"^jobs\[([0-9]+)\]\.(depends_on\[[0-9]+\]) (.*)$")
MAX_BATCH = 1000
LEASE_MARGIN = 30.0  # seconds added to a job's timeout for its default lease
STREAM_ID = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")  # an event stream position, e.g. 1700000000000-0
MAX_STREAM_PART = 2**64 - 1  # each half of a stream id is an unsigned 64-bit number
LISTING_CAP = 10_000  # an owner's (or tag's) listing index keeps its newest 10,000 jobs
TRIGGER_TTL = 30.0  # a pending trigger is forgotten after this, so a lost one cannot block pushes
TERMINAL_INDEXES = ("completed", "failed", "cancelled")
QUEUES_TTL = 30.0  # seconds a consumer's tick trusts its list of queues before reading it again


@dataclass
class PlannedJob:
    """A job of a batch submit: its plan item, and the keys the item will point at by position."""

    queue: str
    job: EnqueueJob
    idempotency: str | None
    listings: list[str]
    where: str = ""  # the request's name for it ("jobs[0].children[1].")

    @property
    def id(self) -> str:
        return job_id(self.job["u"], self.queue)


@dataclass
class FlowNode:
    """A spec of a submit, flattened: where the request holds it, and its flow parent's position."""

    spec: JobSpec
    where: str
    parent: int | None
    depth: int


def _flatten(specs: Sequence[JobSpec]) -> list[FlowNode]:
    """Every job of a submit, each tree in preorder (a parent before its children). Refuses, naming the
    field, a tree deeper than MAX_FLOW_DEPTH or a submit of more than MAX_FLOW_NODES jobs with flows."""
    nodes: list[FlowNode] = []
    stack = [FlowNode(specs[i], f"jobs[{i}].", None, 0) for i in reversed(range(len(specs)))]
    has_flow = any(spec.children for spec in specs)
    while stack:
        node = stack.pop()
        if node.depth == MAX_FLOW_DEPTH and node.spec.children:
            raise ValidationError(
                f"a flow nests at most {MAX_FLOW_DEPTH} levels of children", field=node.where + "children"
            )
        position = len(nodes)
        nodes.append(node)
        if has_flow and len(nodes) > MAX_FLOW_NODES:
            raise ValidationError(f"a flow holds at most {MAX_FLOW_NODES} jobs", field="children")
        for k in reversed(range(len(node.spec.children))):
            child = node.spec.children[k]
            stack.append(FlowNode(child, f"{node.where}children[{k}].", position, node.depth + 1))
    return nodes


class Engine:
    """The job queue on one Redis, under one key prefix. A method on one queue or one job is one round
    trip; one over several queues sends one call per queue at once (module docstring)."""

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
        cluster: bool = False,
    ) -> None:
        """`clock=None` (the default) lets Redis's clock decide; a callable is sent as "now" instead.

        `lanes` are the consumer lanes (job timeout classes) jobs are sorted into for push triggers and
        wake-ups; by default DEFAULT_LANES.

        `queue_options` gives each queue's policy and `queues` names the queues it speaks for (a
        registry's): before its first call the engine writes their policies to Redis, where every script
        reads them (publish_policies). Given `queue_options` without `queues`, it speaks for every queue
        it uses, publishing each before its first call there; with neither, it publishes nothing and
        the scripts apply what is stored (QueueOptions' defaults where nothing is).

        `cluster`: Redis sits behind a Redis Cluster, where one command's keys must share a slot: reads
        of many queues go one per queue (the due keys, the event streams) and a batch submit holds the
        jobs of one queue.
        """
        self.keys = Keys(prefix)
        self.lanes = lanes or Lanes.of(DEFAULT_LANES)
        self.store = Store(redis, timeout=timeout)
        self.clock = clock
        self.queue_options = queue_options or (lambda _queue: QueueOptions())
        self.max_payload_bytes = max_payload_bytes
        self.idempotency_window = idempotency_window
        self.lease_margin = lease_margin
        self.cluster = cluster
        self._known_queues = tuple(queues)
        self._publish_any = queue_options is not None and not queues
        self._published: set[str] = set()
        self._named: set[str] = set()  # queues this engine added to the set of queues
        self._queue_list: tuple[float, list[str]] | None = None  # (read at, SMEMBERS) for ticks
        self.scheduler = Scheduler(self)
        # Queues whose flows reach into other queues (a child's parent, a parent's children), learned from
        # submits, claims and the scripts' needs_queues replies: their blocks ride along in KEYS.
        self._related: dict[str, set[str]] = {}

    # -- helpers -------------------------------------------------------------------------------

    def _now_arg(self) -> str:
        return "-1" if self.clock is None else str(ms(self.clock()))

    def _qk(self, queue: str) -> QueueKeys:
        return self.keys.queue(queue)

    def _on(self, queue: str, extra: Sequence[str] = ()) -> tuple[Store, list[str], str]:
        """What a script of one queue runs with: the store, KEYS (its block, then `extra`) and the clock,
        as `SCRIPT.run(*self._on(queue), plan)`."""
        return self.store, [*self._qk(queue).block(), *extra], self._now_arg()

    def _relate(self, queue: str, others: Iterable[str]) -> None:
        others = set(others) - {queue}
        if others and not self.cluster:
            self._related.setdefault(queue, set()).update(others)

    async def _flowing(self, queue: str, call: Callable[[list[str], FlowQueues], Awaitable[R]]) -> R:
        """`call(KEYS, fq)` of a script of `queue` that may end or revive jobs of flows: KEYS carry the
        blocks of the queues its flows are known to reach (fq names them). A script that meets a link
        into a queue it lacks stops before writing (needs_queues): call again with that queue too (once
        per level of the flow reached; the engine remembers, so the next call needs one round trip)."""
        for _ in range(MAX_FLOW_DEPTH + 2):
            keys = self._qk(queue).block()
            fq: FlowQueues = [(queue, 0)]
            for other in sorted(self._related.get(queue, ())):
                fq.append((other, len(keys)))
                keys += self._qk(other).block()
            try:
                return await call(keys, fq)
            except FlowKeysError as exc:
                missing = {q for q in exc.message.split() if _NAME.match(q)} - {queue}
                if self.cluster or not missing or missing <= self._related.get(queue, set()):
                    raise StoreError(f"a flow of queue {queue} reaches queues it cannot name") from exc
                self._relate(queue, missing)
        raise StoreError(f"a flow of queue {queue} reaches too many queues")

    def _now_ms(self) -> int:
        return ms(self.clock() if self.clock is not None else time.time())

    async def publish_policies(self, queues: Iterable[str]) -> None:
        """Write these queues' policies (queue_options) to Redis, where every script reads them. One call
        per queue, sent at once.

        Each engine does this before it first uses a queue, so every process applies one policy: the
        last one written (a deployment runs one registry; a rolling deploy converges as processes start).
        """
        names = list(dict.fromkeys(queues))
        if not names:
            return
        await asyncio.gather(
            *(POLICY.run(*self._on(q), {"policy": dumps(self.queue_options(q).stored())}) for q in names)
        )
        self._published.update(names)

    def _unpublished(self, queues: Iterable[str] = ()) -> set[str]:
        """The queues this engine speaks for (`queues` among them) whose policies it has not published."""
        return {*self._known_queues, *(queues if self._publish_any else ())} - self._published

    async def _ensure_policies(self, queues: Iterable[str] = ()) -> None:
        """Publish, once per engine, the policies of the queues it speaks for (`queues` among them)."""
        if missing := self._unpublished(queues):
            await self.publish_policies(sorted(missing))

    async def _name_queues(self, queues: Iterable[str]) -> None:
        """Add queues that get jobs to the set of queues, once per engine (no script touches that key:
        it is every queue's, so it would tie all their scripts to one lock and one cluster slot)."""
        unnamed = set(queues) - self._named
        if unnamed:
            await self.store.command("SADD", self.keys.queues(), *sorted(unnamed))
            self._named.update(unnamed)

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

    def _plan_job(self, index: int, spec: JobSpec, where: str) -> PlannedJob:
        """A validated spec (JobSpec checks its own fields) as enqueue.lua's plan item. What depends on
        this engine is checked here: the lane its timeout fits, and the stored sizes."""
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
        holds: dict[str, str] = {}  # the digests of its singleton/debounce keys (keys.hold_digest)
        if spec.singleton_key is not None:
            holds["sg"] = hold_digest(spec.owner, spec.singleton_key)
        if spec.debounce is not None:
            holds["db"] = hold_digest(spec.owner, spec.debounce.key)
        immutable.update(holds)  # in the head: the scripts release a job's holds from it
        if spec.notify or spec.callback_url:  # a delivery job when it ends (lib.lua notify)
            immutable["n"] = 1
        if spec.callback_url:
            immutable["cb"] = spec.callback_url
        immutable["y"] = spec.type
        if spec.singleton_key is not None:
            immutable["sk"] = spec.singleton_key
        if spec.debounce is not None:
            immutable["dk"] = spec.debounce.key
        if spec.idempotency_key is not None:
            immutable["i"] = spec.idempotency_key
        if spec.metadata:
            immutable["md"] = spec.metadata
        if spec.tags:
            immutable["g"] = spec.tags
        request = {**immutable, "x": spec.payload, "delay": spec.delay, "run_at": run_at}
        d = dumps(immutable)[:-1] + ',"x":' + payload + "}"
        qk = self._qk(queue)
        idem = None
        if spec.idempotency_key is not None:
            idem = qk.idempotency(spec.owner, spec.idempotency_key)
        tag_keys = (qk.tag_jobs(spec.owner, tag) for tag in spec.tags)
        job: EnqueueJob = {
            "i": index,
            "u": new_id(self._now_ms()),
            "d": d,
            "pr": spec.priority,
            "delay": ms(spec.delay),
            "at": run_at,
            "o": spec.owner,
            "ik": 0,  # KEYS positions, set once the batch's keys are laid out
            "ih": hashlib.sha256(dumps(request).encode()).hexdigest()[:32],
            "ix": [],
            "ln": lane,
        }
        if "sg" in holds:
            job["sg"] = holds["sg"]
        if spec.debounce is not None:  # it waits out its window first
            job["db"], job["delay"] = holds["db"], ms(spec.debounce.seconds)
            job["dw"], job["dm"] = ms(spec.debounce.seconds), ms(spec.debounce.max_wait)
        return PlannedJob(queue, job, idem, [qk.owner_jobs(spec.owner), *tag_keys], where)

    def _link_flows(self, nodes: list[FlowNode], jobs: list[PlannedJob]) -> set[str]:
        """Each job's flow links in its plan item: its children's ids, its parent's id and policy, its
        depends_on. Returns the queues of the dependencies. Refuses, naming the field, what a flow
        cannot hold: a delayed job that waits for others, an idempotency key inside a tree, a debounced
        job in a flow, a bad or
        repeated dependency id, and on a Redis Cluster a flow or dependency across queues (one script
        may touch only one slot there)."""
        dep_queues: set[str] = set()
        for node, job in zip(nodes, jobs, strict=True):
            spec, where = node.spec, node.where
            waits = bool(spec.children or spec.depends_on)
            if waits and (spec.delay or spec.run_at is not None):
                raise ValidationError(
                    "a job that waits for children or dependencies cannot be delayed: it runs when they end",
                    field=where + ("run_at" if spec.run_at is not None else "delay"),
                )
            in_tree = node.parent is not None or bool(spec.children)
            if in_tree and spec.idempotency_key is not None:
                raise ValidationError(
                    "idempotency keys are not supported inside a flow", field=where + "idempotency_key"
                )
            if (in_tree or spec.depends_on) and spec.debounce is not None:  # a join would rewire the flow
                raise ValidationError("debounce is not supported inside a flow", field=where + "debounce")
            if spec.children:
                job.job["fc"] = []
            if node.parent is not None:
                parent = jobs[node.parent]
                parent.job["fc"].append(job.id)
                job.job["fp"] = [(parent.id, POLICY_CODES[spec.on_failure])]
                if self.cluster and parent.queue != job.queue:
                    raise ValidationError(
                        "on a Redis Cluster a flow's jobs share one queue", field=where + "queue"
                    )
            if spec.depends_on:
                if len(set(spec.depends_on)) != len(spec.depends_on):
                    raise ValidationError("depends_on repeats a job", field=where + "depends_on")
                for k, dep in enumerate(spec.depends_on):
                    if not is_job_id(dep):
                        raise ValidationError("not a job id", field=f"{where}depends_on[{k}]")
                    dep_queue = split_id(dep)[1]
                    if self.cluster and dep_queue != job.queue:
                        raise ValidationError(
                            "on a Redis Cluster a job depends only on jobs of its own queue",
                            field=f"{where}depends_on[{k}]",
                        )
                    dep_queues.add(dep_queue)
                job.job["dx"] = list(spec.depends_on)
        return dep_queues

    async def enqueue(self, specs: Sequence[JobSpec]) -> EnqueueReply:
        """One or many (<= 1000) jobs in one call, all or none; `results` has one entry per job, a spec's
        flow children (and theirs) right after it, in preorder.

        An idempotency key (per queue and owner, kept `idempotency_window`) that repeats with the same
        request returns the existing job (created=False); with a different request it raises
        IdempotencyConflictError and writes nothing. Each job belongs to the smallest consumer lane its
        timeout fits (a timeout that fits none is refused). `triggers` names the lanes of the created
        jobs for which no consumer run was pending: the caller should ask each for one (a burst of
        submits yields one trigger per lane until a claim clears it); `trigger` is `bool(triggers)`.
        """
        if not 1 <= len(specs) <= MAX_BATCH:
            raise ValidationError(f"submit 1 to {MAX_BATCH} jobs per call", field="jobs")
        nodes = _flatten(specs)
        if len(nodes) > MAX_BATCH:
            raise ValidationError(f"submit 1 to {MAX_BATCH} jobs per call", field="jobs")
        jobs = [self._plan_job(i, node.spec, node.where) for i, node in enumerate(nodes)]
        dep_queues = self._link_flows(nodes, jobs)
        _one_debounce_per_key(jobs)
        groups: dict[str, list[PlannedJob]] = {}
        for job in jobs:
            groups.setdefault(job.queue, []).append(job)
        if self.cluster and len(groups) > 1:
            raise ValidationError("on a Redis Cluster a batch holds the jobs of one queue", field="jobs")
        if not self._named.issuperset(groups) or self._unpublished(groups):
            # A queue's first submit from this process (its policy, its place in the set of queues).
            await asyncio.gather(self._ensure_policies(groups), self._name_queues(groups))
        for job in jobs:  # what later calls of these queues' flows reach
            links = [*job.job.get("fc", []), *(pid for pid, _ in job.job.get("fp", []))]
            self._relate(job.queue, (split_id(link)[1] for link in links))
        keys, plan = self._enqueue_call(groups, dep_queues)
        now = self._now_ms()
        try:
            reply = await ENQUEUE.run(self.store, keys, str(now), plan)
        except IdempotencyConflictError as exc:  # the script names the item: "jobs[<index>]"
            raise IdempotencyConflictError(
                "this idempotency key was already used for a different request",
                field=f"{exc.message}.idempotency_key",
            ) from exc
        except SingletonConflictError as exc:  # "jobs[<index>] <holder's job id>"
            item, _, holder = exc.message.partition(" ")
            raise SingletonConflictError(
                f"job {holder} with this singleton key is waiting or running",
                field=f"{item}.singleton_key",
                job_id=holder,
            ) from exc
        except (JobNotFoundError, ValidationError) as exc:  # "jobs[<index>].depends_on[<k>] <why>"
            named = _DEPENDENCY_ERROR.match(exc.message)
            if named is None:
                raise
            where = jobs[int(named[1])].where
            raise ValidationError(named[3], field=f"{where}{named[2]}") from exc
        results = []
        for planned, item in zip(jobs, reply["r"], strict=True):
            if item[0] == 1:
                fields = {"d": planned.job["d"], "m": item[2]}
                if item[3]:
                    fields["f"] = item[3]
                if "fp" in planned.job:
                    fields["p"] = dumps(planned.job["fp"])
                created = decode_job(job_id(planned.job["u"], planned.queue), fields, now)
                results.append(EnqueueResult(job=created, created=True))
            elif item[0] == 2:  # joined the debounced job waiting under its key
                fields = {"d": planned.job["d"], "m": item[2]}
                joined = decode_job(job_id(item[1], planned.queue), fields, now)
                results.append(EnqueueResult(job=joined, created=False, debounced=True))
            else:
                existing = decode_job(item[1], as_fields(item[2]), now)
                results.append(EnqueueResult(job=existing, created=False))
        return EnqueueReply(results=results, triggers=list(reply["t"] or []))

    def _enqueue_call(
        self, groups: dict[str, list[PlannedJob]], dep_queues: set[str]
    ) -> tuple[list[str], EnqueuePlan]:
        """enqueue.lua's KEYS and plan: each queue's block (those of dependencies too), then every other
        key once (the plan points at them by position)."""
        blocks = [*groups, *sorted(dep_queues - set(groups))]
        keys: list[str] = []
        extra: dict[str, int] = {}

        def at(key: str | None) -> int:
            if key is None:
                return 0
            if key not in extra:
                extra[key] = len(extra)
            return extra[key] + 1 + len(blocks) * len(BLOCK)

        plan_groups: list[EnqueueGroup] = []
        for base, queue in enumerate(blocks):
            keys += self._qk(queue).block()
            members = groups.get(queue, [])
            for member in members:
                member.job["ik"] = at(member.idempotency)
                member.job["ix"] = [at(key) for key in member.listings]
            if members:
                plan_groups.append({"q": queue, "b": base * len(BLOCK), "jobs": [m.job for m in members]})
        keys += list(extra)
        plan: EnqueuePlan = {
            "w": ms(self.idempotency_window),
            "tr": ms(TRIGGER_TTL),
            "cap": LISTING_CAP,
            "g": plan_groups,
            "fq": [(queue, base * len(BLOCK)) for base, queue in enumerate(blocks)],
        }
        return keys, plan

    # -- consume -------------------------------------------------------------------------------

    async def due(self) -> dict[str, float]:
        """Queues with work, mapped to the earliest time (epoch seconds) they have some. One read of the
        queues' due keys (one per queue on a cluster), after the set of queues every QUEUES_TTL.

        Work means a waiting job, a delayed job's run-at time or an active job's lease deadline (to
        reap); a rate-limited queue shows the end of its window; paused queues are absent. Times may
        be in the future: compare with the current time to pick what is ready now.
        """
        queues = await self.tick_queues()
        keys = [self._qk(queue).due() for queue in queues]
        if not keys:
            return {}
        if self.cluster:
            values = await self.store.pipeline([["GET", key] for key in keys])
        else:
            values = await self.store.command("MGET", *keys)
        return {queue: float(value) / 1000 for queue, value in zip(queues, values, strict=True) if value}

    async def tick_queues(self) -> list[str]:
        """The queues a tick looks at: the ones this engine speaks for (its registry's: a consumer sees a
        new queue of its own types at once), the ones it submitted to, and the set of queues, read again
        after QUEUES_TTL (a queue no type of this engine names is seen within that time)."""
        held = self._queue_list
        if held is None or time.monotonic() - held[0] > QUEUES_TTL:
            names = await self.store.command("SMEMBERS", self.keys.queues()) or []
            held = self._queue_list = (time.monotonic(), sorted(names))
        return sorted({*held[1], *self._named, *self._known_queues})

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
        and a claim that takes jobs clears that lane's pending trigger for the queue (lane=None, a
        worker serving every lane: every lane's), so the next submit asks for a new consumer run. A
        paused or empty queue returns [] (one inner read).
        """
        args = await self._claim_args(queue, n, lease, max_timeout, lane)

        async def call(keys: list[str], fq: FlowQueues) -> Any:
            args["fq"] = fq
            return await CLAIM.run(self.store, keys, self._now_arg(), args)

        reply = await self._flowing(queue, call)
        claimed = self._claimed(queue, reply)
        if reply.get("sd") and await self._fire(queue, reply) and len(claimed) < n:
            # The jobs just fired, in the room left (schedules this claim finds due wait for the next).
            args["n"], args["nonce"] = n - len(claimed), secrets.token_hex(8)
            claimed += self._claimed(queue, await self._flowing(queue, call))
        return claimed

    async def finish_and_claim(
        self,
        outcomes: Sequence[Outcome],
        queue: str,
        n: int,
        *,
        max_timeout: float | None = None,
        lane: str | None = None,
    ) -> tuple[list[FinishResult], list[ClaimedJob]]:
        """`finish(outcomes)` then `claim(queue, n, ...)`: a consumer's refill in one round trip instead
        of two. The outcomes of `queue`'s jobs and the claim are one atomic call (its finish frees the
        slots its claim then fills); outcomes of other queues' jobs go at the same time, one call each."""
        mine = [o for o in outcomes if _queue_of(o.job_id) == queue]
        if not mine:
            finished, claimed = await asyncio.gather(
                self.finish(outcomes), self.claim(queue, n, max_timeout=max_timeout, lane=lane)
            )
            return finished, claimed
        others = [o for o in outcomes if _queue_of(o.job_id) != queue]
        plan, extra = await self._finish_plan(queue, mine)
        args = await self._claim_args(queue, n, None, max_timeout, lane)

        async def call(keys: list[str], fq: FlowQueues) -> Any:
            plan["fq"] = args["fq"] = fq
            plan["uk"] = len(keys) + 1 if extra else 0  # the usage hash goes after every block
            return await CYCLE.run(self.store, [*keys, *extra], self._now_arg(), (plan, args))

        cycle, rest = await asyncio.gather(self._flowing(queue, call), self.finish(others))
        finished, claimed = cycle
        claimed_jobs = self._claimed(queue, claimed)
        if claimed.get("sd"):  # fired now; the consumer reads the due keys again and claims them
            await self._fire(queue, claimed)
        mine_results = iter(self._finished(mine, finished))
        other_results = iter(rest)
        results = [next(mine_results if _queue_of(o.job_id) == queue else other_results) for o in outcomes]
        return results, claimed_jobs

    async def _claim_args(
        self, queue: str, n: int, lease: float | None, max_timeout: float | None, lane: str | None
    ) -> ClaimPlan:
        """claim.lua's plan (checked here, so the script needs not)."""
        self._check_queue(queue)
        if not 1 <= n <= MAX_BATCH:
            raise ValidationError(f"claim 1 to {MAX_BATCH} jobs", field="n")
        if lease is not None and not 0 < lease <= 7 * 86400:
            raise ValidationError("lease must be in (0, 7 days]", field="lease")
        if lane is not None:
            max_timeout = self._lane_limit(lane) if max_timeout is None else max_timeout
        if max_timeout is not None and not max_timeout > 0:
            raise ValidationError("max_timeout must be > 0", field="max_timeout")
        await self._ensure_policies([queue])
        return {
            "n": n,
            "lease": -1 if lease is None else ms(lease),
            "margin": ms(self.lease_margin),
            "nonce": secrets.token_hex(8),
            "max_timeout": -1 if max_timeout is None else float(max_timeout),
            "lanes": [lane or "*"],
        }

    async def _fire(self, queue: str, reply: Any) -> bool:
        """Fire the schedules a claim found due (`sd`: their records) in one call (shared/scheduler.py);
        False when it failed (logged: the jobs the claim took still run, and the queue stays due)."""
        try:
            await self.scheduler.fire(queue, reply["sd"], int(reply["now"]))
        except JobqError as exc:
            log.warning("firing the schedules of queue %s failed: %s", queue, exc)
            return False
        return True

    def _claimed(self, queue: str, reply: Any) -> list[ClaimedJob]:
        claimed = [
            ClaimedJob(
                job=decode_job(job_id(unique, queue), as_fields(flat), int(reply["now"])),
                token=token,
                lease_until=dt(until) or datetime.now(UTC),
            )
            for unique, token, until, flat in reply["j"] or []
        ]
        for c in claimed:  # its finish will tell the jobs waiting on it
            self._relate(queue, (split_id(link.id)[1] for link in c.job.parents))
        return claimed

    async def book_wake(self, lane: str, at: float) -> bool:
        """Book a delayed wake-up of `lane`'s consumer at `at` (epoch seconds). One script call.

        True: the caller should publish one (no wake is pending for the lane, or the pending one is
        later than `at`, which is now recorded instead). False: a wake at or before `at` is pending.
        A pending wake is forgotten once its time has passed, so a lost one never blocks later ones.
        """
        self._lane_limit(lane)
        return bool(await WAKE.run(self.store, [self.keys.wake(lane)], self._now_arg(), {"at": ms(at)}))

    async def finish(self, outcomes: Sequence[Outcome]) -> list[FinishResult]:
        """Record outcomes (any queues: one call per queue, sent at once); stale tokens change nothing and
        come back ok=False.

        Re-sending an outcome that was already applied (same token) reports ok=True and changes
        nothing. `state` is the job's state after the call (delayed for a scheduled retry).
        """
        if not outcomes:
            return []

        async def one(queue: str, group: list[Outcome]) -> list[FinishResult]:
            plan, extra = await self._finish_plan(queue, group)

            async def call(keys: list[str], fq: FlowQueues) -> Any:
                plan["fq"] = fq
                plan["uk"] = len(keys) + 1 if extra else 0  # the usage hash goes after every block
                return await FINISH.run(self.store, [*keys, *extra], self._now_arg(), plan)

            return self._finished(group, await self._flowing(queue, call))

        return await _per_queue(outcomes, one)

    async def _finish_plan(self, queue: str, outcomes: Sequence[Outcome]) -> tuple[FinishPlan, list[str]]:
        """finish.lua's plan (JSON), each outcome checked (a result that is not JSON is refused), and the
        keys it needs beyond the queue's block: the queue's usage hash of the month when usage rides along
        (the month and day of the caller's clock, UTC)."""
        if len(outcomes) > MAX_BATCH:
            raise ValidationError(f"at most {MAX_BATCH} outcomes per call", field="outcomes")
        plan_outcomes: list[FinishOutcome] = []
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
                    "id": split_id(o.job_id)[0],
                    "k": o.token,
                    "st": o.status,
                    "r": result,
                    "e": error,
                    "ra": None if o.retry_after is None else ms(o.retry_after),
                    "p": o.progress,
                    "g": _bound_logs(o.logs),
                    "us": None if o.usage is None else usage_plan(o.usage),
                    "ch": o.cache,
                }
            )
            if o.status == "sleep":
                plan_outcomes[-1]["sn"] = dumps(o.step or "sleep")
        await self._ensure_policies()
        plan: FinishPlan = {"o": plan_outcomes, "u": jitter_draw(), "uk": 0, "ud": "", "ux": USAGE_KEEP_MS}
        extra: list[str] = []
        if any(o.usage is not None for o in outcomes):
            day = datetime.fromtimestamp(self._now_ms() / 1000, UTC).date()
            extra = [self._qk(queue).usage(month_of(day))]
            plan["ud"] = f"{day.day:02d}"
        return plan, extra

    @staticmethod
    def _finished(outcomes: Sequence[Outcome], reply: Any) -> list[FinishResult]:
        return [
            FinishResult(
                job_id=o.job_id, ok=ok == 1, state=State(state) if state else None, delivery=bool(more)
            )
            for o, (ok, state, *more) in zip(outcomes, reply, strict=True)
        ]

    async def extend(self, leases: Sequence[Lease], seconds: float) -> list[LeaseStatus]:
        """Heartbeat: each lease ends `seconds` from now (Redis clock). Reports cancel requests.
        One call per queue, sent at once."""
        if not 0 < seconds <= 7 * 86400:
            raise ValidationError("seconds must be in (0, 7 days]", field="seconds")

        async def one(queue: str, group: list[Lease]) -> list[LeaseStatus]:
            plan: ExtendPlan = {"ms": ms(seconds), "leases": _leases(group)}
            reply = await EXTEND.run(*self._on(queue), plan)
            return [
                LeaseStatus(job_id=lease.job_id, ok=ok == 1, cancel_requested=cancel == 1)
                for lease, (ok, cancel) in zip(group, reply, strict=True)
            ]

        return await _per_queue(leases, one)

    async def step(self, lease: Lease, name: str, result: str) -> bool:
        """Record a durable step of a running job: `result` is its JSON text. One script call, fenced by
        the lease token like an outcome; a step already recorded under `name` stays as it was.

        False when the token no longer holds (the lease was lost): nothing is recorded. PayloadTooLargeError
        when the job's steps would pass MAX_STEPS or MAX_STEPS_BYTES.
        """
        unique, queue = split_id(_valid_id(lease.job_id))
        plan: StepPlan = {"id": unique, "k": lease.token, "n": dumps(name), "r": result}
        ok, _count = await retrying(lambda: STEP.run(*self._on(queue), plan))
        return bool(ok)

    async def report(self, updates: Sequence[ProgressUpdate]) -> list[LeaseStatus]:
        """Progress and log lines of many running jobs, fenced by token: one call per queue, sent at once.

        Logs keep the last MAX_LOG_LINES lines of at most MAX_LOG_LINE_BYTES each.
        """

        async def one(queue: str, group: list[ProgressUpdate]) -> list[LeaseStatus]:
            items: list[ProgressItem] = [
                {"id": split_id(u.job_id)[0], "k": u.token, "p": u.progress, "g": _bound_logs(u.logs)}
                for u in group
            ]
            reply = await REPORT.run(*self._on(queue), {"u": items})
            return [
                LeaseStatus(job_id=u.job_id, ok=ok == 1, cancel_requested=cancel == 1)
                for u, (ok, cancel) in zip(group, reply, strict=True)
            ]

        return await _per_queue(updates, one)

    async def release(self, leases: Sequence[Lease]) -> list[FinishResult]:
        """Hand claimed-but-unstarted jobs back to waiting at once, attempt not counted.

        They go to the front of their priority level. Fenced like finish.
        """

        async def one(queue: str, group: list[Lease]) -> list[FinishResult]:
            reply = await RELEASE.run(*self._on(queue), {"leases": _leases(group)})
            return [
                FinishResult(job_id=lease.job_id, ok=ok == 1, state=State(state) if state else None)
                for lease, (ok, state) in zip(group, reply, strict=True)
            ]

        return await _per_queue(leases, one)

    # -- manage --------------------------------------------------------------------------------

    async def cancel(self, job_id: str, *, owner: str | None = None) -> Job:
        """Waiting/delayed: cancelled now. Active: cancel_requested set. Owner mismatch: not found.

        A terminal job is returned unchanged.
        """
        unique, queue = split_id(_valid_id(job_id))
        await self._ensure_policies()

        async def call(keys: list[str], fq: FlowQueues) -> Any:
            return await CANCEL.run(
                self.store, keys, self._now_arg(), {"id": unique, "owner": owner or "", "fq": fq}
            )

        reply = await self._flowing(queue, call)
        return decode_job(job_id, as_fields(reply["j"]), int(reply["now"]))

    async def retry(self, job_id: str, *, owner: str | None = None) -> Job:
        """A failed or cancelled job back to waiting (attempts reset, errors and logs kept).

        Any other state: InvalidTransitionError.
        """
        unique, queue = split_id(_valid_id(job_id))

        async def call(keys: list[str], fq: FlowQueues) -> Any:
            plan: RerunPlan = {"mode": "job", "id": unique, "owner": owner or "", "fq": fq}
            return await RERUN.run(self.store, keys, self._now_arg(), plan)

        reply = await self._flowing(queue, call)
        return decode_job(job_id, as_fields(reply["j"]), int(reply["now"]))

    async def retry_failed(self, queue: str, *, limit: int = 1000) -> int:
        """Up to `limit` (<= 1000) jobs of the dead-letter set back to waiting; call again for more."""
        self._check_queue(queue)
        if not 1 <= limit <= MAX_BATCH:
            raise ValidationError(f"limit must be 1-{MAX_BATCH}", field="limit")

        async def call(keys: list[str], fq: FlowQueues) -> Any:
            plan: RerunPlan = {"mode": "queue", "limit": limit, "fq": fq}
            return await RERUN.run(self.store, keys, self._now_arg(), plan)

        return int(await self._flowing(queue, call))

    async def pause(self, queue: str) -> None:
        """Claims return nothing and the queue has no due time until resumed."""
        await self._ensure_policies([self._check_queue(queue)])
        await PAUSE.run(*self._on(queue), {"paused": True})

    async def resume(self, queue: str) -> None:
        await PAUSE.run(*self._on(self._check_queue(queue)), {"paused": False})

    async def clean(self, queue: str, state: State, *, older_than: float, limit: int = 1000) -> int:
        """Delete up to `limit` jobs of a terminal state that finished more than `older_than` s ago."""
        self._check_queue(queue)
        if State(state).value not in TERMINAL_INDEXES:
            raise ValidationError("only completed, failed or cancelled jobs can be cleaned", field="state")
        if older_than < 0:
            raise ValidationError("older_than must be >= 0", field="older_than")
        if not 1 <= limit <= 10_000:
            raise ValidationError("limit must be 1-10000", field="limit")
        plan: CleanPlan = {"state": State(state).value, "older_than": ms(older_than), "limit": limit}
        return int(await CLEAN.run(*self._on(queue), plan))

    async def obliterate(self, queue: str) -> None:
        """Delete a queue and every job in it (tests and admins; unbounded work in one script), then
        drop it from the set of queues."""
        await OBLITERATE.run(*self._on(self._check_queue(queue)), {})
        await self.store.command("SREM", self.keys.queues(), queue)
        self._named.discard(queue)
        self._queue_list = None

    # -- read ----------------------------------------------------------------------------------

    async def get(self, job_id: str, *, owner: str | None = None) -> Job:
        """The job; JobNotFoundError if missing or (when owner given) owned by someone else. One read."""
        found = await self.get_many([_valid_id(job_id)], owner=owner)
        if not found:
            raise JobNotFoundError("job not found")
        return found[0]

    async def get_many(self, job_ids: Sequence[str], *, owner: str | None = None) -> list[Job]:
        """The jobs that exist (and, when owner is given, are that owner's), in `job_ids` order, the rest
        left out. One read (HMGET) per queue named, sent at once; at most 1000 ids."""
        if len(job_ids) > MAX_BATCH:
            raise ValidationError(f"at most {MAX_BATCH} job ids", field="job_ids")
        by_queue = _ids_by_queue(job_ids)

        async def read(queue: str, ids: list[str]) -> list[Any]:
            names = [name for job_id in ids for name in _record_fields(split_id(job_id)[0])]
            return list(await self.store.command("HMGET", self._qk(queue).jobs(), *names) or [])

        replies = await asyncio.gather(*(read(queue, ids) for queue, ids in by_queue.items()))
        now = ms(time.time()) if self.clock is None else self._now_ms()
        jobs: dict[str, Job] = {}
        width = len(_RECORD_PARTS)
        for ids, values in zip(by_queue.values(), replies, strict=True):
            for index, one in enumerate(ids):
                chunk = values[index * width : (index + 1) * width]
                fields = {
                    part: value
                    for part, value in zip(_RECORD_PARTS, chunk, strict=False)
                    if value is not None
                }
                if "d" not in fields:
                    continue
                job = decode_job(one, fields, now)
                if owner is None or job.owner == owner:
                    jobs[one] = job
        return [jobs[one] for one in job_ids if one in jobs]

    async def owned_by(self, job_ids: Sequence[str], owner: str, *, tag: str | None = None) -> set[str]:
        """Which of `job_ids` are `owner`'s (under `tag` when given), from the owner's (or tag's) index of
        each queue: one ZMSCORE per queue named, sent at once, and no other owner's record is read."""
        if tag is not None and not _TAG.match(tag):
            raise ValidationError(f"tags must match {TAG_PATTERN}", field="tag")
        by_queue = _ids_by_queue(job_ids)

        async def read(queue: str, ids: list[str]) -> list[str]:
            qk = self._qk(queue)
            index = qk.tag_jobs(owner, tag) if tag is not None else qk.owner_jobs(owner)
            scores = await self.store.command("ZMSCORE", index, *(split_id(i)[0] for i in ids))
            return [job_id for job_id, score in zip(ids, scores or [], strict=False) if score is not None]

        found = await asyncio.gather(*(read(queue, ids) for queue, ids in by_queue.items()))
        return {job_id for ids in found for job_id in ids}

    async def children(self, job: Job) -> list[Job]:
        """The jobs `job` waited for (its flow children, then its depends_on) with their states and
        results, leaving out a failed one whose policy is "ignore". One HMGET per queue among them (at
        most MAX_FLOW_NODES + MAX_DEPENDS_ON jobs), sent at once."""
        jobs = await self.get_many([*job.children, *job.depends_on])
        return [
            j
            for j in jobs
            if j.state is State.COMPLETED
            or not any(link.id == job.id and link.policy == "ignore" for link in j.parents)
        ]

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
    ) -> JobSlice:
        """Jobs of an owner (by tag when given: tag listings are per owner), else of a queue, newest first.

        Owner and tag listings are newest created first (ids are time-ordered), over every queue (one
        call per queue, sent at once, merged) or the one given; a queue listing walks its state indexes
        (the given state, or all of them in STATE_INDEXES order): waiting in claim order, delayed next
        due first, the others newest first. `cursor` is the opaque value of the previous page (None at
        the end). A page may come back short when the filters are sparse (a script scans at most 1000
        entries).
        """
        if not 1 <= limit <= 1000:
            raise ValidationError("limit must be 1-1000", field="limit")
        if type is not None and not _NAME.match(type):
            raise ValidationError(f"type must match {NAME_PATTERN}", field="type")
        if tag is not None and not _TAG.match(tag):
            raise ValidationError(f"tags must match {TAG_PATTERN}", field="tag")
        if queue is not None:
            self._check_queue(queue)
        filters = (State(state).value if state is not None else "", type or "")
        if tag is not None or (owner is not None and queue is None):
            if owner is None:
                raise ValidationError("a tag listing is an owner's: give the owner", field="owner")
            if cursor is not None and not is_unique_id(cursor):
                raise ValidationError("invalid cursor", field="cursor")
            queues = [queue] if queue is not None else await self.queue_names()
            return await self._list_index(queues, owner, tag, cursor, limit, filters)
        if queue is None:
            raise ValidationError("list by owner, queue or tag", field="owner")
        if cursor is not None and not _QUEUE_CURSOR.match(cursor):
            raise ValidationError("invalid cursor", field="cursor")
        plan: ListPlan = {
            "mode": "queue",
            "cursor": cursor or "",
            "limit": limit,
            "state": filters[0],
            "type": filters[1],
            "owner": owner or "",
        }
        reply = await LIST.run(*self._on(queue), plan)
        now = int(reply["now"])
        jobs = [decode_job(job_id(unique, queue), as_fields(flat), now) for unique, flat in reply["j"] or []]
        return JobSlice(jobs=jobs, cursor=reply["c"] or None)

    async def _list_index(
        self,
        queues: list[str],
        owner: str,
        tag: str | None,
        cursor: str | None,
        limit: int,
        filters: tuple[str, str],
    ) -> JobSlice:
        """An owner's (or tag's) listing over `queues`: each queue's page, merged newest first. A queue
        that stopped scanning early bounds the page (nothing older than where it stopped), so the next
        page, from the cursor, misses nothing."""

        async def page(queue: str) -> tuple[str, Any]:
            qk = self._qk(queue)
            index = qk.tag_jobs(owner, tag) if tag is not None else qk.owner_jobs(owner)
            plan: ListPlan = {
                "mode": "index",
                "cursor": cursor or "",
                "limit": limit,
                "state": filters[0],
                "type": filters[1],
                "owner": "",
            }
            return queue, await LIST.run(*self._on(queue, [index]), plan)

        replies = await asyncio.gather(*(page(queue) for queue in queues))
        stops = [reply["c"] for _, reply in replies if reply["c"]]
        bound = max(stops, default="")
        found = sorted(
            (
                (unique, queue, flat, int(reply["now"]))
                for queue, reply in replies
                for unique, flat in reply["j"] or []
            ),
            key=lambda entry: entry[0],
            reverse=True,
        )
        found = [entry for entry in found if entry[0] >= bound]
        jobs = [
            decode_job(job_id(unique, queue), as_fields(flat), now)
            for unique, queue, flat, now in found[:limit]
        ]
        if len(found) > limit:
            next_cursor: str | None = found[limit - 1][0]
        elif bound:
            next_cursor = bound
        else:
            next_cursor = None
        return JobSlice(jobs=jobs, cursor=next_cursor)

    async def stats(self, queue: str) -> QueueStats:
        """Counts per state, paused flag, counters, backlog age, last claim and stall reason of one queue.

        One round trip."""
        [metrics] = await self._metrics([self._check_queue(queue)])
        return QueueStats.model_validate(metrics.model_dump(include=set(QueueStats.model_fields)))

    async def stats_all(self) -> list[QueueStats]:
        """`stats` of every queue that has had a job, sorted by name: the set of queues, then one read of
        them all (one per queue, sent at once, on a cluster)."""
        return [
            QueueStats.model_validate(m.model_dump(include=set(QueueStats.model_fields)))
            for m in await self._metrics(await self.queue_names())
        ]

    async def metrics(self, queues: Sequence[str] | None = None) -> list[QueueMetrics]:
        """Stats plus histograms and per-minute throughput of `queues` (of every queue when None), read
        as `stats_all` does."""
        names = [self._check_queue(q) for q in queues] if queues is not None else await self.queue_names()
        return await self._metrics(names)

    async def _metrics(self, queues: list[str]) -> list[QueueMetrics]:
        """One read-only call for all `queues` (their blocks in KEYS), one per queue on a cluster."""
        if not queues:
            return []
        if self.cluster:
            parts = await asyncio.gather(
                *(STATS.run(*self._on(queue), {"metrics": True}) for queue in queues)
            )
            replies = [entry for part in parts for entry in part]
        else:
            keys = [key for queue in queues for key in self._qk(queue).block()]
            replies = await STATS.run(self.store, keys, self._now_arg(), {"metrics": True})
        result = []
        for queue, entry in zip(queues, replies, strict=True):
            now = int(entry["now"])
            metrics = decode_metrics({**entry, "q": queue}, now)
            metrics.stalled = stall_reason(
                metrics, datetime.fromtimestamp(now / 1000, UTC), self.queue_options(queue)
            )
            result.append(metrics)
        return sorted(result, key=lambda m: m.queue)

    async def queue_names(self) -> list[str]:
        """Every queue that has had a job, sorted. One plain read."""
        return sorted(await self.store.command("SMEMBERS", self.keys.queues()) or [])

    async def events(self, queue: str, *, after: str = "0-0", count: int = 100) -> list[Event]:
        """State changes of a queue's jobs after stream id `after`, oldest first. One read.

        The scripts write one stream entry per call; it expands to one Event per job and state, all
        with the entry's id (pass the last id back as `after`). The stream keeps ~1000 entries.
        """
        self._check_queue(queue)
        _check_stream_id(after)
        _check_count(count)
        entries = await self.store.command(
            "XRANGE", self._qk(queue).events(), f"({after}", "+", "COUNT", count
        )
        return _events_of(queue, entries)

    async def events_since(self, positions: dict[str, str], *, count: int = 100) -> dict[str, list[Event]]:
        """`events` of many queues at once: queue -> stream id to read after. ONE read (XREAD) for all,
        so a live view of every queue costs one command per poll, not one per queue (on a cluster, one
        read per queue: XREAD's streams must share a slot there)."""
        if not positions:
            return {}
        for queue, after in positions.items():
            self._check_queue(queue)
            _check_stream_id(after)
        _check_count(count)
        queues = list(positions)
        if self.cluster:
            pages = await asyncio.gather(*(self.events(q, after=positions[q], count=count) for q in queues))
            return dict(zip(queues, pages, strict=True))
        streams = [self._qk(q).events() for q in queues]
        reply = await self.store.command(
            "XREAD", "COUNT", count, "STREAMS", *streams, *(positions[q] for q in queues)
        )
        by_key = {key: entries for key, entries in reply or []}
        return {q: _events_of(q, by_key.get(key)) for q, key in zip(queues, streams, strict=True)}


def _one_debounce_per_key(jobs: Sequence[PlannedJob]) -> None:
    """A batch names a debounce key once per queue: two of its own submits could not both be the last."""
    seen: set[tuple[str, str]] = set()
    for planned in jobs:
        digest = planned.job.get("db")
        if digest is None:
            continue
        if (planned.queue, digest) in seen:
            raise ValidationError(
                "a batch may hold one job per debounce key", field=f"jobs[{planned.job['i']}].debounce.key"
            )
        seen.add((planned.queue, digest))


# A job record's fields in its queue's jobs hash: the immutable JSON, then state, errors, logs, result,
# durable steps, a flow's links (f, p: flow.lua), usage.
_RECORD_PARTS = ("d", "m", "e", "g", "r", "s", "f", "p", "u")


def _record_fields(unique: str) -> list[str]:
    return [unique, *(f"{unique}:{part}" for part in _RECORD_PARTS[1:])]


def _ids_by_queue(job_ids: Sequence[str]) -> dict[str, list[str]]:
    """Distinct job ids grouped by queue, in first-seen order; JobNotFoundError for a malformed one."""
    groups: dict[str, list[str]] = {}
    for one in dict.fromkeys(job_ids):
        groups.setdefault(split_id(_valid_id(one))[1], []).append(one)
    return groups


def _queue_of(job_id: str) -> str:
    """The queue a job id names; ValidationError for anything that is not a job id."""
    if not is_job_id(job_id):
        raise ValidationError("not a job id", field="job_id")
    return split_id(job_id)[1]


class _HasJobId(Protocol):
    @property
    def job_id(self) -> str: ...


H = TypeVar("H", bound=_HasJobId)
R = TypeVar("R")
P = TypeVar("P")


async def _per_queue(items: Sequence[H], one: Callable[[str, list[H]], Awaitable[list[R]]]) -> list[R]:
    """`one(queue, items of that queue)` for every queue at once; the results in `items` order."""
    groups: dict[str, list[tuple[int, H]]] = {}
    for index, item in enumerate(items):
        groups.setdefault(_queue_of(item.job_id), []).append((index, item))
    replies = await asyncio.gather(*(one(q, [item for _, item in group]) for q, group in groups.items()))
    out: dict[int, R] = {}
    for group, results in zip(groups.values(), replies, strict=True):
        out.update((index, result) for (index, _), result in zip(group, results, strict=True))
    return [out[index] for index in range(len(items))]


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


def _events_of(queue: str, entries: Any) -> list[Event]:
    """Stream entries (id, flat fields: t, then <state> -> unique ids, p -> progress values) as Events:
    one per job and state the entry names."""
    states = {state.value for state in State}
    events = []
    for entry_id, flat in entries or []:
        fields = list(as_fields(flat).items())
        at = dt(dict(fields).get("t")) or datetime.now(UTC)
        for index, (name, value) in enumerate(fields):
            if name not in states:
                continue
            following = fields[index + 1] if index + 1 < len(fields) else ("", "")
            progress = following[1].split() if following[0] == "p" else []
            for i, unique in enumerate(value.split()):
                events.append(
                    Event(
                        id=entry_id,
                        job_id=job_id(unique, queue),
                        state=State(name),
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


def _leases(leases: Sequence[Lease]) -> list[tuple[str, str]]:
    return [(split_id(lease.job_id)[0], lease.token) for lease in leases]


def _bound_logs(lines: Sequence[str]) -> list[str]:
    kept = list(lines)[-MAX_LOG_LINES:]
    return [line.encode()[:MAX_LOG_LINE_BYTES].decode(errors="ignore") for line in kept]


__all__ = ["Engine"]
