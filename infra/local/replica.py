"""Replica lag, emulated: plain reads answered as a read replica that has not caught up would answer them.

On an Upstash database with read regions, a plain read is served by the nearest replica, which may lag
behind the primary; a request whose `Upstash-Sync-Token` is at least a write's token is served with that
write applied. With a lag of N ms the gateway remembers, per key, the sync token and time of the last write
that touched it. A plain read (not a script, not a write) of a key written less than N ms ago, sent with a
token below that write's, is run with that key swapped for one that does not exist: the key reads as absent
(nil, empty, 0, TTL -2). Reads of other keys, and reads with a token that covers the write, see the primary.

What it emulates: a reader on another connection (another function instance) that misses a fresh write
unless it sends the writer's token; scripts (EVAL/EVALSHA/FCALL and their _RO forms), write commands and
transactions (/multi-exec) always run on the primary; a pipeline entry sees the pipeline's earlier writes.

What it does not (approximations, all on the side of more staleness than a real replica shows):
- the stale answer is "absent", not the key's earlier value, which the gateway does not keep;
- every write lags by exactly N ms, where a real replica is usually much closer;
- a later write hides a key from a reader whose token covers only an earlier write of it;
- a write command's every key counts as written (the sources of SUNIONSTORE too), and a failed write too;
- a script that declares no KEYS may touch any key (Upstash runs it under its global lock): it counts as a
  write of every key, so for N ms every plain read lags behind it;
- keyless reads (SCAN, KEYS, DBSIZE, RANDOMKEY) and commands the key specs do not know see the primary.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from infra.local import protocol
from infra.local.keyspecs import KeySpecs, key_positions, redis70
from infra.local.protocol import Command
from infra.local.scripts import SCRIPT_RUNNERS

# Appended to a key a replica has not caught up with. It keeps the key's hash tag, so a Redis Cluster still
# routes the command to one slot; no brace in it, so it adds no tag to a key that has none.
ABSENT_SUFFIX = b"\x00jobq-replica-lag-absent"
MAX_TOKEN_DIGITS = 20  # ours have 16; a longer header is no token (and int() of it stays cheap)


@dataclass(frozen=True)
class Write:
    token: int
    at: float  # the clock's seconds


def token_value(header: str | None) -> int:
    """A request's `Upstash-Sync-Token` as a number; 0 (no token) when absent or not one of ours."""
    if header and len(header) <= MAX_TOKEN_DIGITS and header.isascii() and header.isdigit():
        return int(header)
    return 0


class ReplicaLag:
    """The last write of each key in the last `lag_ms`, and the rewrite of reads that lag behind one."""

    def __init__(
        self, lag_ms: int, specs: KeySpecs | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if lag_ms <= 0:
            raise ValueError("replica lag must be a positive number of milliseconds")
        self.lag = lag_ms / 1000
        self.specs = specs or redis70()
        self.clock = clock
        self.writes: dict[bytes, Write] = {}  # in write order (a rewrite moves a key to the end)
        self.everything: Write | None = None  # the last script that may have written any key

    def reads(self, commands: list[Command], header: str | None) -> list[Command]:
        """The commands as a lagging replica would run them (the same list when nothing lags)."""
        if not self.writes and self.everything is None:
            return commands
        now = self.clock()
        self._forget(now)
        token = token_value(header)
        own: set[bytes] = set()  # keys this request wrote in an earlier entry
        own_everything = False
        out: list[Command] = []
        for args in commands:
            out.append(args if own_everything else self._as_replica(args, token, now, own))
            written = self._written(args)
            if written is None:
                own_everything = True
            else:
                own.update(written)
        return out

    def wrote(self, commands: list[Command], token: int) -> None:
        """Remember the writes of a request answered with `token` (refused or failed ones too)."""
        now = self.clock()
        self._forget(now)
        write = Write(token, now)
        for args in commands:
            written = self._written(args)
            if written is None:
                self.everything = write
                continue
            for key in written:
                self.writes.pop(key, None)
                self.writes[key] = write

    def _as_replica(self, args: Command, token: int, now: float, own: set[bytes]) -> Command:
        if args[0].upper() in SCRIPT_RUNNERS:
            return args
        spec = self.specs.lookup(args)
        if spec is None or spec.write:
            return args
        stale = [
            position
            for position in key_positions(spec.keys, args)
            if args[position] not in own and self._lags(args[position], token, now)
        ]
        if not stale:
            return args
        replica = list(args)
        for position in stale:
            replica[position] = args[position] + ABSENT_SUFFIX
        return replica

    def _lags(self, key: bytes, token: int, now: float) -> bool:
        return any(
            write is not None and now - write.at < self.lag and token < write.token
            for write in (self.writes.get(key), self.everything)
        )

    def _written(self, args: Command) -> list[bytes] | None:
        """The keys a command may write; None for a script that may write any key (it declares none)."""
        name = args[0].upper()
        if name in SCRIPT_RUNNERS:
            if name.endswith(b"_RO"):
                return []
            return list(protocol.keys_of(args)) or None
        return self.specs.keys_of(args) if self.specs.is_write(args) else []

    def _forget(self, now: float) -> None:
        """Drop writes every replica has by now: the oldest come first."""
        while self.writes:
            key, write = next(iter(self.writes.items()))
            if now - write.at < self.lag:
                break
            del self.writes[key]
        if self.everything is not None and now - self.everything.at >= self.lag:
            self.everything = None
