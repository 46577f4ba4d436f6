"""The dashboard in a real browser: Debian's Chromium driven by Playwright, against a real API server (uvicorn
in a thread) and a real consumer (a worker in another thread), both on real Redis through the REST gateway.

Never downloads a browser: it launches /usr/bin/chromium (JOBQ_CHROMIUM to override). When it is missing
the test fails in CI (CI=true) and is skipped elsewhere. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from functions.api.app import create_app
from functions.consumer.runtime import build_runtime
from shared.consumer import ConsumerConfig
from shared.consumer.worker import Worker
from shared.context import JobContext
from shared.errors import PermanentJobError
from shared.registry import Registry
from tests.support.api_fixtures import ADMIN_HEADERS, ADMIN_TOKEN, ServedApp, gateway_settings

pytestmark = [pytest.mark.browser, pytest.mark.realredis]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
WAIT_MS = 15_000  # upper bound for anything to appear on the page (Playwright polls until then)


def chromium_path() -> str:
    path = os.environ.get("JOBQ_CHROMIUM", "/usr/bin/chromium")
    found = shutil.which(path)
    if found is None:
        reason = f"Chromium not found at {path} (apt-get install chromium; set JOBQ_CHROMIUM to override)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}: the browser test is required in CI", pytrace=False)
        pytest.skip(reason)
    return found


class Message(BaseModel):
    message: str = ""


class Switches:
    """What the test job types wait on or check, set from the test thread."""

    def __init__(self) -> None:
        self.release = threading.Event()  # "dash_gate" jobs finish once set
        self.heal = threading.Event()  # "dash_flaky" jobs fail permanently until set


def dashboard_registry(switches: Switches) -> Registry:
    registry = Registry()
    reg = registry.job_type

    @reg("dash_echo", payload=Message, queue="dash", timeout=10)
    async def echo(payload: Message, ctx: JobContext) -> str:
        return payload.message

    @reg("dash_gate", payload=Message, queue="dash", timeout=30)
    async def gate(payload: Message, ctx: JobContext) -> str:
        await ctx.progress(50)
        await ctx.log("halfway: waiting for the test to release me")
        released = await asyncio.to_thread(switches.release.wait, 25)
        return "released" if released else "gave up"

    @reg("dash_flaky", payload=Message, queue="dash", timeout=10, max_attempts=1)
    async def flaky(payload: Message, ctx: JobContext) -> str:
        if not switches.heal.is_set():
            raise PermanentJobError("upstream said no")
        return "healed"

    return registry


class WorkerThread:
    """A consumer worker on its own event loop, stopped gracefully at exit."""

    def __init__(self, settings: Any, registry: Registry) -> None:
        config = ConsumerConfig(heartbeat_interval=0.1, grace=2.0)
        self._runtime = build_runtime(settings, registry=registry, config=config)
        self._worker = Worker(self._runtime.consumer, idle_min=0.05, idle_max=0.2)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            try:
                await self._worker.run()
            finally:
                await self._runtime.redis.close()

        self._loop.run_until_complete(main())
        self._loop.close()

    def __enter__(self) -> WorkerThread:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._worker.stop)
        self._thread.join(timeout=15)


@pytest.fixture
def stack(real_gateway: Any) -> Iterator[tuple[ServedApp, Switches]]:
    switches = Switches()
    registry = dashboard_registry(switches)
    prefix = "b" + uuid.uuid4().hex[:16]
    # A short stream lifetime: the page reconnects (with Last-Event-ID) several times during the test.
    settings = gateway_settings(real_gateway, prefix, events_poll_seconds=0.1, events_max_seconds=3.0)
    with ServedApp(create_app(settings, registry=registry)) as served, WorkerThread(settings, registry):
        yield served, switches
        switches.release.set()


def submit(api: httpx.Client, type_name: str, message: str = "hi") -> str:
    response = api.post("/v1/jobs", json={"type": type_name, "payload": {"message": message}})
    assert response.status_code == 201, response.text
    job_id: str = response.json()["id"]
    return job_id


def wait_state(api: httpx.Client, job_id: str, state: str) -> None:
    """Poll the API (not the page) until the job is in `state`; used only to set up page checks."""
    deadline = threading.Event()
    timer = threading.Timer(WAIT_MS / 1000, deadline.set)
    timer.start()
    try:
        while api.get(f"/v1/jobs/{job_id}").json()["state"] != state:
            assert not deadline.is_set(), f"job {job_id} never became {state}"
            deadline.wait(0.05)
    finally:
        timer.cancel()


@contextmanager
def chromium(served: ServedApp) -> Iterator[tuple[httpx.Client, Any, Any]]:
    """An admin API client, Chromium, and Playwright's `expect` waiting up to WAIT_MS."""
    executable = chromium_path()
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    expect.set_options(timeout=WAIT_MS)
    with (
        httpx.Client(base_url=served.url, headers=ADMIN_HEADERS, timeout=10) as api,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=executable)
        try:
            yield api, browser, expect
        finally:
            browser.close()


