"""Push triggers: after a submit, ask for a consumer run so work starts within moments.

The API calls `await trigger.fire()` when the enqueue reply says no trigger is pending. `fire` never raises:
a failed trigger only delays work until the next scheduled tick. Kinds (settings.trigger):
`qstash` publishes to settings.consumer_url through QStash, `http` posts to it with the shared secret,
`local` calls an in-process target set by the local stack, `none` leaves everything to the cron.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

import httpx

from shared.settings import Settings

log = logging.getLogger(__name__)

HTTP_TIMEOUT = 5.0


class Trigger(Protocol):
    async def fire(self) -> None: ...


class NoTrigger:
    """Cron only."""

    async def fire(self) -> None:
        return None


class LocalTrigger:
    """In-process: the local stack sets `target` to a callable that schedules a bounded drain."""

    def __init__(self, target: Callable[[], object] | None = None) -> None:
        self.target = target

    async def fire(self) -> None:
        if self.target is None:
            return
        try:
            self.target()
        except Exception as exc:  # a trigger never fails a submit
            log.warning("local trigger failed: %s", type(exc).__name__)


class HttpTrigger:
    """A direct POST to the consumer's push endpoint with the shared secret (self-hosting)."""

    def __init__(self, url: str, secret: str, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._url = url
        self._secret = secret
        self._transport = transport

    async def fire(self) -> None:
        try:
            async with httpx.AsyncClient(timeout=HTTP_TIMEOUT, transport=self._transport) as client:
                response = await client.post(
                    self._url, headers={"Authorization": f"Bearer {self._secret}"}, json={}
                )
            if response.status_code >= 400:
                log.warning("http trigger answered %s", response.status_code)
        except httpx.HTTPError as exc:
            log.warning("http trigger failed: %s", type(exc).__name__)


class QStashTrigger:
    """Publish an empty message to the consumer's URL; QStash signs it and delivers with retries."""

    def __init__(self, url: str, token: str, base_url: str | None = None) -> None:
        self._url = url
        self._token = token
        self._base_url = base_url

    async def fire(self) -> None:
        from qstash import AsyncQStash  # imported on use: only deployments with this trigger need it

        try:
            client = AsyncQStash(self._token, retry=False, base_url=self._base_url)
            await client.message.publish_json(url=self._url, body={})
        except Exception as exc:  # the SDK raises several types
            log.warning("qstash trigger failed: %s", type(exc).__name__)


def build_trigger(settings: Settings) -> Trigger:
    kind = settings.trigger
    if kind == "local":
        return LocalTrigger()
    if kind in ("http", "qstash") and not settings.consumer_url:
        log.warning("trigger %s needs JOBQ_CONSUMER_URL; falling back to cron only", kind)
        return NoTrigger()
    if kind == "http":
        if settings.consumer_secret is None:
            log.warning("trigger http needs JOBQ_CONSUMER_SECRET; falling back to cron only")
            return NoTrigger()
        return HttpTrigger(str(settings.consumer_url), settings.consumer_secret.get_secret_value())
    if kind == "qstash":
        if settings.qstash_token is None:
            log.warning("trigger qstash needs JOBQ_QSTASH_TOKEN; falling back to cron only")
            return NoTrigger()
        return QStashTrigger(
            str(settings.consumer_url), settings.qstash_token.get_secret_value(), settings.qstash_url
        )
    return NoTrigger()
