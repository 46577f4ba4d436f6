"""/v1/usage: token usage and cost per day and queue (the caller's own; an admin's of any owner), and
per-owner budgets (read by the owner, set by admins). docs/ai-jobs.md describes both."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated

from fastapi import Query

from functions.api.auth import Principal
from functions.api.deferred import api_router
from functions.api.deps import AdminUser, CurrentUser, EngineDep, ServicesDep
from functions.api.schemas import OWNER_PATTERN
from shared.errors import ForbiddenError
from shared.models import NAME_PATTERN
from shared.usage import MAX_USAGE_DAYS, Budget, BudgetStatus, UsageReport, last_days

router = api_router(prefix="/v1/usage", tags=["usage"])

OwnerQuery = Annotated[
    str | None,
    Query(min_length=1, max_length=128, pattern=OWNER_PATTERN, description="Admins: whose usage."),
]


def _whose(user: Principal, owner: str | None) -> str:
    """The caller's own owner; another's only for an admin."""
    if owner is None or owner == user.owner:
        return user.owner
    if not user.admin:
        raise ForbiddenError("admin credentials required to read another owner's usage")
    return owner


@router.get("")
async def read_usage(
    user: CurrentUser,
    services: ServicesDep,
    engine: EngineDep,
    owner: OwnerQuery = None,
    end: Annotated[date | None, Query(description="Last UTC day, inclusive (default: today).")] = None,
    days: Annotated[
        int | None,
        Query(ge=1, le=MAX_USAGE_DAYS, description="Days up to `end` (default: its month to date)."),
    ] = None,
    queue: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
) -> UsageReport:
    """Tokens, cost and jobs per day and per queue, and their total, over the `days` days ending `end`."""
    end = end or datetime.now(UTC).date()
    start, end = last_days(end, days or end.day)
    queues = [queue] if queue is not None else await engine.queue_names()
    return await services.usage.report(_whose(user, owner), start, end, queues)


@router.get("/budget")
async def read_budget(user: CurrentUser, services: ServicesDep, owner: OwnerQuery = None) -> BudgetStatus:
    """The owner's budget and what they spent in its current period (budget null: none set)."""
    return await services.usage.status(_whose(user, owner))


@router.put("/budget")
async def set_budget(
    body: Budget,
    _: AdminUser,
    services: ServicesDep,
    owner: Annotated[str, Query(min_length=1, max_length=128, pattern=OWNER_PATTERN)],
) -> BudgetStatus:
    """Set an owner's daily or monthly budget in tokens and/or USD (admin). Consumers apply it within
    JOBQ_BUDGET_CACHE_SECONDS."""
    await services.usage.set_budget(owner, body)
    return await services.usage.status(owner)


@router.delete("/budget")
async def delete_budget(
    _: AdminUser,
    services: ServicesDep,
    owner: Annotated[str, Query(min_length=1, max_length=128, pattern=OWNER_PATTERN)],
) -> BudgetStatus:
    """Remove an owner's budget (admin)."""
    await services.usage.set_budget(owner, None)
    return await services.usage.status(owner)
