"""The consumer: drains due queues in batches. `Consumer(engine, registry).drain(budget)` is the whole API."""

from __future__ import annotations

from shared.consumer.batch import BatchConfig, Tally
from shared.consumer.drain import Consumer, ConsumerConfig, DrainReport

__all__ = ["BatchConfig", "Consumer", "ConsumerConfig", "DrainReport", "Tally"]
