"""Routers built on first use: a Lambda cold start builds only the routes its first request needs.

FastAPI builds a route's dependency tree and its request and response models when the route is declared,
and an included router's routes again when the app first matches them. For a dozen routers that was a
quarter of the API's cold start (docs/benchmarks.md, "Start-up"), paid before the first answer even when
that answer is a 401. Here each router is a stand-in in the app's routes: the first request under one of
its path prefixes imports its module, whose router then answers directly (built once, never included);
requests elsewhere never touch it. The OpenAPI schema builds them all.
"""

from __future__ import annotations

import importlib
import threading
from typing import Any

from fastapi import APIRouter, FastAPI
from starlette._utils import get_route_path
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Match
from starlette.types import Receive, Scope, Send

from functions.api.errors import ERROR_RESPONSES


def api_router(**options: Any) -> APIRouter:
    """Every route module's router: it answers on its own, so it documents the API's errors itself."""
    return APIRouter(responses=ERROR_RESPONSES, **options)


class DeferredRouter(BaseRoute):
    """Stands for `module.router` under `prefixes` (whole path segments) until a request needs it."""

    def __init__(self, module: str, prefixes: tuple[str, ...]) -> None:
        self.module = module
        self.prefixes = prefixes
        self._loaded: APIRouter | None = None
        self._lock = threading.Lock()

    @property
    def router(self) -> APIRouter:
        if self._loaded is None:
            with self._lock:
                if self._loaded is None:
                    self._loaded = importlib.import_module(self.module).router
        return self._loaded

    def owns(self, path: str) -> bool:
        return any(path == prefix or path.startswith(prefix + "/") for prefix in self.prefixes)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http" or not self.owns(get_route_path(scope)):
            return Match.NONE, {}
        return self._match(scope)[0], {}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        match, allowed = self._match(scope)
        if match == Match.FULL:
            await self.router.app(scope, receive, send)
            return
        # Starlette's 405 names the first route's methods; HTTP's Allow names every method of the path.
        raise HTTPException(405, headers={"Allow": ", ".join(sorted(allowed))})

    def _match(self, scope: Scope) -> tuple[Match, set[str]]:
        """FULL when a route answers the request; else PARTIAL with the methods the path takes, or NONE."""
        allowed: set[str] = set()
        for route in self.router.routes:
            match, _ = route.matches(scope)
            if match == Match.FULL:
                return Match.FULL, set()
            if match == Match.PARTIAL:
                allowed |= getattr(route, "methods", None) or set()
        return (Match.PARTIAL if allowed else Match.NONE), allowed

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        return self.router.url_path_for(name, **path_params)


class DeferredAPI(FastAPI):
    """A FastAPI app whose routes may be deferred: its `routes` (read by the OpenAPI schema) are the built
    ones, in order."""

    @property
    def routes(self) -> list[BaseRoute]:
        built: list[BaseRoute] = []
        for route in self.router.routes:
            built.extend(route.router.routes if isinstance(route, DeferredRouter) else [route])
        return built

    def defer(self, module: str, prefixes: tuple[str, ...]) -> None:
        self.router.routes.append(DeferredRouter(module, prefixes))
