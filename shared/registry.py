"""Job types: a name, a pydantic payload model, an async handler and per-type options.

A developer adds one in a few lines:

    class Resize(BaseModel):
        url: str

    @job_type("resize", payload=Resize, max_attempts=5, timeout=60)
    async def resize(payload: Resize, ctx: JobContext) -> dict[str, str]:
        ...

A handler may also be a plain function: it then runs in a worker thread (see docs/consumers.md).
Modules named in JOBQ_JOB_MODULES are imported at start-up so their decorators register the types.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from shared.errors import UnknownJobTypeError, ValidationError
from shared.lanes import Lanes
from shared.models import DEFAULT_PRIORITY, NAME_PATTERN, Backoff, QueueOptions

if TYPE_CHECKING:
    from shared.context import JobContext

Handler = Callable[[Any, "JobContext"], Awaitable[Any] | Any]
H = TypeVar("H", bound=Handler)

BUILTIN_MODULES = ("functions.jobs",)


@dataclass(frozen=True)
class JobType:
    name: str
    payload_model: type[BaseModel]
    handler: Handler
    queue: str
    max_attempts: int = 3
    backoff: Backoff = field(default_factory=Backoff)
    timeout: float = 300.0
    concurrency: int = 10
    priority: int = DEFAULT_PRIORITY
    options: QueueOptions = field(default_factory=QueueOptions)  # retention and rate limit of its queue

    def parse(self, payload: Any) -> BaseModel:
        """Validate a payload against the type's model; the error names the offending field."""
        try:
            return self.payload_model.model_validate(payload)
        except PydanticValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in ("payload", *first["loc"]))
            raise ValidationError(first["msg"], field=where) from exc


@dataclass(frozen=True)
class QueuePolicy:
    """How consumers treat one queue, derived from the types on it by one rule (`Registry.policy`)."""

    timeout: float = 300.0  # the longest timeout of its types: what a claim must leave room for
    concurrency: int = 10  # jobs of the queue one process runs at once: the sum over its types
    options: QueueOptions = field(default_factory=QueueOptions)  # identical for every type on it


DEFAULT_POLICY = QueuePolicy()


class Registry:
    def __init__(self) -> None:
        self._types: dict[str, JobType] = {}

    def register(self, job: JobType) -> JobType:
        if not re.fullmatch(NAME_PATTERN, job.name) or not re.fullmatch(NAME_PATTERN, job.queue):
            raise ValueError(f"job type and queue names must match {NAME_PATTERN}: {job.name!r}")
        for other in self._types.values():
            if other.queue == job.queue and other.name != job.name and other.options != job.options:
                raise ValueError(
                    f"job types {other.name!r} and {job.name!r} share queue {job.queue!r} with different "
                    "queue options (retention, rate limit, queue concurrency): give them one QueueOptions"
                )
        self._types[job.name] = job
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

    def get(self, name: str) -> JobType:
        try:
            return self._types[name]
        except KeyError:
            raise UnknownJobTypeError(f"unknown job type {name!r}", field="type") from None

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def types(self) -> list[JobType]:
        return sorted(self._types.values(), key=lambda t: t.name)

    def queues(self) -> list[str]:
        return sorted({t.queue for t in self._types.values()})

    def policy(self, queue: str) -> QueuePolicy:
        """The queue's policy: longest timeout, summed concurrency, shared options (defaults: no type)."""
        types = [t for t in self._types.values() if t.queue == queue]
        if not types:
            return DEFAULT_POLICY
        return QueuePolicy(
            timeout=max(t.timeout for t in types),
            concurrency=sum(t.concurrency for t in types),
            options=types[0].options,  # register() keeps them identical
        )

    def queue_options(self, queue: str) -> QueueOptions:
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
