"""The embeddable jobs panel in a real browser, as an app's frontend embeds it: Debian's Chromium driven by
Playwright opens a page served from ANOTHER origin (a second local server, with a strict CSP of its own)
that loads `<jobq-jobs>` from the API (CORS) with a browser token the app's backend minted. A real
consumer runs the jobs. The panel sees a job go live from waiting to completed, cancels one, retries one.
"""

from __future__ import annotations

import asyncio
import html
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from functions.api.app import create_app
from shared.context import JobContext
from shared.errors import PermanentJobError
from shared.registry import Registry
from tests.browser.test_dashboard import (
    ARTIFACTS,
    WAIT_MS,
    Message,
    Switches,
    WorkerThread,
    chromium_path,
    wait_state,
)
from tests.support.api_fixtures import ADMIN_HEADERS, ServedApp, gateway_settings

pytestmark = [pytest.mark.browser, pytest.mark.realredis]

ROOM = "session:7"
THEME = "rgb(1, 2, 3)"


def panel_registry(switches: Switches) -> Registry:
    registry = Registry()
    reg = registry.job_type

    @reg("render", payload=Message, queue="panel", timeout=30)
    async def render(payload: Message, ctx: JobContext) -> str:
        await ctx.progress(50)
        await ctx.log(f"rendering {payload.message}")
        released = await asyncio.to_thread(switches.release.wait, 25)
        return "rendered" if released else "gave up"

    @reg("upload", payload=Message, queue="panel", timeout=10, max_attempts=1)
    async def upload(payload: Message, ctx: JobContext) -> str:
        if not switches.heal.is_set():
            raise PermanentJobError("storage said no")
        return "uploaded"

    return registry


class HostSite:
    """The app's own site on another origin: a page that embeds the panel, under a strict CSP (no inline
    script or style; scripts from itself and the jobq API only), and its theme stylesheet."""

    def __init__(self) -> None:
        self.api_url = ""
        self.token = ""
        self.app = Starlette(routes=[Route("/", self.page), Route("/theme.css", self.theme)])

    async def page(self, request: Request) -> Response:
        api = html.escape(self.api_url)
        body = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>My app</title>
