"""A local QStash for tests: the publish API the real `qstash` SDK calls, and signed delivery with retries.

`QStashEmulator` serves `POST /v2/publish/{destination}` on a free 127.0.0.1 port (uvicorn in a thread):
the Bearer token is checked; `Upstash-Delay` ("5s", "1m", "2h", "1d" or bare seconds) and
`Upstash-Not-Before` (unix seconds, wins over the delay) hold the message; `Upstash-Deduplication-Id`
answers 202 with the first message's id while it is remembered (`dedupe_window`); `Content-Type`,
`Upstash-Method`, `Upstash-Retries` and `Upstash-Forward-*` headers are honoured. The reply is 201
`{"messageId": "msg_..."}`. Destinations must be loopback URLs: anything else is refused with 400, so a
test can never send a request off the machine.

When a message falls due it is delivered as QStash delivers: the body as published, `Upstash-Signature`
(an HS256 JWT with iss "Upstash", sub the destination URL, iat/nbf now, exp in 5 minutes, a jti and
body = base64url(sha256(body)), signed with the current signing key, so `qstash.Receiver(current, next)`
verifies it), `Upstash-Message-Id`, `Upstash-Retried` and `User-Agent: Upstash-QStash`. A 5xx or 429
answer, a timeout or a connection error is retried up to `retries` times with `backoff(retried)` seconds
between attempts (real QStash also retries other 4xx answers; here a 4xx is final, so a refused signature
shows as one delivery). Every publish and delivery attempt is recorded for assertions.

Time: `clock` (default `time.time`) decides when messages fall due and stamps the records; pass a
`FakeClock` and `advance()` it to release a delayed message without waiting. JWTs are always stamped with
the wall clock, since the receiver checks them against its own.

Use from a test through the `qstash` fixture below (it needs "tests.support.qstash_server" in
tests/conftest.py's `pytest_plugins`; until that is added, a test module defines the same three-line
fixture, as tests/e2e/test_qstash_wake.py does):

    async def test_wake(qstash: QStashEmulator) -> None:
        settings = qstash.configure(settings, consumer_url=push.url + "/consume")  # trigger="qstash"
        await build_trigger(settings).fire("standard", delay=1.0)
        delivery = await qstash.delivered(within=10)
        assert delivery.status == 200

`LoopbackServer` serves any ASGI app the same way (e.g. a consumer push app whose URL must be known
before the app is built); `cleanup` runs on the server's own event loop after it stops.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import ipaddress
import re
import secrets
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import jwt
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import SecretStr

from shared.settings import Settings

START_TIMEOUT = 20.0
JWT_LIFETIME = 300  # seconds, as QStash's tokens
MIN_KEY_BYTES = 32  # PyJWT warns about shorter HMAC keys, and warnings are errors in this suite
DELAY_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
DELAY_PATTERN = re.compile(r"^(\d+)(s|m|h|d)?$")
LOOPBACK_NAMES = frozenset({"localhost"})

Clock = Callable[[], float]


def default_backoff(retried: int) -> float:
    """Seconds before retry number `retried + 1`: short, so a test sees every attempt quickly."""
    return float(min(0.1 * 2**retried, 2.0))


def sign(key: str, *, url: str, body: bytes, now: float | None = None, lifetime: int = JWT_LIFETIME) -> str:
    """An Upstash-Signature JWT for `body` sent to `url`, as QStash makes one."""
    issued = int(time.time() if now is None else now)
    claims = {
        "iss": "Upstash",
        "sub": url,
        "iat": issued,
        "nbf": issued,
        "exp": issued + lifetime,
        "jti": f"jwt_{secrets.token_hex(12)}",
        "body": base64.urlsafe_b64encode(hashlib.sha256(body).digest()).decode(),
    }
    return jwt.encode(claims, key, algorithm="HS256")


def is_loopback(url: str) -> bool:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return False
    if parsed.scheme not in ("http", "https") or not parsed.host:
        return False
    if parsed.host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(parsed.host).is_loopback
    except ValueError:
        return False


def parse_delay(value: str) -> float:
    match = DELAY_PATTERN.match(value.strip())
    if match is None:
        raise ValueError(f"invalid Upstash-Delay {value!r}: use <number><s|m|h|d>")
    return float(int(match.group(1)) * DELAY_UNITS[match.group(2) or ""])


@dataclass
class Message:
    id: str
    destination: str
    method: str
    body: bytes
    headers: dict[str, str]  # what the destination receives besides QStash's own headers
    published_at: float
    delay: float  # seconds between publish and the first attempt
    due_at: float  # when the next attempt is due
    deduplication_id: str | None
    retries: int
    retried: int = 0
    state: Literal["scheduled", "delivering", "delivered", "failed"] = "scheduled"


@dataclass(frozen=True)
class Publish:
    message_id: str
    destination: str
    at: float
    delay: float
    deduplication_id: str | None
    deduplicated: bool  # True: answered 202 with an earlier message's id, nothing new scheduled


@dataclass(frozen=True)
class Delivery:
    message_id: str
    destination: str
    retried: int  # 0 for the first attempt
    due_at: float
    at: float  # when the answer (or the error) came back
    status: int | None  # None: no HTTP answer (connection error, timeout)
    error: str | None
    headers: dict[str, str]  # as sent, Upstash-Signature included
    body: bytes
    reply: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def signature(self) -> str:
        return self.headers["Upstash-Signature"]


@dataclass
class _Records:
    lock: threading.Lock = field(default_factory=threading.Lock)
    messages: dict[str, Message] = field(default_factory=dict)
    dedupe: dict[str, tuple[str, float]] = field(default_factory=dict)  # id -> (message id, first seen)
    publishes: list[Publish] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)


def loopback_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


class LoopbackServer:
    """An ASGI app served by uvicorn from a daemon thread, on a socket bound before the app is built."""

    def __init__(self) -> None:
        self._socket = loopback_socket()
        self.port = int(self._socket.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None

    def start(
        self,
        app: Any,
        *,
        cleanup: Callable[[], Awaitable[None]] | None = None,
        lifespan: Literal["auto", "on", "off"] = "on",
    ) -> LoopbackServer:
        config = uvicorn.Config(app, log_level="warning", lifespan=lifespan)
        self._server = server = uvicorn.Server(config)

        async def serve() -> None:
            try:
                await server.serve(sockets=[self._socket])
            finally:
                if cleanup is not None:
                    await cleanup()

        def run() -> None:
            try:
                asyncio.run(serve())
            except BaseException as exc:  # reported by start() or stop()
                self._failure = exc

        self._thread = threading.Thread(target=run, name=f"loopback-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"server on {self.url} did not start") from self._failure
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._socket.close()

    def __enter__(self) -> LoopbackServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class QStashEmulator:
    """QStash's publish API and delivery on loopback. Start it with `with QStashEmulator() as qstash:`."""

    def __init__(
        self,
        *,
        token: str | None = None,
        current_signing_key: str | None = None,
        next_signing_key: str | None = None,
        clock: Clock = time.time,
        retries: int = 3,
        backoff: Callable[[int], float] = default_backoff,
        dedupe_window: float = 600.0,
        delivery_timeout: float = 30.0,
        tick: float = 0.01,
    ) -> None:
        self.token = token or f"qstash_{secrets.token_hex(16)}"
        self.current_signing_key = current_signing_key or f"sig_{secrets.token_hex(16)}"
        self.next_signing_key = next_signing_key or f"sig_{secrets.token_hex(16)}"
        for key in (self.current_signing_key, self.next_signing_key):
            if len(key.encode()) < MIN_KEY_BYTES:
                raise ValueError(f"signing keys need {MIN_KEY_BYTES}+ bytes (PyJWT warns about shorter ones)")
        self.clock = clock
        self.retries = retries
        self.backoff = backoff
        self.dedupe_window = dedupe_window
        self.delivery_timeout = delivery_timeout
        self.tick = tick
        self._records = _Records()
        self._server = LoopbackServer()
        self.url = self._server.url

    # Lifecycle.

    def __enter__(self) -> QStashEmulator:
        self._server.start(self._app())
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()

    # Records.

    @property
    def publishes(self) -> list[Publish]:
        with self._records.lock:
            return list(self._records.publishes)

    @property
    def deliveries(self) -> list[Delivery]:
        with self._records.lock:
            return list(self._records.deliveries)

    def message(self, message_id: str) -> Message:
        with self._records.lock:
            return self._records.messages[message_id]

    def attempts(self, message_id: str) -> list[Delivery]:
        return [d for d in self.deliveries if d.message_id == message_id]

    async def delivered(self, message_id: str | None = None, *, within: float = 10.0) -> Delivery:
        """The final attempt at a message (the only message when None): 2xx, a 4xx, or the last retry.

        Polls until the message is delivered or has failed; fails the test when `within` passes first."""
        deadline = time.monotonic() + within
        while True:
            with self._records.lock:
                messages = list(self._records.messages.values())
            if message_id is None and len(messages) > 1:
                raise AssertionError(f"{len(messages)} messages published: name the one to wait for")
            chosen = [m for m in messages if message_id is None or m.id == message_id]
            if chosen and chosen[0].state in ("delivered", "failed"):
                return self.attempts(chosen[0].id)[-1]
            if time.monotonic() > deadline:
                raise AssertionError(f"no final delivery of {message_id or 'the message'} within {within} s")
            await asyncio.sleep(0.01)

    def rotate_keys(self) -> None:
        """QStash's key rotation: the next key signs from now on, and a new next key is made."""
        self.current_signing_key, self.next_signing_key = (
            self.next_signing_key,
            f"sig_{secrets.token_hex(16)}",
        )

    def configure(self, settings: Settings, **updates: Any) -> Settings:
        """A copy of `settings` whose trigger publishes here and whose push app verifies these signatures.

        The keys are copied now: after `rotate_keys()` the copy holds the old pair, as a deployed consumer
        does until it is redeployed."""
        return settings.model_copy(
            update={
                "trigger": "qstash",
                "qstash_token": SecretStr(self.token),
                "qstash_url": self.url,
                "qstash_current_signing_key": SecretStr(self.current_signing_key),
                "qstash_next_signing_key": SecretStr(self.next_signing_key),
                **updates,
            }
        )

    # The app.

    def _app(self) -> FastAPI:
        @contextlib.asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[None]:
            async with httpx.AsyncClient(timeout=self.delivery_timeout) as client:
                pump = asyncio.create_task(self._pump(client))
                try:
                    yield
                finally:
                    pump.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await pump

        app = FastAPI(
            title="qstash emulator", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan
        )

        @app.post("/v2/publish/{destination:path}")
        async def publish(destination: str, request: Request) -> JSONResponse:
            if request.headers.get("authorization") != f"Bearer {self.token}":
                return JSONResponse({"error": "invalid token"}, status_code=401)
            if request.url.query:
                destination = f"{destination}?{request.url.query}"
            if not is_loopback(destination):
                return JSONResponse(
                    {"error": f"the emulator delivers to loopback URLs only: {destination!r}"},
                    status_code=400,
                )
            try:
                message = self._message(destination, request.headers, await request.body())
            except ValueError as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            existing = self._schedule(message)
            if existing is not None:
                return JSONResponse({"messageId": existing, "deduplicated": True}, status_code=202)
            return JSONResponse({"messageId": message.id}, status_code=201)

        return app

    def _message(self, destination: str, headers: Any, body: bytes) -> Message:
        now = self.clock()
        delay = parse_delay(headers["upstash-delay"]) if "upstash-delay" in headers else 0.0
        if "upstash-not-before" in headers:
            try:
                delay = max(0.0, float(int(headers["upstash-not-before"])) - now)
            except ValueError as exc:
                raise ValueError("invalid Upstash-Not-Before: use unix seconds") from exc
        retries = self.retries
        if "upstash-retries" in headers:
            try:
                retries = int(headers["upstash-retries"])
            except ValueError as exc:
                raise ValueError("invalid Upstash-Retries") from exc
        forwarded = {
            name[len("upstash-forward-") :]: value
            for name, value in headers.items()
            if name.lower().startswith("upstash-forward-")
        }
        if "content-type" in headers:
            forwarded["Content-Type"] = headers["content-type"]
        return Message(
            id=f"msg_{secrets.token_urlsafe(18)}",
            destination=destination,
            method=headers.get("upstash-method", "POST").upper(),
            body=body,
            headers=forwarded,
            published_at=now,
            delay=delay,
            due_at=now + delay,
            deduplication_id=headers.get("upstash-deduplication-id"),
            retries=max(0, retries),
        )

    def _schedule(self, message: Message) -> str | None:
        """Keep `message` for delivery; return the earlier message's id when it is a duplicate."""
        records, now, key = self._records, message.published_at, message.deduplication_id
        with records.lock:
            seen = records.dedupe.get(key) if key is not None else None
            duplicate = seen is not None and now - seen[1] < self.dedupe_window
            records.publishes.append(
                Publish(
                    message_id=seen[0] if seen is not None and duplicate else message.id,
                    destination=message.destination,
                    at=now,
                    delay=message.delay,
                    deduplication_id=key,
                    deduplicated=duplicate,
                )
            )
            if seen is not None and duplicate:
                return seen[0]
            if key is not None:
                records.dedupe[key] = (message.id, now)
            records.messages[message.id] = message
        return None

    async def _pump(self, client: httpx.AsyncClient) -> None:
        """Start an attempt for every message that has fallen due (by `clock`), every `tick` seconds."""
        running: set[asyncio.Task[None]] = set()
        try:
            while True:
                now = self.clock()
                with self._records.lock:
                    due = [
                        m
                        for m in self._records.messages.values()
                        if m.state == "scheduled" and m.due_at <= now
                    ]
                    for message in due:
                        message.state = "delivering"
                for message in due:
                    task = asyncio.create_task(self._attempt(client, message))
                    running.add(task)
                    task.add_done_callback(running.discard)
                await asyncio.sleep(self.tick)
        finally:
            for task in list(running):
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    async def _attempt(self, client: httpx.AsyncClient, message: Message) -> None:
        headers = {
            **message.headers,
            "Upstash-Signature": sign(self.current_signing_key, url=message.destination, body=message.body),
            "Upstash-Message-Id": message.id,
            "Upstash-Retried": str(message.retried),
            "User-Agent": "Upstash-QStash",
        }
        status: int | None = None
        error: str | None = None
        reply = ""
        try:
            response = await client.request(
                message.method, message.destination, headers=headers, content=message.body
            )
            status, reply = response.status_code, response.text[:2000]
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        retryable = status is None or status >= 500 or status == 429
        with self._records.lock:
            self._records.deliveries.append(
                Delivery(
                    message_id=message.id,
                    destination=message.destination,
                    retried=message.retried,
                    due_at=message.due_at,
                    at=self.clock(),
                    status=status,
                    error=error,
                    headers=headers,
                    body=message.body,
                    reply=reply,
                )
            )
            if not retryable:
                message.state = "delivered" if status is not None and 200 <= status < 300 else "failed"
            elif message.retried >= message.retries:
                message.state = "failed"
            else:
                message.due_at = self.clock() + self.backoff(message.retried)
                message.retried += 1
                message.state = "scheduled"


@pytest.fixture
def qstash() -> Iterator[QStashEmulator]:
    """A running QStash emulator on loopback, with its own token and signing keys (see the module doc)."""
    with QStashEmulator() as emulator:
        yield emulator
