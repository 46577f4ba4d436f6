"""What only the Redis Cluster backend does: routing by slot, answers combined over masters, MOVED."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from typer.testing import CliRunner

from infra.cli import app
from infra.local.cluster import ClusterBackend
from tests.support.gateway import ThreadGateway
from tests.support.gateway_fixtures import require_cluster


@pytest.fixture(scope="module")
def gateway(cluster_gateway: ThreadGateway) -> ThreadGateway:
    return cluster_gateway


@pytest.fixture
async def backend() -> AsyncIterator[ClusterBackend]:
    cluster = ClusterBackend(require_cluster())
    yield cluster
    await cluster.close()


def keys_on_every_master(backend: ClusterBackend, prefix: str) -> list[bytes]:
    """One key per master, found by slot."""
    found: dict[str, bytes] = {}
    for i in range(200):
        key = f"{prefix}:{i}".encode()
        found.setdefault(backend._owner([b"GET", key]).name, key)
    assert len(found) == 3
    return list(found.values())


async def test_keys_of_every_master_in_one_pipeline(backend: ClusterBackend, unique_name: str) -> None:
    await backend.key_specs()
    keys = keys_on_every_master(backend, unique_name)
    replies = await backend.pipeline(
        [*([b"SET", key, key] for key in keys), *([b"GET", key] for key in keys)]
    )
    assert replies == [b"OK"] * 3 + keys
    assert await backend.execute([b"EXISTS", keys[0]]) == 1


async def test_answers_of_every_master_are_combined(backend: ClusterBackend, unique_name: str) -> None:
    await backend.key_specs()
    keys = keys_on_every_master(backend, unique_name)
    for key in keys:
        await backend.execute([b"SET", key, b"1"])
    found = await backend.execute([b"KEYS", f"{unique_name}:*".encode()])
    assert sorted(found) == sorted(keys)
    assert await backend.execute([b"DBSIZE"]) >= 3
    sha = await backend.execute([b"SCRIPT", b"LOAD", b"return KEYS[1]"])
    for key in keys:  # loaded on every master: EVALSHA works whichever owns the key
        assert await backend.execute([b"EVALSHA", sha, b"1", key]) == key
    assert await backend.execute([b"SCRIPT", b"EXISTS", sha, b"0" * 40]) == [1, 0]


async def test_a_stale_slot_map_follows_moved(backend: ClusterBackend, unique_name: str) -> None:
    await backend.key_specs()
    key = unique_name.encode()
    owner = backend._owner([b"GET", key])
    other = next(node for node in backend._masters() if node.name != owner.name)
    slot = backend.cluster.keyslot(key)
    backend.cluster.nodes_manager.slots_cache[slot] = [other]  # as if the slot had moved
    assert await backend.execute([b"SET", key, b"v"]) == b"OK"
    assert backend._owner([b"GET", key]).name == owner.name  # the map was read again


async def test_scripts_route_by_keys_and_cross_slots_fail(http: httpx.AsyncClient, unique_name: str) -> None:
    response = await http.post("/", json=["EVAL", "return 1", 2, f"{unique_name}:a", f"{unique_name}:b"])
    assert response.json() == {"error": "CROSSSLOT Keys in request don't hash to the same slot"}
    response = await http.post("/", json=["EVAL", "return KEYS[2]", 2, "{x}a", "{x}b"])
    assert response.json() == {"result": "{x}b"}


async def test_scan_is_refused(http: httpx.AsyncClient) -> None:
    response = await http.post("/", json=["SCAN", 0])
    assert (response.status_code, response.json()) == (
        400,
        {"error": "ERR SCAN is not supported by the gateway's cluster backend"},
    )


def test_the_cli_takes_one_backend() -> None:
    args = ["gateway", "--token", "t", "--redis-url", "redis://a", "--redis-cluster", "redis://b"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0 and "--redis-cluster" in result.output
    assert "--redis-cluster" in CliRunner().invoke(app, ["gateway", "--help"]).output
