"""`GET /metrics`: every queue's counts, totals and histograms in the Prometheus text format.

One `engine.metrics()` call (one script, one round trip) per scrape whatever the number of jobs, turned
into metric families by a collector on a fresh registry, so nothing is kept between requests and every
function instance reports the same totals (they live in Redis). Readable by an admin credential, or by
`JOBQ_METRICS_TOKEN`, which lets Prometheus scrape without holding a key that can change jobs.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from itertools import accumulate
from typing import Annotated

from fastapi import Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from functions.api.deferred import api_router
from functions.api.deps import EngineDep, ServicesDep
from shared.errors import ForbiddenError
from shared.models import QueueMetrics, State
from shared.settings import PLACEHOLDER_TOKENS, Settings

router = api_router(tags=["operations"])
MIN_METRICS_TOKEN_CHARS = 16
_bearer = HTTPBearer(auto_error=False, description="An admin credential, or JOBQ_METRICS_TOKEN.")

# (metric name, help, QueueMetrics field); the counters are named without `_total`: the exposition adds it.
COUNTERS = (
    ("jobq_jobs_completed", "Jobs that completed.", "completed_total"),
    ("jobq_jobs_failed", "Jobs that failed for good (moved to the failed set).", "failed_total"),
    ("jobq_jobs_retried", "Failed attempts scheduled for a retry.", "retried_total"),
    ("jobq_jobs_cancelled", "Jobs cancelled.", "cancelled_total"),
    ("jobq_jobs_claimed", "Jobs claimed by consumers (one per attempt).", "claimed_total"),
    ("jobq_cache_hits", "Attempts the response cache answered (ctx.cache).", "cache_hits_total"),
    ("jobq_cache_misses", "Attempts the response cache could not answer.", "cache_misses_total"),
    ("jobq_llm_input_tokens", "Input tokens jobs recorded (ctx.record_usage).", "input_tokens_total"),
    ("jobq_llm_output_tokens", "Output tokens jobs recorded (ctx.record_usage).", "output_tokens_total"),
    ("jobq_llm_cost_usd", "Cost in USD jobs recorded (ctx.record_usage).", "cost_total"),
)


class QueueCollector(Collector):
    """Metric families for metrics already read from Redis (collecting sends no command)."""

    def __init__(self, queues: Sequence[QueueMetrics]) -> None:
        self.queues = queues

    def collect(self) -> Iterable[Metric]:
        jobs = GaugeMetricFamily("jobq_jobs", "Jobs per queue and state.", labels=["queue", "state"])
        paused = GaugeMetricFamily("jobq_queue_paused", "1 if the queue is paused.", labels=["queue"])
        stalled = GaugeMetricFamily(
            "jobq_queue_stalled",
            "1 if jobs wait while no consumer has claimed from the queue for a while (see its stats).",
            labels=["queue"],
        )
        oldest = GaugeMetricFamily(
            "jobq_oldest_waiting_age_seconds",
            "Age of the oldest waiting job (since it became eligible); 0 when none waits.",
            labels=["queue"],
        )
        counters = [(CounterMetricFamily(n, h, labels=["queue"]), f) for n, h, f in COUNTERS]
        run = HistogramMetricFamily(
            "jobq_job_run_seconds", "Run time of finished attempts (claim to finish).", labels=["queue"]
        )
        wait = HistogramMetricFamily(
            "jobq_job_wait_seconds", "Wait from eligible to claimed.", labels=["queue"]
        )
        for m in self.queues:
            for state in State:
                jobs.add_metric([m.queue, state.value], m.counts.get(state, 0))
            paused.add_metric([m.queue], 1 if m.paused else 0)
            stalled.add_metric([m.queue], 1 if m.stalled else 0)
            oldest.add_metric([m.queue], m.oldest_waiting_age or 0.0)
            for family, field in counters:
                family.add_metric([m.queue], getattr(m, field))
            run.add_metric([m.queue], _buckets(m.bounds, m.run_buckets), m.run_seconds_total)
            wait.add_metric([m.queue], _buckets(m.bounds, m.wait_buckets), m.wait_seconds_total)
        yield from (jobs, paused, stalled, oldest, *(family for family, _ in counters), run, wait)


def _buckets(bounds: Sequence[float], per_bucket: Sequence[int]) -> list[tuple[str, float]]:
    """Per-bucket counts (the engine's) to Prometheus' cumulative `le` buckets, ending with +Inf."""
    edges = [*(repr(float(b)) for b in bounds), "+Inf"]  # "0.05", "1.0": as the client writes
    return list(zip(edges, accumulate(per_bucket), strict=True))


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


def _metrics_token_matches(token: str, settings: Settings) -> bool:
    """Constant-time match; outside local development a short or placeholder token opens nothing."""
    secret = settings.metrics_token.get_secret_value() if settings.metrics_token else ""
    weak = len(secret) < MIN_METRICS_TOKEN_CHARS or secret.strip().lower() in PLACEHOLDER_TOKENS
    if not secret or (weak and not settings.is_local):
        return False
    return hmac.compare_digest(_digest(token), _digest(secret))


async def metrics_reader(
    request: Request,
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """The metrics token (compared in constant time), else an admin credential: 401 or 403 otherwise."""
    token = credentials.credentials if credentials else None
    if token and _metrics_token_matches(token, services.settings):
        request.state.owner = "metrics-token"
        return
    user = await services.auth.authenticate(token)
    request.state.owner = user.owner
    if not user.admin:
        raise ForbiddenError("admin credentials or the metrics token required")


@router.get(
    "/metrics",
    dependencies=[Depends(metrics_reader)],
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format."}},
    summary="Prometheus metrics of every queue",
)
async def metrics(engine: EngineDep) -> Response:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(QueueCollector(await engine.metrics()))
    return Response(content=generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
