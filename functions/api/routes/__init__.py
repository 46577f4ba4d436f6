"""The routers the app includes, in order. Another area adds its own router with one line here."""

from __future__ import annotations

from fastapi import APIRouter

from functions.api.routes import (
    dashboard,
    events,
    flows,
    health,
    jobs,
    keys,
    metrics,
    panel,
    queues,
    schedules,
    tokens,
)

ROUTERS: list[APIRouter] = [
    health.router,
    jobs.router,
    flows.router,
    events.router,
    queues.router,
    keys.router,
    metrics.router,
    dashboard.router,
    tokens.router,
    panel.router,
    schedules.router,
]
