"""Fixtures for the engine tests, reusable by every area.

- `engine`: an Engine on the `rest` client (the REST gateway, real SDK) under a key prefix unique to
  the test, so tests never flush anything. Redis's clock decides leases (the production setting).
- `engine_factory(clock=None, queue_options=None, **kwargs)`: more engines on the same prefix, e.g.
  with a `FakeClock` to move time without sleeping (sent to the scripts as "now").
- `fake_clock`: a `FakeClock` starting at the current time.
- `engine_prefix`: the test's key prefix (for reading keys with `shared.keys.Keys(engine_prefix)`).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

import pytest

from shared.engine import Engine
from shared.models import QueueOptions

EngineFactory = Callable[..., Engine]


class FakeClock:
    """A clock for tests: `clock()` reads it, `clock.advance(seconds)` moves it forward."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def prefix_for(name: str) -> str:
    """A key prefix unique to a test name, within Keys' 32 safe characters."""
    return "e" + hashlib.sha1(name.encode()).hexdigest()[:20]


@pytest.fixture
def engine_prefix(unique_name: str) -> str:
    return prefix_for(unique_name)


@pytest.fixture
def engine_factory(rest: Any, engine_prefix: str, gateway: Any) -> EngineFactory:
    def make(
        *,
        clock: Callable[[], float] | None = None,
        queue_options: Callable[[str], QueueOptions] | None = None,
        **kwargs: Any,
    ) -> Engine:
        kwargs.setdefault("cluster", gateway.backend == "cluster")
        return Engine(rest, prefix=engine_prefix, clock=clock, queue_options=queue_options, **kwargs)

    return make


@pytest.fixture
def engine(engine_factory: EngineFactory) -> Engine:
    return engine_factory()


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()
