"""Job types: a name, a pydantic payload model, an async handler and per-type options.

A developer adds one in a few lines:

    class Resize(BaseModel):
        url: str

    @job_type("resize", payload=Resize, max_attempts=5, timeout=60)
    async def resize(payload: Resize, ctx: JobContext) -> dict[str, str]:
        ...

A handler may also be a plain function: it then runs in a worker thread (see docs/consumers.md).
Modules named in JOBQ_JOB_MODULES are imported at start-up so their decorators register the types.

Several types may share a queue; `Registry.policy(queue)` combines them by one rule (see QueuePolicy).

Hooks let backend code act when a job of a type ends, after its outcome is recorded (at least once; an
error is logged, never retried; see shared/callbacks.py):

    @on_complete("resize")
    async def store_thumbnail(job: Job) -> None:
        ...
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, SecretBytes, SecretStr
from pydantic import ValidationError as PydanticValidationError

from shared.errors import UnknownJobTypeError, ValidationError, validation_message
from shared.lanes import Lanes
from shared.models import NAME_PATTERN, TERMINAL_STATES, Backoff, Debounce, Job, JobSpec, QueueOptions, State
from shared.priorities import DEFAULT_PRIORITY

if TYPE_CHECKING:
    from shared.context import JobContext

Handler = Callable[[Any, "JobContext"], Awaitable[Any] | Any]
H = TypeVar("H", bound=Handler)
Hook = Callable[[Job], Awaitable[None] | None]
K = TypeVar("K", bound=Hook)

BUILTIN_MODULES = ("functions.jobs",)
DEFAULT_TIMEOUT = 300.0  # seconds, of a type that sets none (and of a queue no type names)
DEFAULT_CONCURRENCY = 10


def _invalid(exc: PydanticValidationError, *prefix: str) -> ValidationError:
    """pydantic's first error as ours: the field as a dotted path (under `prefix`), the caller's message."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in (*prefix, *first["loc"]))
    return ValidationError(validation_message(first), field=where or None)


@dataclass(frozen=True)
class JobType:
    name: str
    payload_model: type[BaseModel]
    handler: Handler
    queue: str
    max_attempts: int = 3
    backoff: Backoff = field(default_factory=Backoff)
    timeout: float = DEFAULT_TIMEOUT
    concurrency: int = DEFAULT_CONCURRENCY
    priority: int = DEFAULT_PRIORITY
    options: QueueOptions = field(default_factory=QueueOptions)  # its queue's; all types on it agree
    # Functions called with the finished Job, per final state (Registry.on_complete and friends).
    hooks: dict[State, list[Hook]] = field(default_factory=dict, compare=False)

    def parse(self, payload: Any) -> BaseModel:
        """Validate a payload against the type's model; the error names the offending field."""
        try:
            return self.payload_model.model_validate(payload)
        except PydanticValidationError as exc:
            raise _invalid(exc, "payload") from exc

    def spec(
        self,
        payload: Any,
        *,
        owner: str,
        priority: int | None = None,
        run_at: datetime | None = None,
        delay: float = 0.0,
        max_attempts: int | None = None,
        backoff: Backoff | None = None,
        timeout: float | None = None,
        idempotency_key: str | None = None,
        metadata: dict[str, Any] | None = None,
        tags: list[str] | None = None,
        singleton_key: str | None = None,
        debounce: Debounce | None = None,
        callback_url: str | None = None,
    ) -> JobSpec:
        """The engine's spec for a job of this type: the payload checked against its model (kept with its
        secrets, which the handler needs), and this type's defaults for whatever the caller leaves out.
        ValidationError names the offending field."""
        fields: dict[str, Any] = {
            "type": self.name,
            "payload": self.stored_payload(self.parse(payload)),
            "queue": self.queue,
            "owner": owner,
            "priority": self.priority if priority is None else priority,
            "run_at": run_at,
            "delay": delay,
            "max_attempts": max_attempts or self.max_attempts,
            "backoff": backoff or self.backoff,
            "timeout": timeout or self.timeout,
            "idempotency_key": idempotency_key,
            "metadata": metadata or {},
            "tags": tags or [],
            "singleton_key": singleton_key,
            "debounce": debounce,
            "callback_url": callback_url,
            "notify": bool(self.hooks),
        }
        try:
            return JobSpec(**fields)
        except PydanticValidationError as exc:
            raise _invalid(exc) from exc

    @cached_property
    def has_secrets(self) -> bool:
        """Whether the payload model has a SecretStr or SecretBytes field (at any depth)."""
        return _marks_secret(self.payload_model.model_json_schema())

    def stored_payload(self, payload: BaseModel) -> Any:
        """The parsed payload as the job record keeps it: JSON, secrets in clear (the handler needs them)."""
        public = payload.model_dump(mode="json", by_alias=True)
        if not self.has_secrets:
            return public
        return _reveal(public, payload.model_dump(by_alias=True))

    def public_payload(self, stored: Any) -> Any:
        """A stored payload as reads show it: every secret field masked. A stored payload the model no
        longer accepts is hidden whole rather than risk showing a secret."""
        if not self.has_secrets:
            return stored
        try:
            return self.payload_model.model_validate(stored).model_dump(mode="json", by_alias=True)
        except PydanticValidationError:
            return None