def test_dashboard_in_chromium(stack: tuple[ServedApp, Switches]) -> None:
    served, switches = stack
    with chromium(served) as (api, browser, expect):
        seed = submit(api, "dash_echo")  # the queue exists before the page opens
        wait_state(api, seed, "completed")
        page = browser.new_page(viewport={"width": 1360, "height": 900})
        problems: list[str] = []
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        page.on("console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None)
        try:
            run_scenario(page, api, switches, served.url, expect)
        finally:
            page.screenshot(path=str(ARTIFACTS / "dashboard-last.png"), full_page=True)
        # 401s from the deliberate bad login are the only errors the page may log.
        assert [p for p in problems if "401" not in p] == []


def run_scenario(page: Any, api: httpx.Client, switches: Switches, url: str, expect: Any) -> None:
    # Log in: a bad credential is refused with a clear message, the admin token gets in.
    page.goto(f"{url}/dashboard")
    page.get_by_label("Admin API key, admin token or JWT").fill("not-a-real-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#login-error")).to_contain_text("not accepted (401)")
    page.get_by_label("Admin API key, admin token or JWT").fill(ADMIN_TOKEN)
    page.get_by_role("button", name="Sign in").click()
    row = page.locator('#queues tr[data-queue="dash"]')
    expect(row).to_be_visible()
    expect(page.locator("#live")).to_have_text("Live")
    completed_before = int(row.locator(".count-completed").inner_text())

    # A submitted job moves to completed live, on its own page and in the overview, without a reload.
    job = submit(api, "dash_gate", "watch me")
    wait_state(api, job, "active")
    page.goto(f"{url}/dashboard#/job/{job}")
    expect(page.locator("#job-state")).to_have_text("active")
    expect(page.locator("#job-progress")).to_have_attribute("value", "50")
    expect(page.locator("#job-logs")).to_contain_text("halfway")
    switches.release.set()
    expect(page.locator("#job-state")).to_have_text("completed")
    expect(page.locator("#job-result")).to_have_text('"released"')
    page.screenshot(path=str(ARTIFACTS / "dashboard-job.png"), full_page=True)
    page.get_by_role("link", name="Queues", exact=True).first.click()
    expect(row.locator(".count-completed")).to_have_text(str(completed_before + 1))
    second = submit(api, "dash_echo", "live counts")
    wait_state(api, second, "completed")
    expect(row.locator(".count-completed")).to_have_text(str(completed_before + 2))

    # Job data is text, never markup.
    hostile = submit(api, "dash_echo", '<img src=x id=pwned onerror="document.title=1">')
    page.goto(f"{url}/dashboard#/job/{hostile}")
    expect(page.locator("#job-payload")).to_contain_text("<img src=x id=pwned")
    assert page.locator("#pwned").count() == 0

    # Retry a failed job from the failed tab.
    failed = submit(api, "dash_flaky")
    wait_state(api, failed, "failed")
    page.goto(f"{url}/dashboard#/queue/dash?state=failed")
    page.locator(f'#jobs tr[data-job="{failed}"] a').click()
    expect(page.locator("#job-state")).to_have_text("failed")
    expect(page.locator(".errors")).to_contain_text("upstream said no")
    switches.heal.set()
    page.get_by_role("button", name="Retry", exact=True).click()
    expect(page.locator("#job-state")).to_have_text("completed")
    expect(page.locator("#job-result")).to_have_text('"healed"')

    # Pause the queue (the flag shows on the queue page and the overview), resume it after confirming.
    page.goto(f"{url}/dashboard#/queue/dash")
    expect(page.locator("#paused-flag")).to_have_text("running")
    page.get_by_role("button", name="Pause").click()
    expect(page.locator("#paused-flag")).to_have_text("paused")
    assert api.get("/v1/queues/dash").json()["paused"] is True
    page.get_by_role("link", name=re.compile("^completed")).click()
    expect(page.locator("#jobs tbody tr")).to_have_count(5)
    page.screenshot(path=str(ARTIFACTS / "dashboard-queue.png"), full_page=True)
    page.get_by_role("link", name="Queues", exact=True).first.click()
    expect(row.locator(".badge.paused")).to_have_text("paused")
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

    # A destructive action asks first; cancelling the dialog changes nothing.
    page.goto(f"{url}/dashboard#/queue/dash?state=completed")
    page.get_by_role("button", name="Clean…").click()
    dialog = page.locator("#confirm")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("cannot be undone")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    assert api.get("/v1/queues/dash").json()["counts"]["completed"] >= 4

    # Logging out returns to the login form and forgets the credential.
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_label("Admin API key, admin token or JWT")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0
    assert re.search(r"/dashboard", page.url)


