"""Fixtures of the chaos suite: a private redis-server and gateway per test, an engine on them."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from shared.engine import Engine
from shared.settings import Settings
from shared.store import make_redis
from tests.chaos.stack import GatewayProcess, PrivateRedis


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path, durable=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def private_gateway(private_redis: PrivateRedis) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(private_redis.url)
    gateway.start()
    yield gateway
    gateway.stop()


@pytest.fixture
def chaos_prefix() -> str:
    return "c" + secrets.token_hex(6)


def chaos_settings(gateway: GatewayProcess, prefix: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "JOBQ_REDIS_REST_URL": gateway.url,
        "JOBQ_REDIS_REST_TOKEN": SecretStr(gateway.token),
        "key_prefix": prefix,
        "redis_timeout": 2.0,
    }
    return Settings(**{**values, **overrides})  # type: ignore[arg-type]


@pytest.fixture
async def chaos_engine(private_gateway: GatewayProcess, chaos_prefix: str) -> AsyncIterator[Engine]:
    settings = chaos_settings(private_gateway, chaos_prefix)
    redis = make_redis(settings)
    yield Engine(redis, prefix=chaos_prefix, timeout=settings.redis_timeout)
    await redis.close()
