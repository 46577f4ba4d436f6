"""Push triggers: ask for a consumer run of one lane, now or after a delay, so work starts within moments.

`await trigger.fire(lane)` asks for a run of the consumer serving `lane` (shared/lanes.py) as soon as
possible; `await trigger.fire(lane, delay=s)` asks for one about `s` seconds from now, when a delayed job or
retry falls due. `fire` never raises: a lost trigger only delays work until the next scheduled tick.

Kinds (settings.trigger): `qstash` publishes to the lane's push URL (`settings.push_url(lane)`) through
QStash, which signs the message, holds it for the delay and delivers it with retries; `http` posts to that
URL with the shared secret (no delay support); `local` calls an in-process target set by the local stack;
`none` leaves everything to the cron. Push URLs are looked up at fire time, and a lane without one is
warned about once and then left to the cron.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from typing import Any, Protocol

import httpx

from shared.settings import Settings

log = logging.getLogger(__name__)

HTTP_TIMEOUT = 5.0  # seconds for one trigger call, connection included

PushUrl = Callable[[str], "str | None"]


class Trigger(Protocol):
    async def fire(self, lane: str, *, delay: float = 0.0) -> None:
        """Ask for a run of `lane`'s consumer `delay` seconds from now; never raises."""
        ...


def wake_second(now: float, delay: float) -> int:
    """The whole second a delayed wake is delivered at: the first one at or after `now + delay`.

    Rounding up means a wake never arrives before the work it is for falls due (a run that finds nothing
    due leaves it to the cron); every request whose due time falls in the same second shares one wake.
    """
    return math.ceil(now + delay)


class LaneUrls:
    """Each lane's push URL, looked up when a trigger fires; a lane without one is warned about once."""

    def __init__(self, url: str | PushUrl) -> None:
        self._resolve: PushUrl = (lambda _lane: url) if isinstance(url, str) else url
        self._warned: set[str] = set()

    def get(self, lane: str) -> str | None:
        url = self._resolve(lane)
        if not url and lane not in self._warned:
            self._warned.add(lane)
            log.warning("no push URL for lane %s (JOBQ_CONSUMER_URLS, JOBQ_CONSUMER_URL); cron only", lane)
        return url or None


class NoTrigger:
    """Cron only."""

    async def fire(self, lane: str, *, delay: float = 0.0) -> None:
        return None


class LocalTrigger:
    """In-process: the local stack sets `target` to a callable that schedules a bounded drain.

    The lane is ignored (the local consumer serves every lane). A delayed wake does nothing: the local
    stack's own tick runs work as it falls due, and kicking a drain now would find nothing to do (a drain
    that asks for a delayed wake would even kick itself again and again until the work is due).
    """

    def __init__(self, target: Callable[[], object] | None = None) -> None:
        self.target = target

    async def fire(self, lane: str, *, delay: float = 0.0) -> None:
        if self.target is None:
            return
        if delay > 0:
            log.debug("local trigger: a wake in %.1f s is left to the local tick", delay)
            return
        try:
            self.target()
        except Exception as exc:  # a trigger never fails its caller
            log.warning("local trigger failed: %s", type(exc).__name__)


class HttpTrigger:
    """A direct POST to the lane's push endpoint with the shared secret (self-hosting).

    It cannot delay a call: for `delay > 0` it logs at debug and does nothing, and the scheduled tick
    (cron) runs the work once it falls due, up to one tick late. Use the `qstash` trigger for prompt
    delayed wakes.
    """

    def __init__(
        self, url: str | PushUrl, secret: str, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self._urls = LaneUrls(url)
        self._secret = secret
        self._transport = transport

    async def fire(self, lane: str, *, delay: float = 0.0) -> None:
        if delay > 0:
            log.debug("http trigger cannot delay; the wake of lane %s in %.1f s is left to cron", lane, delay)
            return
        url = self._urls.get(lane)
        if url is None:
            return
        try:
            async with httpx.AsyncClient(timeout=HTTP_TIMEOUT, transport=self._transport) as client:
                response = await client.post(
                    url, headers={"Authorization": f"Bearer {self._secret}"}, json={"lane": lane}
                )
            if response.status_code >= 400:
                log.warning("http trigger for lane %s answered %s", lane, response.status_code)
        except httpx.HTTPError as exc:
            log.warning("http trigger for lane %s failed: %s", lane, type(exc).__name__)


class QStashTrigger:
    """Publish to the lane's push URL; QStash signs the message, holds it for the delay, retries delivery.

    A delayed wake is published with `Upstash-Delay` in whole seconds, rounded up so that it lands within
    its wake second (`wake_second`), never before it, and with `Upstash-Deduplication-Id:
    wake-<lane>-<wake second>`, so any number of runs asking for the same lane and second publish one
    message. An immediate wake carries no deduplication id: the engine's pending-trigger flag already
    coalesces a burst of submits, and a second wake in the same second may be needed (the first run may
    have claimed just before a new submit).
    """

    def __init__(
        self,
        url: str | PushUrl,
        token: str,
        base_url: str | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._urls = LaneUrls(url)
        self._token = token
        self._base_url = base_url
        self._clock = clock

    async def fire(self, lane: str, *, delay: float = 0.0) -> None:
        url = self._urls.get(lane)
        if url is None:
            return
        options: dict[str, Any] = {}
        if delay > 0:
            now = self._clock()
            second = wake_second(now, delay)
            options = {"delay": f"{math.ceil(second - now)}s", "deduplication_id": f"wake-{lane}-{second}"}
        try:
            async with asyncio.timeout(HTTP_TIMEOUT):
                await self._publish(url, {"lane": lane}, options)
        except Exception as exc:  # the SDK raises several types; a timeout raises TimeoutError
            log.warning("qstash trigger for lane %s failed: %s", lane, type(exc).__name__)

    async def _publish(self, url: str, body: dict[str, Any], options: dict[str, Any]) -> None:
        from qstash import AsyncQStash  # imported on use: only deployments with this trigger need it

        client = AsyncQStash(self._token, retry=False, base_url=self._base_url)
        try:
            await client.message.publish_json(url=url, body=body, **options)
        finally:
            # The SDK opens an httpx client per AsyncQStash and offers no way to close it.
            http = getattr(client.http, "_client", None)
            if isinstance(http, httpx.AsyncClient):
                await http.aclose()


def build_trigger(settings: Settings) -> Trigger:
    kind = settings.trigger
    if kind == "local":
        return LocalTrigger()
    if kind in ("http", "qstash") and not (settings.consumer_url or settings.consumer_urls):
        log.warning("trigger %s needs JOBQ_CONSUMER_URL(S); falling back to cron only", kind)
        return NoTrigger()
    if kind == "http":
        if settings.consumer_secret is None:
            log.warning("trigger http needs JOBQ_CONSUMER_SECRET; falling back to cron only")
            return NoTrigger()
        return HttpTrigger(settings.push_url, settings.consumer_secret.get_secret_value())
    if kind == "qstash":
        if settings.qstash_token is None:
            log.warning("trigger qstash needs JOBQ_QSTASH_TOKEN; falling back to cron only")
            return NoTrigger()
        return QStashTrigger(settings.push_url, settings.qstash_token.get_secret_value(), settings.qstash_url)
    return NoTrigger()
