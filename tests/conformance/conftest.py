"""The conformance suite runs every test on the three backends: embedded, Redis and Redis Cluster."""

from __future__ import annotations

import pytest

from tests.support.gateway import ThreadGateway


@pytest.fixture(scope="session")
def gateway(every_gateway: ThreadGateway) -> ThreadGateway:
    return every_gateway


@pytest.fixture
def tag(unique_name: str) -> str:
    """A hash tag: keys that start with it share one cluster slot, so multi-key commands work everywhere."""
    return f"{{{unique_name}}}"
