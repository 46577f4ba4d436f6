"""/panel: the embeddable jobs panel (`<jobq-jobs>`) and the JavaScript client it is built on, as static
native ES modules (no build step). Another site loads them cross-origin (CORS: `cors_origins`); see
docs/panel.md."""

from __future__ import annotations

from pathlib import Path

from fastapi.responses import FileResponse, Response

from functions.api.deferred import api_router

STATIC = Path(__file__).resolve().parent.parent / "static" / "panel"
ASSETS = {"jobq-client.js": "text/javascript", "jobq-jobs.js": "text/javascript"}
HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "public, max-age=300"}

router = api_router(include_in_schema=False)


@router.get("/panel/{asset}")
async def panel_asset(asset: str) -> Response:
    if asset not in ASSETS:  # a fixed list: no path from the request reaches the file system
        return Response(status_code=404)
    return FileResponse(STATIC / asset, media_type=ASSETS[asset], headers=HEADERS)