def _marks_secret(schema: Any) -> bool:
    """pydantic renders SecretStr/SecretBytes as `writeOnly` in the JSON schema, nested models under $defs."""
    if isinstance(schema, dict):
        return schema.get("writeOnly") is True or any(_marks_secret(v) for v in schema.values())
    if isinstance(schema, list):
        return any(_marks_secret(v) for v in schema)
    return False


def _reveal(public: Any, raw: Any) -> Any:
    """`public` (a JSON dump, secrets masked) with each secret put back from `raw` (the Python dump)."""
    if isinstance(raw, SecretStr):
        return raw.get_secret_value()
    if isinstance(raw, SecretBytes):
        return raw.get_secret_value().decode("utf-8", "surrogateescape")
    if isinstance(raw, dict) and isinstance(public, dict):
        return {key: _reveal(value, raw.get(key)) for key, value in public.items()}
    if isinstance(raw, list | tuple) and isinstance(public, list):
        return [_reveal(value, item) for value, item in zip(public, raw, strict=False)]
    return public


@dataclass(frozen=True)
class QueuePolicy:
    """How one queue is run, combined from the job types on it by one rule:

    - `options` (retention, rate limit, queue-wide concurrency) are the queue's own, so its types must
      agree on them: registering a type whose QueueOptions differ from another type's on the same
      queue raises ValueError naming both;
    - `timeout`: the longest timeout of its types (what a consumer's run must be able to hold);
    - `concurrency`: jobs of the queue one process runs at once, the sum of its types' concurrency;
    - a queue no type names gets the JobType defaults (timeout 300 s, concurrency 10, QueueOptions()).
    """

    queue: str
    types: tuple[str, ...] = ()
    timeout: float = DEFAULT_TIMEOUT
    concurrency: int = DEFAULT_CONCURRENCY
    options: QueueOptions = field(default_factory=QueueOptions)


