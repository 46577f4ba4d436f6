"""Key-locking scripts on a Redis server: the flag Redis rejects is dropped and a key check is wrapped around
`redis`.

Redis gives no hook into `redis.call` (its `redis` table is read-only), so the script text itself is
rewritten: after the shebang, on the same line as the script's first line (line numbers stay the same), a
prelude shadows `redis` with a local table whose `call` and `pcall` find each command's keys from the
server's key specs (keyspecs.py, searched in string constants, so a call costs no table building) and
refuse any key not in KEYS before handing the call to the real `redis`. The client keeps its own SHA (of the
text it sent): EVALSHA, SCRIPT LOAD and SCRIPT EXISTS are mapped to the rewritten script's SHA.

Not checked: a script that reaches the real `redis` through `_G` or `rawget`, keys hidden in SORT's BY/GET
patterns, and commands the key specs do not describe.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from infra.local.keyspecs import KeySpecs
from infra.local.protocol import Command
from infra.local.scripts import (
    BODY_COMMANDS,
    SHA_COMMANDS,
    ScriptRegistry,
    redis_shebang,
    sha1_hex,
    shebang_of,
)

DYNAMIC_KEYS = "ERR Dynamic keys are not allowed with allow-key-locking"  # Upstash's wording is undocumented
# Commands that need the whole database, refused under allow-key-locking as Upstash refuses FLUSHDB.
DATABASE_WIDE = ("flushdb", "flushall", "keys", "scan", "randomkey", "dbsize", "swapdb")

# One line once joined: no `--` comments. Positions count the command name as 0 (argv[i + 1] in Lua).
_PRELUDE = """
local redis = (function(real, keys)
  local NAMED, ALL = %(named)s, %(all)s
  local DENIED = {%(denied)s}
  local declared = {}
  for i = 1, #keys do declared[keys[i]] = true end
  local parsed = {}
  local function specs_of(name)
    local found = parsed[name]
    if found then return found end
    found = {}
    local text = NAMED
    local _, e = string.find(text, "\\n" .. name .. "=", 1, true)
    if not e then
      text = ALL
      _, e = string.find(text, "\\n" .. name .. "=", 1, true)
    end
    if e then
      local line = string.sub(text, e + 1, string.find(text, "\\n", e + 1, true) - 1)
      local flags, rest = string.match(line, "^([^:]*):(.*)$")
      found.container = string.find(flags, "+", 1, true) ~= nil
      for begin, find in string.gmatch(rest, "([^/;]+)/([^;]+)") do
        local spec = {b = string.sub(begin, 1, 1), f = string.sub(find, 1, 1)}
        if spec.b == "k" then
          local word, from = string.match(begin, "^k(.*),(%%-?%%d+)$")
          spec.word, spec.from = word, tonumber(from)
        else
          spec.from = tonumber(string.sub(begin, 2))
        end
        local x, y, z = string.match(find, "^.(%%-?%%d+),(%%-?%%d+),(%%-?%%d+)$")
        spec.x, spec.y, spec.z = tonumber(x), tonumber(y), tonumber(z)
        found[#found + 1] = spec
      end
    end
    parsed[name] = found
    return found
  end
  local function begin_of(spec, argv, argc)
    if spec.b == "i" then return spec.from end
    local i, stop, delta = spec.from, argc - 1, 1
    if spec.from <= 0 then i, stop, delta = argc + spec.from, 1, -1 end
    while i ~= stop and i >= 1 and i < argc do
      if string.upper(tostring(argv[i + 1])) == spec.word then return i + 1 end
      i = i + delta
    end
    return nil
  end
  local function refusal(argv, argc)
    local name = string.lower(tostring(argv[1]))
    if DENIED[name] then
      return "ERR " .. string.upper(name) .. " is not allowed in a script with allow-key-locking"
    end
    local specs = specs_of(name)
    if specs.container and argc > 1 then specs = specs_of(name .. "|" .. string.lower(tostring(argv[2]))) end
    for _, spec in ipairs(specs) do
      local first, last, step = begin_of(spec, argv, argc), nil, nil
      if first and spec.f == "r" then
        if spec.x >= 0 then last = first + spec.x
        elseif spec.z == 0 then last = argc + spec.x
        else last = first + math.floor((argc - first) / spec.z) + spec.x end
        step = spec.y
      elseif first then
        local raw = first + spec.x < argc and string.match(tostring(argv[first + spec.x + 1]), "^%%d+$")
        if raw then first = first + spec.y; last = first + tonumber(raw) - 1; step = spec.z end
      end
      if last and step > 0 and last < argc and last >= first and first < argc then
        for i = first, last, step do
          local key = tostring(argv[i + 1])
          if not declared[key] then
            return "%(dynamic)s: " .. string.upper(name) ..
              " touches '" .. key .. "', which is not in KEYS"
          end
        end
      end
    end
    return nil
  end
  local guarded = setmetatable({}, {__index = real})
  guarded.call = function(...)
    local problem = refusal({...}, select("#", ...))
    if problem then error({err = problem}) end
    return real.call(...)
  end
  guarded.pcall = function(...)
    local problem = refusal({...}, select("#", ...))
    if problem then return {err = problem} end
    return real.pcall(...)
  end
  return guarded
end)(redis, KEYS);
"""


def _lua_string(text: str) -> str:
    return '"' + text.replace("\n", "\\n") + '"'


def prelude(specs: KeySpecs, body: bytes = b"") -> bytes:
    """The key check as one line of Lua, ending in `; ` so the script's first line can follow it.

    The specs of the commands the script names come first in a short string (a call searches it first):
    searching all of them costs a few microseconds a call; a command named only at run time is still found.
    """
    words = {word.lower().decode() for word in re.findall(rb"[A-Za-z_][A-Za-z0-9_]*", body)}
    lines = [line for line in specs.text.split("\n") if line]
    named = [line for line in lines if line.partition("=")[0].split("|")[0] in words]
    text = _PRELUDE % {
        "named": _lua_string("\n" + "".join(line + "\n" for line in named)),
        "all": _lua_string(specs.text),
        "denied": ", ".join(f"{name} = true" for name in DATABASE_WIDE),
        "dynamic": DYNAMIC_KEYS,
    }
    return " ".join(line.strip() for line in text.strip().splitlines()).encode() + b" "


@dataclass(frozen=True)
class Wrapped:
    sha: bytes  # what Redis knows it by
    body: bytes


class RedisScripts:
    """Rewrites the key-locking scripts of the commands sent to a Redis server, and maps replies back."""

    def __init__(self, registry: ScriptRegistry, load_specs: Callable[[], Awaitable[KeySpecs]]) -> None:
        self.registry = registry
        self.load_specs = load_specs
        self.specs: KeySpecs | None = None
        self.wrapped: dict[bytes, Wrapped] = {}  # client SHA -> the script Redis runs

    async def translate(self, commands: list[Command]) -> tuple[list[Command], dict[int, Wrapped]]:
        """Commands as Redis must receive them, and which of them (by position) carry a rewritten script."""
        rewritten: dict[int, Wrapped] = {}
        out = commands
        for index, args in enumerate(commands):
            name = args[0].upper()
            if name == b"SCRIPT" and len(args) > 2 and args[1].upper() == b"EXISTS":
                if any(sha.lower() in self.wrapped for sha in args[2:]):
                    out = list(commands) if out is commands else out
                    out[index] = [*args[:2], *(self._redis_sha(sha) for sha in args[2:])]
                continue
            wrapped = await self._wrapped_for(args)
            if wrapped is None:
                continue
            if out is commands:
                out = list(commands)
            if name == b"SCRIPT":
                out[index] = [args[0], args[1], wrapped.body]
            else:
                out[index] = [args[0], wrapped.sha if name in SHA_COMMANDS else wrapped.body, *args[2:]]
            rewritten[index] = wrapped
        return out, rewritten

    def _redis_sha(self, sha: bytes) -> bytes:
        known = self.wrapped.get(sha.lower())
        return sha if known is None else known.sha

    async def _wrapped_for(self, args: Command) -> Wrapped | None:
        if len(args) < 2:
            return None
        name = args[0].upper()
        if name in SHA_COMMANDS:
            sha = args[1].lower()
            known = self.wrapped.get(sha)
            if known is not None or sha not in self.registry.key_locking:
                return known
            return await self._wrap(self.registry.key_locking[sha], sha)
        if name in BODY_COMMANDS:
            body = args[1]
        elif name == b"SCRIPT" and len(args) > 2 and args[1].upper() == b"LOAD":
            body = args[2]
        else:
            return None
        if not body.startswith(b"#!") or not shebang_of(body).key_locking:
            return None
        return await self._wrap(body, sha1_hex(body))

    async def _wrap(self, body: bytes, sha: bytes) -> Wrapped:
        known = self.wrapped.get(sha)
        if known is not None:
            return known
        if self.specs is None:
            self.specs = await self.load_specs()
        shebang = shebang_of(body)
        text = redis_shebang(shebang) + b"\n" + prelude(self.specs, body) + body[shebang.end :]
        wrapped = self.wrapped[sha] = Wrapped(sha1_hex(text), text)
        return wrapped

    def client_shas(
        self, commands: list[Command], rewritten: dict[int, Wrapped], replies: list[object]
    ) -> None:
        """Replies as the client expects them: its own SHA from SCRIPT LOAD and in error texts."""
        for index, wrapped in rewritten.items():
            reply = replies[index]
            client_sha = sha1_hex(commands[index][2]) if commands[index][0].upper() == b"SCRIPT" else None
            if client_sha is not None and reply == wrapped.sha:
                replies[index] = client_sha
            elif isinstance(reply, Exception):
                original = client_sha or self._client_sha_of(wrapped)
                replies[index] = type(reply)(str(reply).replace(wrapped.sha.decode(), original.decode()))

    def _client_sha_of(self, wrapped: Wrapped) -> bytes:
        return next(sha for sha, known in self.wrapped.items() if known is wrapped)
