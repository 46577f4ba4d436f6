"""Read-your-writes across function instances: a write's sync token goes to the caller and comes back.

Upstash answers every REST request with an `Upstash-Sync-Token`; a request that sends one reads every write
up to it, even from a read replica, which otherwise may lag. The SDK keeps the last token per client, so one
instance reads its own writes, but a read that another instance serves may miss them. So the API hands the
token of a request's last Redis call to its caller (`Jobq-Sync-Token`), and a request that sends it back has
its Redis calls carry it.

- `session(token)`: inside it, the SDK calls made in this context send `token` (when given) instead of the
  client's own, and `Session.token` is the token of the last answer they got. Per request: concurrent
  requests share one SDK client, whose own token is left alone.
- `install(redis)`: hooks that into an SDK client (once per client).
- `check_token(text)`: a caller's token, or ValueError saying what is wrong with it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import httpx

HEADER = "Jobq-Sync-Token"
UPSTASH_HEADER = "Upstash-Sync-Token"
MAX_TOKEN_CHARS = 256
# Upstash's tokens are opaque: any visible ASCII is taken, so a token it issues is never refused. No space or
# control character, so the value is one safe header value when it is sent on.
_TOKEN = re.compile(r"[\x21-\x7e]+")


@dataclass
class Session:
    sent: str | None = None  # the caller's token, sent with this session's Redis calls
    token: str | None = None  # the token of the last answer to them


_current: ContextVar[Session | None] = ContextVar("jobq_freshness_session", default=None)


@contextmanager
def session(token: str | None = None) -> Iterator[Session]:
    current = Session(sent=token)
    reset = _current.set(current)
    try:
        yield current
    finally:
        _current.reset(reset)


def check_token(text: str) -> str | None:
    """The caller's token; None for an empty one (the SDK, too, sends an empty token before it has one)."""
    if not text:
        return None
    if len(text) > MAX_TOKEN_CHARS or not _TOKEN.fullmatch(text):
        raise ValueError(f"{HEADER} must be at most {MAX_TOKEN_CHARS} visible ASCII characters")
    return text


def install(redis: Any) -> None:
    """Make the SDK client `redis` honour sessions: a no-op for anything else (a test's fake).

    The SDK has no per-call header, and setting its client-wide token would leak one request's token into
    its concurrent neighbours. So this hooks the httpx client inside the SDK (`redis._http._client`, as
    shared.store.make_redis does for its timeout): the one place that relies on the SDK's internals.
    Its request hook runs in the calling task, so it sees that task's session.
    """
    client = getattr(getattr(redis, "_http", None), "_client", None)
    if not isinstance(client, httpx.AsyncClient):
        return
    hooks = client.event_hooks
    if _send_token in hooks["request"]:
        return
    client.event_hooks = {
        "request": [*hooks["request"], _send_token],
        "response": [*hooks["response"], _note_token],
    }


async def _send_token(request: httpx.Request) -> None:
    current = _current.get()
    if current is not None and current.sent is not None:
        request.headers[UPSTASH_HEADER] = current.sent


async def _note_token(response: httpx.Response) -> None:
    current = _current.get()
    token = response.headers.get(UPSTASH_HEADER)
    if current is not None and token:
        current.token = token