class Registry:
    def __init__(self) -> None:
        self._types: dict[str, JobType] = {}
        self._policies: dict[str, QueuePolicy] = {}  # a consumer asks for each job

    def register(self, job: JobType) -> JobType:
        """Add (or replace, by name) a job type; ValueError if its queue options disagree (QueuePolicy)."""
        if not re.fullmatch(NAME_PATTERN, job.name) or not re.fullmatch(NAME_PATTERN, job.queue):
            raise ValueError(f"job type and queue names must match {NAME_PATTERN}: {job.name!r}")
        for other in self._types.values():
            if other.queue == job.queue and other.name != job.name and other.options != job.options:
                raise ValueError(
                    f"job types {other.name!r} and {job.name!r} share queue {job.queue!r} with different "
                    f"QueueOptions ({other.options!r} vs {job.options!r}): a queue has one set of options"
                )
        self._types[job.name] = job
        self._policies.clear()
        return job

    def job_type(
        self,
        name: str,
        *,
        payload: type[BaseModel],
        queue: str | None = None,
        **options: Any,
    ) -> Callable[[H], H]:
        """Decorator form of `register`; extra keyword arguments are JobType fields."""

        def decorate(handler: H) -> H:
            job = JobType(name=name, payload_model=payload, handler=handler, queue=queue or name, **options)
            self.register(job)
            return handler

        return decorate

    def on(self, state: State, name: str) -> Callable[[K], K]:
        """Decorator: call the function with the Job once a job of type `name` (registered first) ends in
        `state`. Jobs submitted before the hook existed are not notified (the submit marks a job)."""

        if State(state) not in TERMINAL_STATES:
            raise ValueError(f"hooks run when a job ends: {state!r} is not a final state")

        def decorate(hook: K) -> K:
            self.get(name).hooks.setdefault(State(state), []).append(hook)
            return hook

        return decorate

    def on_complete(self, name: str) -> Callable[[K], K]:
        return self.on(State.COMPLETED, name)

    def on_failed(self, name: str) -> Callable[[K], K]:
        return self.on(State.FAILED, name)

    def on_cancelled(self, name: str) -> Callable[[K], K]:
        return self.on(State.CANCELLED, name)

    def get(self, name: str) -> JobType:
        try:
            return self._types[name]
        except KeyError:
            raise UnknownJobTypeError(f"unknown job type {name!r}", field="type") from None

    def notifies(self, job: Job) -> bool:
        """Whether the job's end brings a delivery job: a callback URL, or hooks on its type."""
        return job.callback_url is not None or (job.type in self._types and bool(self._types[job.type].hooks))

    def public_payload(self, type_name: str, stored: Any) -> Any:
        """A job's payload with its type's secret fields masked (as is for a type this process lacks)."""
        job_type = self._types.get(type_name)
        return stored if job_type is None else job_type.public_payload(stored)

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def types(self) -> list[JobType]:
        return sorted(self._types.values(), key=lambda t: t.name)

    def queues(self) -> list[str]:
        return sorted({t.queue for t in self._types.values()})

    def policy(self, queue: str) -> QueuePolicy:
        """The queue's policy, combined from its types by the rule of QueuePolicy (kept until a register)."""
        policy = self._policies.get(queue)
        if policy is None:
            policy = self._policies[queue] = self._combine(queue)
        return policy

    def _combine(self, queue: str) -> QueuePolicy:
        types = sorted((t for t in self._types.values() if t.queue == queue), key=lambda t: t.name)
        if not types:
            return QueuePolicy(queue=queue)
        return QueuePolicy(
            queue=queue,
            types=tuple(t.name for t in types),
            timeout=max(t.timeout for t in types),
            concurrency=sum(t.concurrency for t in types),
            options=types[0].options,  # every type on the queue has the same (checked at register)
        )

    def queue_options(self, queue: str) -> QueueOptions:
        """`policy(queue).options`: what the engine's `queue_options` callable takes."""
        return self.policy(queue).options

    def check_lanes(self, lanes: Lanes) -> None:
        """Refuse at start-up a type whose timeout no consumer lane can run (it would be starved)."""
        for job in self.types():
            if lanes.lane_for(job.timeout) is None:
                name, limit = lanes.longest
                raise ValueError(
                    f"job type {job.name!r} has timeout={job.timeout:g} s, but the longest consumer lane "
                    f"({name}) runs jobs of up to {limit:g} s: lower the timeout or configure a longer "
                    "lane in JOBQ_LANES (a `jobq worker` on a container serves any length)"
                )

    def load(self, modules: Iterable[str]) -> None:
        for module in (*BUILTIN_MODULES, *modules):
            importlib.import_module(module)


registry = Registry()
job_type = registry.job_type
on_complete = registry.on_complete
on_failed = registry.on_failed
on_cancelled = registry.on_cancelled
