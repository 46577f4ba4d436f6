"""The consumer: continuous slots over every due queue. `Consumer(engine, registry).drain(budget)` runs."""

from __future__ import annotations

from shared.consumer.drain import Consumer, ConsumerConfig, DrainReport
from shared.consumer.recorder import Tally

__all__ = ["Consumer", "ConsumerConfig", "DrainReport", "Tally"]
