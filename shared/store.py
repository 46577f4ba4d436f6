"""Redis access over the Upstash REST API: the client, the script runner and the error policy.

- `make_redis` builds the SDK client with its blind retry off (it would re-send any failed call after
  3 s) and a bounded HTTP timeout (the SDK's default is none).
- `Store.call` puts an explicit deadline around every call and maps failures to typed errors:
  transport errors, timeouts, 5xx and "backend unavailable" replies -> StoreUnavailableError;
  script error replies "JOBQ:<code> msg" -> the error class with that code; any other -> StoreError.
- `Store.script` runs a script of shared/scripts by SHA and falls back to its source on NOSCRIPT
  (shared/scriptcalls.py gives each script its typed call).
- `retrying` is the one retry-with-backoff helper: only for idempotent calls (every jobq script is),
  and only for StoreUnavailableError.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Awaitable, Callable
from functools import cache
from importlib import resources
from typing import Any, TypeVar

import httpx
from upstash_redis.asyncio import Redis
from upstash_redis.errors import UpstashError

from shared.errors import (
    FlowKeysError,
    IdempotencyConflictError,
    InvalidTransitionError,
    JobNotFoundError,
    JobqError,
    LeaseLostError,
    PayloadTooLargeError,
    SingletonConflictError,
    StoreError,
    StoreUnavailableError,
    ValidationError,
)
from shared.limits import (
    CALLBACK_ATTEMPTS,
    CALLBACK_OWNER,
    CALLBACK_TIMEOUT,
    CALLBACK_TYPE,
    MAX_ERRORS_KEPT,
    MAX_LOG_LINES,
    MAX_PARENTS,
    MAX_STEPS,
    MAX_STEPS_BYTES,
)
from shared.models import QueueOptions
from shared.settings import Settings

T = TypeVar("T")

ERRORS_BY_CODE: dict[str, type[JobqError]] = {
    cls.code: cls
    for cls in (
        FlowKeysError,
        JobNotFoundError,
        IdempotencyConflictError,
        InvalidTransitionError,
        LeaseLostError,
        PayloadTooLargeError,
        SingletonConflictError,
        ValidationError,
    )
}
_SCRIPT_ERROR = re.compile(r"JOBQ:([a-z_]+) ?(.*)", re.DOTALL)
# Error replies that mean "Redis cannot serve now, try later": Redis's own busy states, and a REST
# endpoint (our gateway, a proxy) whose backend is down. The SDK hides the HTTP status, so match the text.
_UNAVAILABLE_REPLY = re.compile(
    r"\b(LOADING|BUSY|MASTERDOWN|TRYAGAIN|CLUSTERDOWN)\b|(?i:backend unavailable|service unavailable)"
)


def make_redis(settings: Settings) -> Redis:
    """An SDK client with retries off and an HTTP timeout of `settings.redis_timeout`."""
    redis = Redis(
        settings.redis_rest_url,
        settings.redis_rest_token.get_secret_value(),
        rest_retries=0,
        allow_telemetry=False,
    )
    # The SDK builds its httpx client with timeout=None and offers no option for it.
    redis._http._client.timeout = httpx.Timeout(settings.redis_timeout)
    return redis


# Scripts made of others: each part's body becomes a function of its own ARGV (`<part>_part(argv)`), on
# the same KEYS, so one call runs several state changes atomically with each part's arguments unchanged.
# Inside a part `commit` does nothing: the composed script commits once, for all its parts (lib.lua).
COMPOSED = {"cycle": ("finish", "claim"), "fire": ("enqueue",)}
# Scripts that only read: flagged no-writes and run with EVALSHA_RO, which a read replica may serve.
READ_ONLY = frozenset({"list", "stats", "schedule_list"})


@cache
def script_source(name: str) -> str:
    """A script's source: its flags (every script declares its keys, so Upstash runs it under key
    locking rather than its global lock), the constants it shares with Python, lib.lua's and flow.lua's
    helpers, then the script itself (after the scripts it is made of, each wrapped as a function:
    COMPOSED)."""
    folder = resources.files("shared.scripts")
    flags = "allow-key-locking,no-writes" if name in READ_ONLY else "allow-key-locking"
    parts = [f"#!lua flags={flags}", constants_header()]
    parts += [folder.joinpath(lib).read_text() for lib in ("lib.lua", "flow.lua")]
    for part in COMPOSED.get(name, ()):
        body = folder.joinpath(f"{part}.lua").read_text()
        parts.append(f"local function {part}_part(ARGV)\nlocal commit = function() end\n{body}\nend")
    parts.append(folder.joinpath(f"{name}.lua").read_text())
    return "\n".join(parts)


def constants_header() -> str:
    """Lua locals with the values whose one home is Python, so no script repeats them: the limits of
    shared/limits.py (a delivery job's type, attempts and timeout among them) and the policy of a queue
    no process has published (QueueOptions' defaults)."""
    default_policy = ", ".join(f"{name} = {value}" for name, value in QueueOptions().stored().items())
    return (
        f"local LIMITS = {{errors = {MAX_ERRORS_KEPT}, log_lines = {MAX_LOG_LINES}, steps = {MAX_STEPS}, "
        f'step_bytes = {MAX_STEPS_BYTES}, parents = {MAX_PARENTS}, callback_type = "{CALLBACK_TYPE}", '
        f'callback_owner = "{CALLBACK_OWNER}", callback_attempts = {CALLBACK_ATTEMPTS}, '
        f"callback_timeout = {CALLBACK_TIMEOUT:g}}}\n"
        f"local DEFAULT_POLICY = {{{default_policy}}}"
    )


@cache
def script_sha(name: str) -> str:
    return hashlib.sha1(script_source(name).encode(), usedforsecurity=False).hexdigest()


def map_error(exc: BaseException) -> JobqError:
    """The typed jobq error for a failed Redis call."""
    if isinstance(exc, JobqError):
        return exc
    if isinstance(exc, UpstashError):
        text = str(exc)
        match = _SCRIPT_ERROR.search(text)
        if match:
            cls = ERRORS_BY_CODE.get(match.group(1), StoreError)
            return cls(match.group(2) or match.group(1))
        if _UNAVAILABLE_REPLY.search(text):
            return StoreUnavailableError(f"Redis unavailable: {text[:200]}")
        return StoreError(f"Redis error reply: {text[:200]}")
    if isinstance(exc, (httpx.HTTPError, TimeoutError, OSError, ValueError)):
        # ValueError: a 5xx or proxy page whose body is not the JSON the SDK expects.
        return StoreUnavailableError(f"Redis REST endpoint unavailable: {type(exc).__name__}")
    return StoreError(f"unexpected Redis client failure: {type(exc).__name__}")


class Store:
    """Bounded, typed access to one Redis through the SDK."""

    def __init__(self, redis: Redis, *, timeout: float = 5.0) -> None:
        self.redis = redis
        self.timeout = timeout

    async def call(self, make: Callable[[], Awaitable[T]]) -> T:
        """Run one SDK call under the deadline, mapping every failure to a JobqError."""
        try:
            async with asyncio.timeout(self.timeout):
                return await make()
        except JobqError:
            raise
        except Exception as exc:
            raise map_error(exc) from exc

    async def command(self, *args: Any) -> Any:
        """One raw command, e.g. `await store.command("HGETALL", key)`."""
        return await self.call(lambda: self.redis.execute(list(args)))

    async def pipeline(self, commands: list[list[Any]]) -> list[Any]:
        """Several commands in one request (not atomic: each is routed and answered on its own)."""

        async def run() -> list[Any]:
            pipe = self.redis.pipeline()
            for command in commands:
                pipe.execute(command)
            return list(await pipe.exec())

        return await self.call(run)

    async def script(self, name: str, keys: list[str], args: list[str]) -> Any:
        """Run shared/scripts/<name>.lua on `keys` (every key it touches) by SHA; on NOSCRIPT send the
        source (which also caches it). Read-only scripts go by EVALSHA_RO / EVAL_RO."""
        sha = script_sha(name)
        ro = name in READ_ONLY
        try:
            if ro:
                return await self.call(lambda: self.redis.evalsha_ro(sha, keys, args))
            return await self.call(lambda: self.redis.evalsha(sha, keys, args))
        except StoreError as exc:
            if "NOSCRIPT" not in exc.message and "No matching script" not in exc.message:
                raise
        if ro:
            return await self.call(lambda: self.redis.eval_ro(script_source(name), keys, args))
        return await self.call(lambda: self.redis.eval(script_source(name), keys, args))


async def retrying(
    make: Callable[[], Awaitable[T]],
    *,
    attempts: int = 3,
    base_delay: float = 0.05,
    max_delay: float = 1.0,
) -> T:
    """Run an idempotent call, retrying StoreUnavailableError with exponential backoff."""
    delay = base_delay
    for attempt in range(1, attempts + 1):
        try:
            return await make()
        except StoreUnavailableError:
            if attempt == attempts:
                raise
            await asyncio.sleep(delay)
            delay = min(max_delay, delay * 2)
    raise AssertionError("unreachable")
