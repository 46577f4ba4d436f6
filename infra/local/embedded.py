"""The embedded backend: fakeredis (with Lua) in this process, one fake connection driven from one thread.

Shapes as a real server's (raw RESP2, full error texts). What fakeredis lacks and the gateway needs is added
on its connection class: script shebangs (Redis 7's flags and Upstash's `allow-key-locking`, whose key rule
is checked on every `redis.call` in Python), EVAL_RO and EVALSHA_RO, and a Python exception inside a command
answered as that command's error reply rather than escaping (in a transaction the others still apply, as
after any error raised while EXEC runs).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from fakeredis import FakeServer
from fakeredis import _msgs as msgs
from fakeredis._command_args_parsing import Int
from fakeredis._commands import command
from fakeredis._helpers import SimpleError
from fakeredis._socket import FakeSocket
from fakeredis.commands_mixins.scripting_mixin import _convert_redis_arg
from redis import Redis
from redis.exceptions import ResponseError

from infra.local.backends import Backend, Reply
from infra.local.keyguard import DATABASE_WIDE, DYNAMIC_KEYS
from infra.local.keyspecs import KeySpecs, redis70
from infra.local.protocol import Command
from infra.local.scripts import KEY_LOCKING, REDIS_FLAGS, Shebang, sha1_hex, shebang_of

READ_ONLY_SCRIPT = "ERR Write commands are not allowed from read-only scripts."
WRITE_FLAG_WITH_RO = "ERR Can not execute a script with write flag using *_ro command."


@dataclass(frozen=True)
class ScriptGuard:
    """What the running script may do: write or not, and (under allow-key-locking) which keys."""

    read_only: bool
    declared: frozenset[bytes] | None  # None: any key (no allow-key-locking)

    def refusal(self, specs: KeySpecs, args: list[bytes]) -> str | None:
        if self.read_only and specs.is_write(args):
            return READ_ONLY_SCRIPT
        if self.declared is None:
            return None
        name = args[0].decode(errors="replace").upper()
        if name.lower() in DATABASE_WIDE:
            return f"ERR {name} is not allowed in a script with {KEY_LOCKING}"
        for key in specs.keys_of(args):
            if key not in self.declared:
                text = key.decode(errors="replace")
                return f"{DYNAMIC_KEYS}: {name} touches '{text}', which is not in KEYS"
        return None


class _GatewaySocket(FakeSocket):
    """fakeredis's in-memory connection with full error texts, shebangs, EVAL_RO and the script guard."""

    specs = redis70()
    guard: ScriptGuard | None = None

    def _decode_error(self, error: SimpleError) -> ResponseError:
        return ResponseError(error.value)

    def _run_command(self, func: Any, sig: Any, args: list[Any], from_script: bool) -> Any:
        try:
            return super()._run_command(func, sig, args, from_script)
        except (SimpleError, ResponseError):
            raise
        except Exception as exc:  # a fakeredis defect (cjson.decode of bad JSON raises JSONDecodeError)
            # Returned, not raised: fakeredis hands a command's own errors back the same way.
            return SimpleError(f"ERR embedded backend failed on {sig.name.upper()}: {exc}")

    def _lua_redis_call(self, lua_runtime: Any, expected_globals: set[Any], op: bytes, *args: Any) -> Any:
        if self.guard is not None:
            call = [_convert_redis_arg(op), *(_convert_redis_arg(arg) for arg in args)]
            problem = self.guard.refusal(self.specs, call)
            if problem is not None:
                raise SimpleError(problem)
        return super()._lua_redis_call(lua_runtime, expected_globals, op, *args)

    def eval(self, script: bytes, numkeys: int, *keys_and_args: bytes) -> Any:
        return self._eval(script, numkeys, keys_and_args, read_only=False)

    # fakeredis registers commands by name for every connection class; only this one has the method.
    @command(name="EVAL_RO", fixed=(bytes, Int), repeat=(bytes,), flags=msgs.FLAG_NO_SCRIPT)
    def eval_ro(self, script: bytes, numkeys: int, *keys_and_args: bytes) -> Any:
        return self._eval(script, numkeys, keys_and_args, read_only=True)

    @command(name="EVALSHA_RO", fixed=(bytes, Int), repeat=(bytes,), flags=msgs.FLAG_NO_SCRIPT)
    def evalsha_ro(self, sha1: bytes, numkeys: int, *keys_and_args: bytes) -> Any:
        script = self._server.script_cache.get(sha1.lower())
        if script is None:
            raise SimpleError(msgs.NO_MATCHING_SCRIPT_MSG)
        return self._eval(script, numkeys, keys_and_args, read_only=True)

    def _eval(self, script: bytes, numkeys: int, keys_and_args: tuple[bytes, ...], read_only: bool) -> Any:
        shebang = shebang_of(script)
        _check_flags(shebang, read_only)
        if not shebang.present and not read_only:
            return super().eval(script, numkeys, *keys_and_args)
        declared = frozenset(keys_and_args[: max(numkeys, 0)]) if shebang.key_locking else None
        previous, self.guard = self.guard, ScriptGuard(read_only or shebang.no_writes, declared)
        body = b"\n" + script[shebang.end :] if shebang.present else script  # same line numbers
        try:
            return super().eval(body, numkeys, *keys_and_args)
        finally:
            self.guard = previous
            # EVAL cached the body it ran; the client knows the script by the SHA of what it sent.
            self._server.script_cache.pop(sha1_hex(body), None)
            self._server.script_cache[sha1_hex(script)] = script


