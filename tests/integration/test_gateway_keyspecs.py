"""The key specs the locking check and the cluster routing read, against Redis's own answers."""

from __future__ import annotations

import shlex

import pytest
import redis

from infra.local import keyspecs
from tests.support.gateway_fixtures import require_real_redis

CALLS = [
    "GET a", "SET a v EX 10", "MSET a 1 b 2", "DEL a b c", "RENAME a b", "SMOVE a b m", "HSET h f v f2 v2",
    "ZUNIONSTORE d 2 a b WEIGHTS 1 2", "ZRANGESTORE d s 0 -1", "SINTERCARD 2 a b", "LMPOP 2 a b LEFT",
    "XREAD COUNT 1 STREAMS s1 s2 0 0", "XREADGROUP GROUP g c STREAMS s1 s2 > >", "XADD s * f v",
    "EVAL x 2 a b c", "OBJECT ENCODING k", "MEMORY USAGE k", "XINFO STREAM s", "BITFIELD_RO k GET u8 0",
    "GEORADIUS g 1 2 3 km STORE dst", "GEOSEARCHSTORE d s FROMMEMBER m BYRADIUS 1 km", "SORT k STORE d",
    "PFMERGE d a b", "BITOP AND d a b", "EXISTS a b", "BLMOVE a b LEFT LEFT 0", "ECHO x",
    "PUBLISH channel message",
]  # fmt: skip


@pytest.fixture(scope="module")
def server() -> redis.Redis:
    client = redis.Redis.from_url(require_real_redis())
    client.response_callbacks.pop("COMMAND", None)  # raw replies
    return client


@pytest.mark.parametrize("call", CALLS)
def test_keys_match_command_getkeys(server: redis.Redis, call: str) -> None:
    args = [part.encode() for part in shlex.split(call)]
    try:
        expected = server.execute_command("COMMAND", "GETKEYS", *args)
    except redis.ResponseError as error:
        assert "no key arguments" in str(error)
        expected = []
    assert keyspecs.redis70().keys_of(args) == expected


def test_the_snapshot_is_this_redis_version(server: redis.Redis) -> None:
    """keyspecs_redis70.py is what `python -m infra.local.keyspecs URL` prints for Redis 7.0."""
    version, text = keyspecs.read_server(require_real_redis())
    if version != keyspecs.SNAPSHOT_VERSION:
        pytest.skip(f"the snapshot is of Redis {keyspecs.SNAPSHOT_VERSION}, this server is {version}")
    assert keyspecs.KeySpecs(text).commands == keyspecs.redis70().commands
