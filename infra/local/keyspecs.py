"""Which arguments of a Redis command are keys, from the server's own key specs (`COMMAND`, Redis 7+).

One compact text form serves three readers: the Lua guard that a key-locking script runs on Redis (it
searches the text itself, see keyguard.py), the embedded backend's checks, and the cluster backend's
routing. A line per command: `name=FLAGS:SPEC;SPEC`, where FLAGS holds `w` for a write command and `+` for
a container whose subcommands have lines of their own (`object|encoding=...`), and a SPEC is
`<begin>/<find>`:

    i<pos>                      begin at argument <pos>
    k<KEYWORD>,<startfrom>      begin after <KEYWORD>, searched from <startfrom> (negative: from the end)
    r<lastkey>,<step>,<limit>   a range of keys (lastkey < 0 counts from the end)
    n<keynumidx>,<firstkey>,<step>  a count of keys, then the keys

Positions count the command name as 0, as Redis does. `key_positions` follows Redis's
`getKeysUsingKeySpecs` (db.c). Redis leaves SORT's STORE key to a function of its own (its spec is
"unknown"): `EXTRA_SPECS` adds it. MIGRATE's empty key before KEYS is taken as a key (Redis skips it).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from infra.local.keyspecs_redis70 import SNAPSHOT_VERSION, SPECS_TEXT

__all__ = ["SNAPSHOT_VERSION", "CommandSpec", "KeySpec", "KeySpecs", "key_positions", "redis70"]


@dataclass(frozen=True)
class KeySpec:
    begin: str  # "i" (index) or "k" (keyword)
    begin_arg: int  # the index, or the keyword's startfrom
    keyword: bytes
    find: str  # "r" (range) or "n" (keynum)
    a: int  # lastkey, or keynumidx
    b: int  # keystep, or firstkey
    c: int  # limit, or keystep


@dataclass(frozen=True)
class CommandSpec:
    write: bool = False
    container: bool = False
    keys: tuple[KeySpec, ...] = ()


# Keys that Redis finds with code instead of a key spec: SORT's and SORT_RO's STORE destination.
EXTRA_SPECS = {"sort": "kSTORE,2/r0,1,0"}


class KeySpecs:
    """Every command's key specs, read from the compact text form (EXTRA_SPECS added)."""

    def __init__(self, text: str) -> None:
        lines = []
        for line in text.splitlines():
            name, _, rest = line.partition("=")
            if name in EXTRA_SPECS:
                rest += (";" if not rest.endswith(":") else "") + EXTRA_SPECS[name]
            if name:
                lines.append(f"{name}={rest}")
        self.text = "\n" + "\n".join(lines) + "\n"  # each line between newlines: the Lua guard searches it
        self.commands = {name: _parse_line(rest) for name, _, rest in (line.partition("=") for line in lines)}

    def lookup(self, args: Sequence[bytes]) -> CommandSpec | None:
        name = args[0].decode(errors="replace").lower()
        spec = self.commands.get(name)
        if spec is not None and spec.container and len(args) > 1:
            return self.commands.get(f"{name}|{args[1].decode(errors='replace').lower()}")
        return spec

    def keys_of(self, args: Sequence[bytes]) -> list[bytes]:
        spec = self.lookup(args)
        if spec is None:
            return []
        return [args[position] for position in key_positions(spec.keys, args)]

    def is_write(self, args: Sequence[bytes]) -> bool:
        spec = self.lookup(args)
        return spec is not None and spec.write


def _parse_line(rest: str) -> CommandSpec:
    flags, _, specs = rest.partition(":")
    keys = tuple(_parse_spec(part) for part in specs.split(";") if part)
    return CommandSpec(write="w" in flags, container="+" in flags, keys=keys)


def _parse_spec(text: str) -> KeySpec:
    begin, _, find = text.partition("/")
    if begin[0] == "k":
        keyword, _, startfrom = begin[1:].rpartition(",")
        begin_arg, word = int(startfrom), keyword.encode()
    else:
        begin_arg, word = int(begin[1:]), b""
    a, b, c = (int(part) for part in find[1:].split(","))
    return KeySpec(begin[0], begin_arg, word, find[0], a, b, c)


