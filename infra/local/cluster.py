"""The Redis Cluster backend: each command goes to the master that owns its first key's slot.

redis-py's cluster client keeps the slot map (CLUSTER SLOTS at start, again after a MOVED reply); the
commands themselves travel over one raw RESP2 pool per master (backends.RedisBackend), so replies and error
texts have the same shapes as on a single Redis. Keys come from the cluster's own key specs (`COMMAND`).

- A command, or a script by its declared KEYS, runs where its first key lives; keys in other slots get the
  node's own `CROSSSLOT` error. Keyless commands run on the first master, except the ones that must reach
  every master (SCRIPT LOAD/FLUSH/EXISTS, FLUSHDB, FLUSHALL, DBSIZE, KEYS), whose replies are combined.
- A pipeline runs in order: consecutive commands for one master go in one batch, masters one after another.
- A transaction needs every key in one slot (Redis Cluster's rule); otherwise it is refused with
  `CROSSSLOT` and nothing runs. Upstash, not being a cluster, would run it: this is stricter, never weaker.
- SCAN and RANDOMKEY, whose cursor or answer spans masters, are refused (a known gap).
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisError, ResponseError

from infra.local.backends import BACKEND_DOWN, Backend, BackendUnavailableError, RedisBackend, Reply
from infra.local.keyguard import RedisScripts
from infra.local.keyspecs import KeySpecs
from infra.local.protocol import Command
from infra.local.scripts import ScriptRegistry

CROSSSLOT = "CROSSSLOT Keys in request don't hash to the same slot"
EVERY_MASTER = frozenset({b"SCRIPT", b"FLUSHDB", b"FLUSHALL", b"DBSIZE", b"KEYS"})
UNSUPPORTED = frozenset({b"SCAN", b"RANDOMKEY"})
REDIRECTS = 3  # MOVED/ASK replies followed per command before its error is returned as it is


class ClusterBackend(Backend):
    """A Redis Cluster reached through its masters; see the module docstring for the routing rules."""

    def __init__(self, url: str, registry: ScriptRegistry | None = None) -> None:
        self.url = url
        self.cluster = RedisCluster.from_url(url, socket_connect_timeout=2.0)
        self.nodes: dict[str, RedisBackend] = {}
        self.specs: KeySpecs | None = None
        self.ready = asyncio.Lock()
        if registry is not None:
            self.scripts = RedisScripts(registry, self.key_specs)

    async def close(self) -> None:
        await self.cluster.aclose()
        for node in self.nodes.values():
            await node.close()

    async def key_specs(self) -> KeySpecs:
        await self._start()
        assert self.specs is not None
        return self.specs

    async def _start(self) -> None:
        if self.specs is not None:
            return
        async with self.ready:
            if self.specs is None:
                try:
                    await self.cluster.initialize()
                except (RedisError, *BACKEND_DOWN) as exc:
                    raise BackendUnavailableError(f"{type(exc).__name__}: {exc}") from exc
                self.specs = await self._node(self._masters()[0]).key_specs()

    def _masters(self) -> list[ClusterNode]:
        return sorted(self.cluster.get_primaries(), key=lambda node: node.name)

    def _node(self, node: ClusterNode) -> RedisBackend:
        backend = self.nodes.get(node.name)
        if backend is None:
            backend = self.nodes[node.name] = RedisBackend(f"redis://{node.host}:{node.port}/0")
        return backend

    def _slot(self, args: Command) -> int | None:
        assert self.specs is not None
        keys = self.specs.keys_of(args)
        return self.cluster.keyslot(keys[0]) if keys else None

    def _owner(self, args: Command) -> ClusterNode:
        slot = self._slot(args)
        if slot is None:
            return self._masters()[0]
        return self.cluster.nodes_manager.get_node_from_slot(slot)

    async def _run(self, commands: list[Command]) -> list[Reply]:
        await self._start()
        replies: list[Reply] = []
        batch: list[Command] = []
        owner: ClusterNode | None = None
        for args in commands:
            name = args[0].upper()
            if name in EVERY_MASTER or name in UNSUPPORTED:
                replies.extend(await self._batch(owner, batch))
                batch, owner = [], None
                replies.append(await self._keyless(name, args))
                continue
            node = self._owner(args)
            if owner is not None and node.name != owner.name:
                replies.extend(await self._batch(owner, batch))
                batch = []
            owner = node
            batch.append(args)
        replies.extend(await self._batch(owner, batch))
        return replies

    async def _batch(self, owner: ClusterNode | None, batch: list[Command]) -> list[Reply]:
        if owner is None or not batch:
            return []
        replies = await self._node(owner).pipeline(batch)
        for index, reply in enumerate(replies):
            if _redirect(reply) is not None:
                replies[index] = await self._follow(batch[index], reply)
        return replies

    async def _follow(self, args: Command, reply: Reply) -> Reply:
        """Follow MOVED (the slot map changed: read it again) and ASK (a slot in migration)."""
        for _ in range(REDIRECTS):
            redirect = _redirect(reply)
            if redirect is None:
                return reply
            kind, address = redirect
            host, _, port = address.rpartition(":")
            target = RedisBackend(f"redis://{host}:{port}/0") if kind == "ASK" else None
            if target is not None:
                try:
                    reply = (await target.pipeline([[b"ASKING"], args]))[1]
                finally:
                    await target.close()
                continue
            await self.cluster.nodes_manager.initialize()
            reply = (await self._node(self._owner(args)).pipeline([args]))[0]
        return reply

    async def _keyless(self, name: bytes, args: Command) -> Reply:
        if name in UNSUPPORTED:
            return ResponseError(f"ERR {name.decode()} is not supported by the gateway's cluster backend")
        replies = [(await self._node(node).pipeline([args]))[0] for node in self._masters()]
        return _combine(name, args, replies)

    async def _transact(self, commands: list[Command]) -> list[Reply]:
        await self._start()
        slots = {slot for slot in (self._slot(args) for args in commands) if slot is not None}
        if len(slots) > 1:
            raise ResponseError(CROSSSLOT)
        owner = self.cluster.nodes_manager.get_node_from_slot(slots.pop()) if slots else self._masters()[0]
        try:
            return await self._node(owner)._transact(commands)
        except ResponseError as error:
            if _redirect(error) is None:
                raise
            await self.cluster.nodes_manager.initialize()  # nothing ran: EXEC was refused at queue time
            return await self._node(self._owner(commands[0]))._transact(commands)


def _redirect(reply: Reply) -> tuple[str, str] | None:
    if isinstance(reply, ResponseError):
        parts = str(reply).split()
        if len(parts) == 3 and parts[0] in ("MOVED", "ASK"):
            return parts[0], parts[2]
    return None


def _combine(name: bytes, args: Command, replies: list[Any]) -> Reply:
    """One reply from every master's: the first error, else summed, joined or (SCRIPT EXISTS) all-true."""
    for reply in replies:
        if isinstance(reply, ResponseError):
            return reply
    if name == b"DBSIZE":
        return sum(replies)
    if name == b"KEYS":
        return [key for reply in replies for key in reply]
    if name == b"SCRIPT" and len(args) > 1 and args[1].upper() == b"EXISTS":
        return [min(found) for found in zip(*replies, strict=True)]
    return replies[0]
