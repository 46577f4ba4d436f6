"""The routers the app includes, in order, with the path prefixes each answers under: each is imported and
built by the first request under its prefixes (functions/api/deferred.py). Another area adds its router
with one line here; tests/unit/test_api_routers.py checks that every route lies under its prefixes."""

from __future__ import annotations

ROUTERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("functions.api.routes.health", ("/health",)),
    ("functions.api.routes.jobs", ("/v1/jobs",)),
    ("functions.api.routes.flows", ("/v1/flows",)),
    ("functions.api.routes.events", ("/v1/events", "/v1/jobs")),  # a job's stream: /v1/jobs/{id}/events
    ("functions.api.routes.queues", ("/v1/queues",)),
    ("functions.api.routes.keys", ("/v1/keys",)),
    ("functions.api.routes.metrics", ("/metrics",)),
    ("functions.api.routes.dashboard", ("/dashboard",)),
    ("functions.api.routes.tokens", ("/v1/tokens",)),
    ("functions.api.routes.panel", ("/panel",)),
    ("functions.api.routes.schedules", ("/v1/schedules",)),
    ("functions.api.routes.usage", ("/v1/usage",)),
)