def test_a_flow_shows_as_a_tree_on_its_parents_page(stack: tuple[ServedApp, Switches]) -> None:
    served, _ = stack
    with chromium(served) as (api, browser, expect):
        child = {"type": "dash_echo", "payload": {"message": "child"}}
        flow = {"type": "dash_echo", "payload": {"message": "parent"}, "children": [child, child]}
        created = api.post("/v1/flows", json=flow)
        assert created.status_code == 201, created.text
        tree = created.json()
        parent, first = tree["job"]["id"], tree["children"][0]["job"]["id"]
        wait_state(api, parent, "completed")
        page = browser.new_page(viewport={"width": 1360, "height": 900})
        page.goto(f"{served.url}/dashboard")
        page.get_by_label("Admin API key, admin token or JWT").fill(ADMIN_TOKEN)
        page.get_by_role("button", name="Sign in").click()
        page.goto(f"{served.url}/dashboard#/job/{parent}")
        panel = page.locator("#job-flow")
        expect(panel.locator(".badge.state-completed")).to_have_count(3)  # the parent and its two children
        panel.get_by_role("link", name=first).click()
        expect(page.locator("#job-title")).to_contain_text(first)
        expect(page.locator("#job-flow")).to_contain_text(f"Waiting on this job: {parent} (on failure: fail)")


def test_dashboard_falls_back_to_polling_and_reports_outages(stack: tuple[ServedApp, Switches]) -> None:
    """Where the stream cannot be used (API Gateway buffers responses) the page polls; when the API is
    unreachable or Redis is down it says so in an alert, and recovers on its own."""
    executable = chromium_path()
    from playwright.sync_api import expect, sync_playwright

    served, _ = stack
    expect.set_options(timeout=WAIT_MS)
    with (
        httpx.Client(base_url=served.url, headers=ADMIN_HEADERS, timeout=10) as api,
        sync_playwright() as playwright,
    ):
        wait_state(api, submit(api, "dash_echo"), "completed")
        browser = playwright.chromium.launch(executable_path=executable)
        try:
            page = browser.new_page()
            page.route("**/v1/dashboard/stream", lambda route: route.abort())  # no streaming here
            page.goto(f"{served.url}/dashboard")
            page.get_by_label("Admin API key, admin token or JWT").fill(ADMIN_TOKEN)
            page.get_by_role("button", name="Sign in").click()
            expect(page.locator("#live")).to_have_text(re.compile("^Polling every"))
            completed = page.locator('#queues tr[data-queue="dash"] .count-completed')
            expect(completed).to_have_text("1")
            wait_state(api, submit(api, "dash_echo"), "completed")
            expect(completed).to_have_text("2")  # by polling alone

            redis_down = {"error": {"code": "store_unavailable", "message": "Redis is unavailable"}}
            page.route("**/v1/dashboard/overview", lambda route: route.fulfill(status=503, json=redis_down))
            banner = page.get_by_role("alert").filter(has_text="Redis is unavailable")
            expect(banner).to_be_visible()
            page.unroute("**/v1/dashboard/overview")
            expect(banner).to_be_hidden()
            page.route("**/v1/dashboard/overview", lambda route: route.abort())
            expect(page.get_by_role("alert").filter(has_text="Cannot reach the jobq API")).to_be_visible()
            expect(page.locator("#view")).not_to_have_attribute("aria-busy", "true")  # no endless spinner
            page.unroute("**/v1/dashboard/overview")
            expect(page.locator("#banner")).to_be_hidden()
        finally:
            browser.close()


NARROW = {"width": 420, "height": 860}  # a phone held upright


def scrolls_sideways(page: Any) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth > document.documentElement.clientWidth"))


def test_dashboard_at_420_px_fits_and_signs_in_cleanly(stack: tuple[ServedApp, Switches]) -> None:
    """At a phone's width nothing scrolls sideways, before or after signing in; the sign-in page shows
    neither the job search (it needs a credential) nor an "Offline" badge (nothing is followed yet)."""
    served, _ = stack
    with chromium(served) as (api, browser, expect):
        job = submit(api, "dash_echo", "narrow")
        wait_state(api, job, "completed")
        page = browser.new_page(viewport=NARROW)
        try:
            page.goto(f"{served.url}/dashboard")
            expect(page.get_by_label("Admin API key, admin token or JWT")).to_be_visible()
            expect(page.locator("#search")).to_be_hidden()
            expect(page.locator("#live")).to_be_hidden()
            assert not scrolls_sideways(page)

            page.get_by_label("Admin API key, admin token or JWT").fill(ADMIN_TOKEN)
            page.get_by_role("button", name="Sign in").click()
            expect(page.locator('#queues tr[data-queue="dash"]')).to_be_visible()
            expect(page.get_by_placeholder("Find a job by id")).to_be_visible()
            expect(page.locator("#live")).to_have_text("Live")
            assert not scrolls_sideways(page)
            header = page.locator("header.top").bounding_box()
            assert header is not None and header["width"] <= NARROW["width"]

            page.goto(f"{served.url}/dashboard#/job/{job}")
            expect(page.locator("#job-state")).to_have_text("completed")
            assert not scrolls_sideways(page)
        finally:
            page.screenshot(path=str(ARTIFACTS / "dashboard-420px.png"), full_page=True)
