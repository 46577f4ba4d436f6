"""The HTTP API function: `create_app(settings)` builds the FastAPI app; routes are thin engine adapters."""

from __future__ import annotations

from typing import Any

from fastapi.middleware.cors import CORSMiddleware

from functions.api.deferred import DeferredAPI
from functions.api.errors import install_error_handlers
from functions.api.middleware import (
    BodyLimitMiddleware,
    RequestIdMiddleware,
    StrictJsonMiddleware,
    SyncTokenMiddleware,
)
from functions.api.routes import ROUTERS
from functions.api.services import build_services
from shared import freshness
from shared.logs import configure_logging
from shared.registry import Registry
from shared.registry import registry as default_registry
from shared.settings import PLACEHOLDER_TOKENS, Settings, get_settings
from shared.triggers import Trigger

MIN_ADMIN_TOKEN_CHARS = 16


class StartupError(RuntimeError):
    """The app refuses to start with an unsafe configuration."""


def check_settings(settings: Settings) -> None:
    token = settings.admin_token.get_secret_value() if settings.admin_token else ""
    if settings.is_local:
        return
    if token.strip().lower() in PLACEHOLDER_TOKENS or len(token) < MIN_ADMIN_TOKEN_CHARS:
        raise StartupError(
            "JOBQ_ADMIN_TOKEN is missing or a placeholder: set a random secret of at least "
            f"{MIN_ADMIN_TOKEN_CHARS} characters (e.g. `openssl rand -hex 32`), or JOBQ_ENV=local to develop"
        )


def create_app(
    settings: Settings | None = None,
    *,
    registry: Registry | None = None,
    redis: Any = None,
    trigger: Trigger | None = None,
) -> DeferredAPI:
    """Build the API. `registry`, `redis` and `trigger` default to what the settings describe."""
    settings = settings or get_settings()
    configure_logging(settings)
    check_settings(settings)
    if registry is None:
        registry = default_registry
        registry.load(settings.job_modules)
    registry.check_lanes(settings.lane_set)  # a type no consumer lane can run is refused here
    app = DeferredAPI(
        title="jobq",
        version="1",
        summary="Serverless background jobs on Upstash Redis.",
    )
    app.state.services = build_services(settings, registry=registry, redis=redis, trigger=trigger)
    install_error_handlers(app)
    for module, prefixes in ROUTERS:
        app.defer(module, prefixes)
    app.add_middleware(SyncTokenMiddleware)  # Jobq-Sync-Token in and out: read-your-writes across instances
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "Idempotency-Key",
                "Last-Event-ID",
                freshness.HEADER,
            ],
            expose_headers=["Location", "Retry-After", "X-Request-ID", freshness.HEADER],
        )
    app.add_middleware(StrictJsonMiddleware)  # inside the body limit: parses only bounded bodies
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestIdMiddleware)  # outermost: every answer, 413s and 500s included, has an id
    return app