def _check_flags(shebang: Shebang, read_only: bool) -> None:
    """Redis 7's checks of a shebang, with Upstash's flag accepted too."""
    if not shebang.present:
        return
    engine = shebang.line.split()[0][2:] if shebang.line.split() else b""
    if engine != b"lua":
        raise SimpleError(f"ERR Unexpected engine in script shebang: {engine.decode(errors='replace')}")
    for flag in sorted(shebang.flags - REDIS_FLAGS - {KEY_LOCKING}):
        raise SimpleError(f"ERR Unexpected flag in script shebang: {flag}")
    if read_only and not shebang.no_writes:
        raise SimpleError(WRITE_FLAG_WITH_RO)


def _normalise(reply: Any) -> Reply:
    """fakeredis's Python values as the raw RESP2 shapes a real server's replies parse to."""
    if isinstance(reply, bool):
        return int(reply)
    if isinstance(reply, str):
        return reply.encode()
    if isinstance(reply, float):
        return repr(reply).encode()
    if isinstance(reply, (list, tuple, set)):
        return [_normalise(item) for item in reply]
    return reply


class EmbeddedBackend(Backend):
    """fakeredis in this process: one fake connection, driven from one worker thread.

    One thread keeps the event loop free while a script runs, and runs each batch whole, so a MULTI ... EXEC
    never interleaves with another request's commands.
    """

    def __init__(self) -> None:
        self.server = FakeServer()
        self.socket = _GatewaySocket(self.server, db=0, client_class=Redis)
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jobq-embedded-redis")

    async def close(self) -> None:
        self.worker.shutdown(wait=False)

    async def _run(self, commands: list[Command]) -> list[Reply]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.worker, self._run_sync, commands)

    def _run_sync(self, commands: list[Command]) -> list[Reply]:
        replies: list[Reply] = []
        responses = self.socket.responses
        assert responses is not None  # only None once the socket is closed
        try:
            for args in commands:
                self.socket._process_command(args)
                replies.append(_normalise(responses.get_nowait()))
        except BaseException:
            # The one shared connection must not stay inside a MULTI: the next request would be queued in it.
            if self.socket._transaction is not None:
                self.socket._process_command([b"DISCARD"])
                responses.get_nowait()
            raise
        return replies
