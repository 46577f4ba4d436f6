"""Token usage and cost: totals per owner, queue and day, and per-owner budgets.

A handler records usage with `ctx.record_usage(...)`; the consumer sends it with the job's outcome, and
finish.lua adds it to the job and to the queue's usage hash of the month (keys.QueueKeys.usage) in the same
call, so usage costs no round trip of its own. `UsageBook` reads those totals (GET /v1/usage, budget
checks) and keeps the budgets admins set (docs/ai-jobs.md).

A budget is checked before a job spends (the llm type checks before it calls the provider), against the
totals recorded so far: jobs already running when the budget runs out still finish, so a budget may be
overshot by at most what the jobs running at that moment spend.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.errors import PermanentJobError, ValidationError
from shared.keys import Keys
from shared.models import Usage
from shared.scriptcalls import UsagePlan
from shared.store import Store

USAGE_KEEP_MS = 400 * 86400 * 1000  # a month's usage hash outlives its last write by about 13 months
MAX_USAGE_DAYS = 93  # the longest range one usage read covers
QUEUES_TTL = 30.0  # seconds a budget check trusts its list of queues


def month_of(day: date) -> str:
    """ "YYYY-MM" of a day (zero-padded for any year, which strftime is not on every platform)."""
    return f"{day.year:04d}-{day.month:02d}"


def usage_plan(usage: Usage) -> UsagePlan:
    """Usage as finish.lua adds it: integers only (cost in micro-USD), so sums in Redis stay exact."""
    return {"i": usage.input_tokens, "o": usage.output_tokens, "c": usage.cost_micros, "m": usage.model}


class UsageTotals(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0  # USD
    jobs: int = 0  # attempts that recorded usage

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def add(self, other: UsageTotals) -> None:
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cost = round(self.cost + other.cost, 6)
        self.jobs += other.jobs

    @classmethod
    def parse(cls, text: str | None) -> UsageTotals:
        """A usage hash value: "input output cost_micros jobs" (finish.lua)."""
        parts = [int(p) for p in (text or "").split()] + [0, 0, 0, 0]
        return cls(input_tokens=parts[0], output_tokens=parts[1], cost=parts[2] / 1_000_000, jobs=parts[3])


class DayUsage(UsageTotals):
    day: date


class QueueUsage(UsageTotals):
    queue: str


class UsageReport(BaseModel):
    owner: str
    start: date
    end: date  # inclusive
    total: UsageTotals
    days: list[DayUsage]  # days with usage, oldest first
    queues: list[QueueUsage]  # queues with usage, by name


class Budget(BaseModel):
    """An owner's spending limit over a UTC day or calendar month, in tokens, in USD, or both."""

    model_config = ConfigDict(
        extra="forbid",
        # The schema says what the validator below checks: a number for `tokens` or `cost`, or both.
        json_schema_extra={
            "anyOf": [
                {"required": ["tokens"], "properties": {"tokens": {"type": "integer"}}},
                {"required": ["cost"], "properties": {"cost": {"type": "number"}}},
            ]
        },
    )

    period: Literal["day", "month"]
    tokens: int | None = Field(default=None, ge=1, le=10**15)
    cost: float | None = Field(default=None, gt=0, le=10**9)

    @model_validator(mode="after")
    def _limits_something(self) -> Budget:
        if self.tokens is None and self.cost is None:
            raise ValueError("a budget needs `tokens`, `cost` or both")
        return self

    def exceeded_by(self, spent: UsageTotals) -> str | None:
        """Why `spent` has used this budget up, or None while some of it is left."""
        when = "today" if self.period == "day" else "this month"
        if self.tokens is not None and spent.tokens >= self.tokens:
            return f"{spent.tokens} of {self.tokens} tokens used {when}"
        if self.cost is not None and spent.cost >= self.cost:
            return f"${spent.cost:.6f} of ${self.cost:g} spent {when}"
        return None


class BudgetStatus(BaseModel):
    owner: str
    budget: Budget | None
    spent: UsageTotals | None  # over the budget's current period
    exceeded: bool = False


class BudgetExceededError(PermanentJobError):
    """The job's owner has used up their budget: the job fails at once, without calling the provider."""

    code = "budget_exceeded"


def last_days(end: date, days: int) -> tuple[date, date]:
    """The range of `days` days ending with `end` (cut at the first representable day)."""
    try:
        return end - timedelta(days=days - 1), end
    except OverflowError:
        return date.min, end


def days_between(start: date, end: date) -> list[date]:
    if end < start:
        raise ValidationError("`start` is after `end`", field="start")
    count = (end - start).days + 1
    if count > MAX_USAGE_DAYS:
        raise ValidationError(f"at most {MAX_USAGE_DAYS} days per read", field="start")
    return [start + timedelta(days=i) for i in range(count)]


