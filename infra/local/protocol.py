"""The Upstash REST wire format: request bodies in, JSON replies out, and the checks Upstash applies first."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

MAX_BODY_BYTES = 10 * 1024 * 1024
MAX_KEY_BYTES = 32 * 1024

# Upstash refuses these over REST: they block a connection or change per-connection state, which a stateless
# HTTP request cannot own. They are never sent to the backend.
REFUSED = frozenset(
    {
        "BLPOP", "BRPOP", "BRPOPLPUSH", "BLMOVE", "BLMPOP", "BZPOPMIN", "BZPOPMAX", "BZMPOP",
        "WATCH", "UNWATCH", "DISCARD", "MULTI", "EXEC",
        "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE", "SUNSUBSCRIBE", "MONITOR",
        "SELECT", "AUTH", "HELLO", "QUIT", "RESET", "CLIENT", "WAIT", "WAITAOF", "SYNC", "PSYNC",
    }
)  # fmt: skip
STREAM_READS = frozenset({"XREAD", "XREADGROUP"})
FREE = frozenset({"PING"})  # Upstash does not bill PING

# Commands whose arguments hold no key at all, and commands whose every argument is a key.
_KEYLESS = frozenset(
    {"PING", "ECHO", "INFO", "DBSIZE", "FLUSHDB", "FLUSHALL", "TIME", "KEYS", "SCAN", "SCRIPT", "RANDOMKEY",
     "COMMAND", "CONFIG", "LASTSAVE", "MEMORY", "SLOWLOG", "FUNCTION", "PUBLISH", "SPUBLISH", "LATENCY"}
)  # fmt: skip
_ALL_KEYS = frozenset({"DEL", "UNLINK", "EXISTS", "MGET", "TOUCH", "SINTER", "SUNION", "SDIFF", "PFCOUNT"})
_NUMKEYS_AT_2 = frozenset({"EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO"})


class RequestError(Exception):
    """A request refused before it reaches Redis; carries its HTTP status and an Upstash-style error text."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


Command = list[bytes]


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(body: bytes) -> Any:
    if len(body) > MAX_BODY_BYTES:
        raise RequestError("ERR max request size exceeded", 413)
    try:
        # Numbers stay the text the client wrote (no float rounding, no 1e20 -> "1e+20"); Python's json would
        # also read NaN and Infinity, which JSON has not.
        return json.loads(body, parse_int=str, parse_float=str, parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise RequestError(f"ERR failed to parse command: invalid JSON ({exc})") from exc


def parse_command(raw: Any) -> Command:
    """One JSON command array as Redis arguments; strings as UTF-8, numbers as decimal text, booleans as
    `true`/`false` (the SDK sends Python booleans as JSON booleans: Upstash takes them as that text)."""
    if not isinstance(raw, list):
        raise RequestError("ERR failed to parse command: a command must be a JSON array")
    if not raw:
        raise RequestError("ERR empty command")
    args = [_argument(item, index) for index, item in enumerate(raw)]
    check_allowed(args)
    check_key_sizes(args)
    return args


def parse_commands(raw: Any) -> list[Command]:
    """The body of /pipeline or /multi-exec: an array of command arrays."""
    if not isinstance(raw, list):
        raise RequestError("ERR failed to parse pipeline request: the body must be an array of commands")
    if not raw:
        raise RequestError("ERR empty pipeline request")
    return [parse_command(item) for item in raw]


def _argument(item: Any, index: int) -> bytes:
    if isinstance(item, str):
        return item.encode()
    # bool is an int subclass: test it first, or `true` would become "True".
    if isinstance(item, bool):
        return b"true" if item else b"false"
    if isinstance(item, int):
        return str(item).encode()
    if isinstance(item, float):
        return repr(item).encode()
    # The SDK never sends these: it turns None, dicts and lists into JSON text first. What Upstash does with
    # them is undocumented, so they are refused rather than guessed at.
    kinds: dict[type, str] = {dict: "object", list: "array"}
    kind = "null" if item is None else kinds.get(type(item), type(item).__name__)
    raise RequestError(
        f"ERR failed to parse command: argument {index} is {'an' if kind[0] in 'ao' else 'a'} {kind}, "
        "not a string, number or boolean"
    )


def name_of(args: Command) -> str:
    return args[0].decode(errors="replace").upper()


def check_allowed(args: Command) -> None:
    name = name_of(args)
    if name in REFUSED:
        raise RequestError(
            f"ERR Command is not available: '{name}'. See https://upstash.com/docs/redis/overall/rediscompatibility"
        )
    if name in STREAM_READS and any(arg.upper() == b"BLOCK" for arg in args[1:]):
        raise RequestError(f"ERR Command is not available: '{name}' with BLOCK")


def keys_of(args: Command) -> Sequence[bytes]:
    name = name_of(args)
    if name in _KEYLESS or len(args) < 2:
        return ()
    if name in _ALL_KEYS:
        return args[1:]
    if name == "MSET" or name == "MSETNX":
        return args[1::2]
    if name in _NUMKEYS_AT_2:
        try:
            count = int(args[2])
        except (IndexError, ValueError):
            return ()
        return args[3 : 3 + max(count, 0)]
    return args[1:2]


def check_key_sizes(args: Command) -> None:
    for key in keys_of(args):
        if len(key) > MAX_KEY_BYTES:
            limit, actual = MAX_KEY_BYTES, len(key)
            raise RequestError(f"ERR max key size exceeded. Limit: {limit} bytes, Actual: {actual} bytes")


def encode_result(value: Any, base64_encoding: bool) -> Any:
    """A raw RESP2 reply as JSON: bytes as text (base64 if asked, except exactly "OK"), ints and null raw."""
    if isinstance(value, bytes):
        if not base64_encoding:
            return value.decode(errors="replace")
        if value == b"OK":
            return "OK"
        return base64.b64encode(value).decode()
    if isinstance(value, list):
        return [encode_result(item, base64_encoding) for item in value]
    return value  # int or None
