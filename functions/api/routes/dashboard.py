"""The operator dashboard: `/dashboard` serves a static page (HTML, ES modules, CSS) that needs no
credentials. Every piece of data it shows comes from the admin API (/v1/queues, /v1/jobs,
/v1/events/queues), with the admin's credential. See docs/dashboard.md.
"""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.responses import FileResponse, Response

from functions.api.deferred import api_router
from shared.models import TERMINAL_STATES, State

STATIC = Path(__file__).resolve().parent.parent / "static"
MEDIA_TYPES = {".js": "text/javascript", ".css": "text/css"}
# A fixed list read at start-up: no path from a request reaches the file system.
ASSETS = {path.name: MEDIA_TYPES[path.suffix] for path in STATIC.iterdir() if path.suffix in MEDIA_TYPES}
# The page runs only its own scripts and style; job data can never become markup or code.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
# The job states, in lifecycle order, as a module the page imports: the page never keeps its own copy.
STATES_MODULE = (
    f"export const STATES = {json.dumps([state.value for state in State])};\n"
    f"export const TERMINAL = new Set({json.dumps([s.value for s in State if s in TERMINAL_STATES])});\n"
)

router = api_router(include_in_schema=False)


@router.get("/dashboard")
async def dashboard_page() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html", headers=PAGE_HEADERS)


@router.get("/dashboard/states.js")
async def dashboard_states() -> Response:
    return Response(STATES_MODULE, media_type="text/javascript", headers=PAGE_HEADERS)


@router.get("/dashboard/{asset}")
async def dashboard_asset(asset: str) -> Response:
    if asset not in ASSETS:
        return Response(status_code=404)
    return FileResponse(STATIC / asset, media_type=ASSETS[asset], headers=PAGE_HEADERS)