class UsageBook:
    """Reads of the usage totals and the budgets. Counts the commands it sends (`commands`)."""

    def __init__(
        self,
        store: Store,
        keys: Keys,
        *,
        budget_ttl: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.store, self.keys = store, keys
        self.budget_ttl = budget_ttl
        self._clock, self._wall = clock, wall
        self._budgets: dict[str, tuple[float, Budget | None]] = {}
        self._queues: tuple[float, list[str]] | None = None
        self.commands = 0

    # -- totals --------------------------------------------------------------------------------

    async def report(self, owner: str, start: date, end: date, queues: Iterable[str]) -> UsageReport:
        """An owner's usage per day and per queue from `start` to `end` (UTC days, inclusive). One HMGET
        per queue and month of the range, sent in one pipeline."""
        days = days_between(start, end)
        months: dict[str, list[date]] = {}
        for day in days:
            months.setdefault(month_of(day), []).append(day)
        reads = [(queue, month_days) for queue in sorted(set(queues)) for month_days in months.values()]
        commands: list[list[str]] = [
            ["HMGET", self.keys.queue(queue).usage(month_of(month_days[0]))]
            + [f"{day.day:02d}|{owner}" for day in month_days]
            for queue, month_days in reads
        ]
        replies = await self._pipeline(commands)
        total = UsageTotals()
        per_day: dict[date, DayUsage] = {}
        per_queue: dict[str, QueueUsage] = {}
        for (queue, month_days), values in zip(reads, replies, strict=True):
            for day, value in zip(month_days, values or [], strict=False):
                if value is None:
                    continue
                totals = UsageTotals.parse(value)
                total.add(totals)
                per_day.setdefault(day, DayUsage(day=day)).add(totals)
                per_queue.setdefault(queue, QueueUsage(queue=queue)).add(totals)
        return UsageReport(
            owner=owner,
            start=start,
            end=end,
            total=total,
            days=[per_day[d] for d in sorted(per_day)],
            queues=[per_queue[q] for q in sorted(per_queue)],
        )

    async def spent(self, owner: str, period: Literal["day", "month"], *, fresh: bool = False) -> UsageTotals:
        """What `owner` has spent over every queue in the current UTC day or month: one HGET per queue,
        in one pipeline (and the list of queues, read at most every QUEUES_TTL seconds unless `fresh`)."""
        now = datetime.fromtimestamp(self._wall(), UTC)
        field = f"{now.day:02d}|{owner}" if period == "day" else f"M|{owner}"
        queues = await self._queue_names(fresh)
        month = month_of(now.date())
        replies = await self._pipeline([["HGET", self.keys.queue(q).usage(month), field] for q in queues])
        total = UsageTotals()
        for value in replies:
            if value is not None:
                total.add(UsageTotals.parse(value))
        return total

    # -- budgets -------------------------------------------------------------------------------

    async def budget(self, owner: str, *, fresh: bool = False) -> Budget | None:
        """The owner's budget (None: none), trusted for `budget_ttl` seconds unless `fresh`. One HGET."""
        held = self._budgets.get(owner)
        if held is not None and not fresh and self._clock() - held[0] < self.budget_ttl:
            return held[1]
        self.commands += 1
        text = await self.store.command("HGET", self.keys.budgets(), owner)
        budget = None if text is None else Budget.model_validate_json(text)
        if len(self._budgets) > 10_000:  # a bounded cache: forget everything rather than grow
            self._budgets.clear()
        self._budgets[owner] = (self._clock(), budget)
        return budget

    async def set_budget(self, owner: str, budget: Budget | None) -> None:
        """Set (or, with None, remove) an owner's budget. One command."""
        self.commands += 1
        if budget is None:
            await self.store.command("HDEL", self.keys.budgets(), owner)
        else:
            await self.store.command("HSET", self.keys.budgets(), owner, budget.model_dump_json())
        self._budgets.pop(owner, None)

    async def status(self, owner: str) -> BudgetStatus:
        budget = await self.budget(owner, fresh=True)
        if budget is None:
            return BudgetStatus(owner=owner, budget=None, spent=None)
        spent = await self.spent(owner, budget.period, fresh=True)
        return BudgetStatus(owner=owner, budget=budget, spent=spent, exceeded=bool(budget.exceeded_by(spent)))

    async def check(self, owner: str) -> None:
        """Raise BudgetExceededError when the owner has used up their budget. No spend read without one."""
        budget = await self.budget(owner)
        if budget is None:
            return
        reason = budget.exceeded_by(await self.spent(owner, budget.period))
        if reason is not None:
            raise BudgetExceededError(f"budget_exceeded: {reason}")

    # -- helpers -------------------------------------------------------------------------------

    async def _queue_names(self, fresh: bool) -> list[str]:
        if not fresh and self._queues is not None and self._clock() - self._queues[0] < QUEUES_TTL:
            return self._queues[1]
        self.commands += 1
        names = sorted(await self.store.command("SMEMBERS", self.keys.queues()) or [])
        self._queues = (self._clock(), names)
        return names

    async def _pipeline(self, commands: list[list[str]]) -> list[Any]:
        if not commands:
            return []
        self.commands += len(commands)
        if len(commands) == 1:
            return [await self.store.command(*commands[0])]
        return await self.store.pipeline(list(commands))