def key_positions(specs: Iterable[KeySpec], args: Sequence[bytes]) -> list[int]:
    """The argument positions that are keys, spec by spec (Redis's getKeysUsingKeySpecs)."""
    argc = len(args)
    positions: list[int] = []
    for spec in specs:
        first = _begin(spec, args)
        if first is None:
            continue
        if spec.find == "r":
            if spec.a >= 0:
                last = first + spec.a
            elif spec.c == 0:
                last = argc + spec.a
            else:
                last = first + ((argc - first) // spec.c + spec.a)
            step = spec.b
        else:
            if first + spec.a >= argc:
                continue
            raw = args[first + spec.a]
            if not raw.isdigit():  # Redis's string2ll, negative counts refused
                continue
            count = int(raw)
            first += spec.b
            last = first + count - 1
            step = spec.c
        if last >= argc or last < first or first >= argc or step <= 0:
            continue  # a malformed call: Redis itself answers it with a syntax or arity error
        positions.extend(range(first, last + 1, step))
    return positions


def _begin(spec: KeySpec, args: Sequence[bytes]) -> int | None:
    if spec.begin == "i":
        return spec.begin_arg
    argc, start = len(args), spec.begin_arg
    index, end, delta = (start, argc - 1, 1) if start > 0 else (argc + start, 1, -1)
    while index != end and 1 <= index < argc:
        if args[index].upper() == spec.keyword:
            return index + 1
        index += delta
    return None


def text_from_command_reply(reply: list[Any]) -> str:
    """The compact text of a raw RESP2 `COMMAND` reply (key specs on Redis 7+, first/last/step before)."""
    lines: list[str] = []
    for entry in reply:
        lines.extend(_lines_of(entry, prefix=""))
    return "\n".join(sorted(lines)) + "\n"


def _lines_of(entry: list[Any], prefix: str) -> list[str]:
    name = prefix + entry[0].decode().lower()
    flags = "w" if b"write" in entry[2] else ""
    subcommands = entry[9] if len(entry) > 9 else []
    if subcommands:
        flags += "+"
    specs = [_spec_text(raw) for raw in entry[8]] if len(entry) > 8 else [_legacy_spec(entry)]
    line = f"{name}={flags}:{';'.join(spec for spec in specs if spec)}"
    lines = [line]
    for sub in subcommands:
        sub_name = sub[0].decode().lower().split("|")[-1]
        lines.extend(_lines_of([sub_name.encode(), *sub[1:]], prefix=name + "|"))
    return lines


def _pairs(flat: list[Any]) -> dict[bytes, Any]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _spec_text(raw: list[Any]) -> str:
    fields = _pairs(raw)
    begin, find = _pairs(fields[b"begin_search"]), _pairs(fields[b"find_keys"])
    begin_spec, find_spec = _pairs(begin[b"spec"]), _pairs(find[b"spec"])
    if begin[b"type"] == b"index":
        begin_text = f"i{begin_spec[b'index']}"
    elif begin[b"type"] == b"keyword":
        begin_text = f"k{begin_spec[b'keyword'].decode()},{begin_spec[b'startfrom']}"
    else:
        return ""
    if find[b"type"] == b"range":
        find_text = f"r{find_spec[b'lastkey']},{find_spec[b'keystep']},{find_spec[b'limit']}"
    elif find[b"type"] == b"keynum":
        find_text = f"n{find_spec[b'keynumidx']},{find_spec[b'firstkey']},{find_spec[b'keystep']}"
    else:
        return ""
    return f"{begin_text}/{find_text}"


def _legacy_spec(entry: list[Any]) -> str:
    first, last, step = int(entry[3]), int(entry[4]), int(entry[5])
    if first <= 0:
        return ""
    return f"i{first}/r{last - first if last >= 0 else last},{step},0"


def read_server(url: str) -> tuple[str, str]:
    """The version and the compact key-spec text of the Redis server at `url` (a blocking call)."""
    import redis

    client = redis.Redis.from_url(url, protocol=2)
    try:
        version = str(client.info("server")["redis_version"])
        connection = client.connection_pool.get_connection()
        connection.send_command("COMMAND")  # type: ignore[no-untyped-call]
        reply = connection.read_response(disable_decoding=True)  # raw: no callback reshapes it
        client.connection_pool.release(connection)
    finally:
        client.close()
    return version, text_from_command_reply(reply)


def snapshot_module(url: str) -> str:
    """The source of keyspecs_redis70.py, read from the Redis server at `url`."""
    version, text = read_server(url)
    return (
        f'"""Key specs of Redis {version} (`python -m infra.local.keyspecs URL`; see keyspecs.py)."""\n\n'
        f'SNAPSHOT_VERSION = "{version}"\nSPECS_TEXT = """\\\n{text}"""\n'
    )


@cache
def redis70() -> KeySpecs:
    """The key specs of Redis 7.0 (a snapshot: fakeredis has no `COMMAND INFO` of its own)."""
    return KeySpecs(SPECS_TEXT)


if __name__ == "__main__":
    import sys

    sys.stdout.write(snapshot_module(sys.argv[1]))
