"""Upstash's script-locking rules as the gateway sees them: shebang flags, known scripts, global-lock count.

Upstash runs a script under its global lock unless the script's shebang says `allow-key-locking`; then it
locks only the keys in KEYS and refuses any other key. Scripts queued in a transaction always take the
global lock. Redis OSS rejects the flag, so the backends rewrite such scripts (keyguard.py, embedded.py);
this module decides which scripts those are and counts the rest.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from infra.local.protocol import Command, RequestError

KEY_LOCKING = "allow-key-locking"
NO_WRITES = "no-writes"
# Redis 7's own shebang flags; anything else is "Unexpected flag" there.
REDIS_FLAGS = frozenset({NO_WRITES, "allow-oom", "allow-stale", "no-cluster", "allow-cross-slot-keys"})

BODY_COMMANDS = frozenset({b"EVAL", b"EVAL_RO"})
SHA_COMMANDS = frozenset({b"EVALSHA", b"EVALSHA_RO"})
FUNCTION_COMMANDS = frozenset({b"FCALL", b"FCALL_RO"})
SCRIPT_RUNNERS = BODY_COMMANDS | SHA_COMMANDS | FUNCTION_COMMANDS
NOSCRIPT = "NOSCRIPT No matching script. Please use EVAL."


@dataclass(frozen=True)
class Shebang:
    """A script's first line if it is `#!...`; `end` is where the body after it starts (past the newline)."""

    present: bool = False
    flags: frozenset[str] = frozenset()
    line: bytes = b""
    end: int = 0

    @property
    def key_locking(self) -> bool:
        return KEY_LOCKING in self.flags

    @property
    def no_writes(self) -> bool:
        return NO_WRITES in self.flags


NO_SHEBANG = Shebang()


def shebang_of(body: bytes) -> Shebang:
    if not body.startswith(b"#!"):
        return NO_SHEBANG
    newline = body.find(b"\n")
    line = body if newline < 0 else body[:newline]
    flags: set[str] = set()
    for part in line.split()[1:]:
        if part.startswith(b"flags="):
            flags.update(flag.decode(errors="replace") for flag in part[6:].split(b",") if flag)
    return Shebang(True, frozenset(flags), line, len(body) if newline < 0 else newline + 1)


def redis_shebang(shebang: Shebang) -> bytes:
    """The shebang line without Upstash's flag, which Redis rejects (`#!lua` alone if no flag is left)."""
    kept = [flag for flag in sorted(shebang.flags) if flag != KEY_LOCKING]
    return b"#!lua" + (f" flags={','.join(kept)}".encode() if kept else b"")


def sha1_hex(body: bytes) -> bytes:
    return hashlib.sha1(body).hexdigest().encode()  # noqa: S324  (Redis names scripts by SHA-1)


class ScriptRegistry:
    """The key-locking scripts this gateway has seen (by the SHA of their text), and the global-lock count.

    Only flagged scripts are hashed and kept: a script without the flag costs a prefix test.
    """

    def __init__(self, strict: bool = False) -> None:
        self.strict = strict
        self.key_locking: dict[bytes, bytes] = {}  # SHA-1 hex -> script text
        self.global_lock_scripts = 0

    def learn(self, body: bytes) -> Shebang:
        shebang = shebang_of(body)
        if shebang.key_locking:
            self.key_locking.setdefault(sha1_hex(body), body)
        return shebang

    def check(self, commands: list[Command]) -> None:
        """Learn the scripts sent; in strict mode refuse one that would take Upstash's global lock."""
        for args in commands:
            name = args[0].upper()
            if name in BODY_COMMANDS and len(args) > 1:
                locking = self.learn(args[1]).key_locking
            elif name == b"SCRIPT" and len(args) > 2 and args[1].upper() == b"LOAD":
                self.learn(args[2])
                continue
            elif name in SHA_COMMANDS and len(args) > 1:
                if self.strict and args[1].lower() not in self.key_locking:
                    # The client falls back to EVAL with the text, where the flags can be read.
                    raise RequestError(NOSCRIPT)
                continue
            elif name in FUNCTION_COMMANDS:
                locking = False
            else:
                continue
            if self.strict and not locking:
                raise RequestError(
                    f"ERR strict locking: {name.decode()} of a script without `#!lua flags={KEY_LOCKING}` "
                    "would take Upstash's global lock"
                )

    def count(self, commands: list[Command], replies: list[object], transaction: bool) -> None:
        """Count the scripts that ran under what would be Upstash's global lock."""
        for args, reply in zip(commands, replies, strict=False):
            name = args[0].upper()
            if name not in SCRIPT_RUNNERS or _is_noscript(reply):
                continue
            if transaction or not self._key_locking(name, args):
                self.global_lock_scripts += 1

    def _key_locking(self, name: bytes, args: Command) -> bool:
        if len(args) < 2:
            return False
        if name in BODY_COMMANDS:
            return shebang_of(args[1]).key_locking
        return name in SHA_COMMANDS and args[1].lower() in self.key_locking


def _is_noscript(reply: object) -> bool:
    return isinstance(reply, Exception) and str(reply).startswith("NOSCRIPT")
