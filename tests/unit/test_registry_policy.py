"""Registry.policy: one rule combines the job types of a queue."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from shared.models import QueueOptions
from shared.registry import QueuePolicy, Registry


class Empty(BaseModel):
    pass


async def _noop(payload: Any, ctx: Any) -> None:
    return None


def test_types_of_a_queue_combine_by_one_rule() -> None:
    registry = Registry()
    options = QueueOptions(rate_limit=(5, 1.0), concurrency=4)
    registry.job_type("a", payload=Empty, queue="shared", concurrency=2, timeout=30, options=options)(_noop)
    registry.job_type("b", payload=Empty, queue="shared", concurrency=3, timeout=600, options=options)(_noop)
    registry.job_type("c", payload=Empty, concurrency=1, timeout=5)(_noop)
    assert registry.policy("shared") == QueuePolicy(
        queue="shared", types=("a", "b"), timeout=600, concurrency=5, options=options
    )
    assert registry.policy("c") == QueuePolicy(queue="c", types=("c",), timeout=5, concurrency=1)
    assert registry.queue_options("shared") is options


def test_a_queue_no_type_names_gets_the_defaults() -> None:
    policy = Registry().policy("nobody")
    assert (policy.types, policy.timeout, policy.concurrency, policy.options) == ((), 300, 10, QueueOptions())


def test_types_on_one_queue_must_agree_on_its_options() -> None:
    registry = Registry()
    registry.job_type("first", payload=Empty, queue="q", options=QueueOptions(rate_limit=(1, 1.0)))(_noop)
    with pytest.raises(ValueError, match="'first' and 'second'"):
        registry.job_type("second", payload=Empty, queue="q", options=QueueOptions())(_noop)
    assert "second" not in registry
    # Replacing a type by name is not a disagreement; another queue may have its own options.
    registry.job_type("first", payload=Empty, queue="q", options=QueueOptions())(_noop)
    registry.job_type("other", payload=Empty, queue="r", options=QueueOptions(concurrency=1))(_noop)
    assert registry.policy("q").options == QueueOptions()