<link rel="stylesheet" href="/theme.css">
<script type="module" src="{api}/panel/jobq-jobs.js"></script></head>
<body><h1>My app</h1>
<jobq-jobs api="{api}" token="{html.escape(self.token)}" tag="{ROOM}"></jobq-jobs>
</body></html>"""
        csp = (
            f"default-src 'none'; script-src 'self' {self.api_url}; style-src 'self'; "
            f"connect-src {self.api_url}; base-uri 'none'; form-action 'none'"
        )
        return Response(body, media_type="text/html", headers={"Content-Security-Policy": csp})

    async def theme(self, request: Request) -> Response:
        return Response(f"jobq-jobs {{ --jobq-accent: {THEME}; }}", media_type="text/css")


@pytest.fixture
def sites(real_gateway: Any) -> Iterator[tuple[ServedApp, ServedApp, HostSite, Switches]]:
    switches = Switches()
    registry = panel_registry(switches)
    host = HostSite()
    with ServedApp(host.app) as host_server:
        settings = gateway_settings(
            real_gateway,
            "p" + uuid.uuid4().hex[:16],
            events_poll_seconds=0.1,
            events_max_seconds=3.0,  # the panel's stream reconnects (Last-Event-ID) during the test
            cors_origins=[host_server.url],
        )
        with ServedApp(create_app(settings, registry=registry)) as api, WorkerThread(settings, registry):
            host.api_url = api.url
            yield api, host_server, host, switches
            switches.release.set()


def test_panel_embedded_cross_origin(sites: tuple[ServedApp, ServedApp, HostSite, Switches]) -> None:
    api_server, host_server, host, switches = sites
    executable = chromium_path()
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    expect.set_options(timeout=WAIT_MS)
    with (
        httpx.Client(base_url=api_server.url, headers=ADMIN_HEADERS, timeout=10) as admin,
        sync_playwright() as playwright,
    ):
        key = admin.post("/v1/keys", json={"owner": "alice"}).json()["key"]
        alice = httpx.Client(base_url=api_server.url, headers={"Authorization": f"Bearer {key}"}, timeout=10)
        # The app's backend mints the page's token: alice's jobs of this session, may cancel and retry.
        minted = alice.post("/v1/tokens", json={"tag": ROOM, "scopes": ["submit", "cancel"]})
        assert minted.status_code == 201, minted.text
        host.token = minted.json()["token"]
        browser = playwright.chromium.launch(executable_path=executable)
        page = browser.new_page(viewport={"width": 420, "height": 800})
        problems: list[str] = []
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        page.on("console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None)
        try:
            run_scenario(page, expect, admin, alice, switches, host_server.url)
        finally:
            page.screenshot(path=str(ARTIFACTS / "panel-last.png"), full_page=True)
            browser.close()
            alice.close()
        assert problems == []  # no CSP violation, no CORS failure, no script error


def submit(client: httpx.Client, type_name: str, message: str, *tags: str) -> str:
    body = {"type": type_name, "payload": {"message": message}, "tags": list(tags)}
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == 201, response.text
    job_id: str = response.json()["id"]
    return job_id


def run_scenario(
    page: Any, expect: Any, admin: httpx.Client, alice: httpx.Client, switches: Switches, host: str
) -> None:
    page.goto(host)
    panel = page.locator("jobq-jobs")
    expect(panel.locator(".status")).to_have_text("Live")
    expect(panel.locator(".empty")).to_be_visible()

    # A job goes live from waiting to completed, with its progress and log line on the way.
    assert admin.post("/v1/queues/panel/pause").status_code == 200
    job = submit(alice, "render", "report.pdf <img id=pwned src=x>", ROOM)  # job data is text, not markup
    item = panel.locator(f'li[data-id="{job}"]')
    expect(item.locator(".state")).to_have_text("waiting")
    expect(item.locator(".type")).to_have_text("render")
    assert admin.post("/v1/queues/panel/resume").status_code == 200
    expect(item.locator(".state")).to_have_text("active")
    expect(item.locator("progress")).to_have_js_property("value", 50)
    expect(item.locator("pre")).to_have_text("rendering report.pdf <img id=pwned src=x>")
    assert page.locator("#pwned").count() == 0
    switches.release.set()
    expect(item.locator(".state")).to_have_text("completed")
    expect(item.locator(".cancel")).to_be_hidden()

    # Another session's job of the same user never shows.
    elsewhere = submit(alice, "render", "not here", "session:8")
    wait_state(alice, elsewhere, "completed")

    # Cancel a waiting job from the panel.
    assert admin.post("/v1/queues/panel/pause").status_code == 200
    doomed = submit(alice, "render", "draft.pdf", ROOM)
    doomed_item = panel.locator(f'li[data-id="{doomed}"]')
    expect(doomed_item.locator(".state")).to_have_text("waiting")
    doomed_item.get_by_role("button", name="Cancel").click()
    expect(doomed_item.locator(".state")).to_have_text("cancelled")
    assert alice.get(f"/v1/jobs/{doomed}").json()["state"] == "cancelled"
    assert admin.post("/v1/queues/panel/resume").status_code == 200

    # Retry a failed job from the panel; it then completes live. The theme reaches the shadow DOM.
    failed = submit(alice, "upload", "photo.jpg", ROOM)
    failed_item = panel.locator(f'li[data-id="{failed}"]')
    expect(failed_item.locator(".state")).to_have_text("failed")
    expect(failed_item.locator(".error")).to_have_text("storage said no")
    retry = failed_item.get_by_role("button", name="Retry")
    expect(retry).to_have_css("color", THEME)
    switches.heal.set()
    retry.click()
    expect(failed_item.locator(".state")).to_have_text("completed")
    page.screenshot(path=str(ARTIFACTS / "panel.png"), full_page=True)
    expect(panel.locator("li")).to_have_count(3)
    assert panel.locator(f'li[data-id="{elsewhere}"]').count() == 0
