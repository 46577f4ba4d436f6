"""The conformance suite runs every test on the three backends: embedded, Redis and Redis Cluster."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.support.gateway import ThreadGateway


@pytest.fixture(scope="session")
def gateway(every_gateway: ThreadGateway) -> ThreadGateway:
    return every_gateway


@pytest.fixture
async def http(gateway: ThreadGateway) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {gateway.token}"}
    async with httpx.AsyncClient(base_url=gateway.url, headers=headers, timeout=10) as client:
        yield client


@pytest.fixture
def tag(unique_name: str) -> str:
    """A hash tag: keys that start with it share one cluster slot, so multi-key commands work everywhere."""
    return f"{{{unique_name}}}"
