"""GET /metrics end to end: values match the engine after a known workload, the text parses, auth holds,
and a scrape costs the same one command with 10 jobs as with 200."""

from __future__ import annotations

import asyncio
import hashlib
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from functions.api.app import create_app
from shared.engine import Engine
from shared.models import ErrorKind, JobError, JobSpec, Outcome, QueueMetrics, State
from shared.settings import Settings
from tests.support.api_fixtures import MakeUser, api_test_registry, asgi_client, gateway_settings

METRICS_TOKEN = "test-metrics-token-fedcba9876543210"
QUEUE = "work"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def api_settings(gateway: Any, unique_name: str) -> Settings:
    prefix = "m" + hashlib.sha1(unique_name.encode()).hexdigest()[:20]
    return gateway_settings(gateway, prefix, metrics_token=SecretStr(METRICS_TOKEN))


@pytest.fixture
def engine_of_app(api_app: Any) -> Engine:
    engine: Engine = api_app.state.services.engine
    return engine


async def scrape(api: httpx.AsyncClient, headers: dict[str, str]) -> Samples:
    response = await api.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST  # the text format
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset({"queue": QUEUE, **labels}.items()))]


async def submit(engine: Engine, n: int) -> list[str]:
    specs = [JobSpec(type="echo", queue=QUEUE, payload={"message": f"m{i}"}) for i in range(n)]
    reply = await engine.enqueue(specs)
    return [result.job.id for result in reply.results]


def failed(job_id: str, token: str) -> Outcome:
    error = JobError(kind=ErrorKind.PERMANENT, message="bad input")
    return Outcome(job_id=job_id, token=token, status="failed", error=error)


async def known_workload(engine: Engine) -> None:
    """10 jobs: 3 completed, 2 failed for good, 1 retried (delayed), 1 active, 1 cancelled, 2 waiting."""
    ids = await submit(engine, 10)
    claimed = await engine.claim(QUEUE, 7)
    assert len(claimed) == 7
    jobs = [(c.job.id, c.token) for c in claimed]
    outcomes = [Outcome(job_id=i, token=t, status="completed", result=1) for i, t in jobs[:3]]
    outcomes += [failed(i, t) for i, t in jobs[3:5]]
    outcomes.append(Outcome(job_id=jobs[5][0], token=jobs[5][1], status="retry", retry_after=3600))
    results = await engine.finish(outcomes)
    assert all(r.ok for r in results)
    await engine.cancel(ids[-1])


async def test_metrics_match_the_engine_after_a_known_workload(
    api: httpx.AsyncClient, engine_of_app: Engine, admin_headers: dict[str, str]
) -> None:
    await known_workload(engine_of_app)
    (before,) = await engine_of_app.metrics()
    samples = await scrape(api, admin_headers)
    (after,) = await engine_of_app.metrics()

    expected = {"waiting": 2, "delayed": 1, "active": 1, "completed": 3, "failed": 2, "cancelled": 1}
    expected["waiting-children"] = 0
    for state in State:
        assert value(samples, "jobq_jobs", state=state.value) == expected[state] == after.counts[state]
    totals = {"completed": 3, "failed": 2, "retried": 1, "cancelled": 1, "claimed": 7}
    for name, n in totals.items():
        assert value(samples, f"jobq_jobs_{name}_total") == n == getattr(after, f"{name}_total")
    assert value(samples, "jobq_queue_paused") == 0

    # Histograms: cumulative buckets ending at +Inf == _count; _sum from the engine's totals.
    for kind, count, per_bucket, total in (
        ("run", 5, after.run_buckets, after.run_seconds_total),
        ("wait", 7, after.wait_buckets, after.wait_seconds_total),
    ):
        name = f"jobq_job_{kind}_seconds"
        assert value(samples, f"{name}_count") == count == sum(per_bucket)
        assert value(samples, f"{name}_bucket", le="+Inf") == count
        assert value(samples, f"{name}_sum") == pytest.approx(total)
        running = 0
        for bound, n in zip(after.bounds, per_bucket, strict=False):
            running += n
            assert value(samples, f"{name}_bucket", le=repr(float(bound))) == running

    # The backlog alarm: read between two engine readings, so it lies between their ages.
    assert before.oldest_waiting_age is not None and after.oldest_waiting_age is not None
    age = value(samples, "jobq_oldest_waiting_age_seconds")
    assert before.oldest_waiting_age <= age <= after.oldest_waiting_age


async def test_paused_queue_and_empty_backlog(
    api: httpx.AsyncClient, engine_of_app: Engine, admin_headers: dict[str, str]
) -> None:
    (job_id,) = await submit(engine_of_app, 1)
    await engine_of_app.cancel(job_id)
    await engine_of_app.pause(QUEUE)
    samples = await scrape(api, admin_headers)
    assert value(samples, "jobq_queue_paused") == 1
    assert value(samples, "jobq_oldest_waiting_age_seconds") == 0  # no waiting job: 0, not absent
    assert value(samples, "jobq_jobs", state="cancelled") == 1


async def test_a_scrape_costs_two_commands_with_10_or_200_jobs(
    api: httpx.AsyncClient, engine_of_app: Engine, admin_headers: dict[str, str], gateway: Any
) -> None:
    async def commands_of_one_scrape() -> int:
        before = await asyncio.to_thread(gateway.command_count)
        await scrape(api, admin_headers)
        return int(await asyncio.to_thread(gateway.command_count)) - before

    await known_workload(engine_of_app)  # 10 jobs in every state
    await scrape(api, admin_headers)  # a fresh Redis answers the first EVALSHA with NOSCRIPT: load it
    with_10 = await commands_of_one_scrape()
    await submit(engine_of_app, 190)
    claimed = await engine_of_app.claim(QUEUE, 100)
    await engine_of_app.finish([Outcome(job_id=c.job.id, token=c.token, status="completed") for c in claimed])
    samples = await scrape(api, admin_headers)
    assert sum(samples[k] for k in samples if k[0] == "jobq_jobs") == 200
    with_200 = await commands_of_one_scrape()
    assert with_10 == with_200 == 2  # the set of queues, then one read-only script over all of them


async def test_no_credentials_is_401(api: httpx.AsyncClient) -> None:
    response = await api.get("/metrics")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


async def test_a_wrong_metrics_token_is_401(api: httpx.AsyncClient) -> None:
    response = await api.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}x"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


async def test_a_non_admin_key_is_403(api: httpx.AsyncClient, make_user: MakeUser) -> None:
    response = await api.get("/metrics", headers=await make_user("alice"))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"


async def test_the_metrics_token_reads_metrics_and_nothing_else(api: httpx.AsyncClient) -> None:
    headers = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    assert (await api.get("/metrics", headers=headers)).status_code == 200
    assert (await api.get("/v1/queues", headers=headers)).status_code == 401


async def test_an_admin_key_reads_metrics(api: httpx.AsyncClient, make_user: MakeUser) -> None:
    assert (await api.get("/metrics", headers=await make_user("ops", admin=True))).status_code == 200


def test_metrics_parse_to_the_engine_figures_offline() -> None:
    """The collector alone: per-bucket counts become cumulative buckets (no Redis needed)."""
    from prometheus_client import CollectorRegistry, generate_latest

    from functions.api.routes.metrics import QueueCollector

    m = QueueMetrics(queue=QUEUE, counts={s: 0 for s in State}, run_seconds_total=3.5)
    m.run_buckets = [1] * len(m.run_buckets)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(QueueCollector([m]))
    samples: Samples = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    buckets = [value(samples, "jobq_job_run_seconds_bucket", le=repr(float(b))) for b in m.bounds]
    assert buckets == list(range(1, len(m.bounds) + 1))
    assert value(samples, "jobq_job_run_seconds_bucket", le="+Inf") == len(m.bounds) + 1
    assert value(samples, "jobq_job_run_seconds_sum") == 3.5
    assert value(samples, "jobq_oldest_waiting_age_seconds") == 0


ALERTS = Path(__file__).resolve().parents[2] / "infra" / "prometheus" / "alerts.yml"
PROMETHEUS_OWN = {"up"}  # series Prometheus itself records for a scrape


async def test_alert_rules_use_only_metrics_that_metrics_exposes(
    api: httpx.AsyncClient, engine_of_app: Engine, admin_headers: dict[str, str]
) -> None:
    await known_workload(engine_of_app)  # so every family has samples
    exposed = {name for name, _ in await scrape(api, admin_headers)}
    rules = [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]
    assert len(rules) >= 5
    for rule in rules:
        assert rule["alert"].startswith("Jobq") and rule["labels"]["severity"]
        assert rule["annotations"]["summary"]
        expr = rule["expr"]
        used = set(re.findall(r"\bjobq_[a-z0-9_]+", expr))
        assert used <= exposed, f"{rule['alert']} uses {used - exposed}"
        outside = set(re.findall(r"\b([a-z_]+)\{", expr)) - exposed - PROMETHEUS_OWN
        assert not outside, f"{rule['alert']} selects unknown series {outside}"
        assert used or rule["alert"] == "JobqScrapeFailing"
        for state in re.findall(r'state="([a-z]+)"', expr):
            assert state in {s.value for s in State}


async def test_a_weak_metrics_token_opens_nothing_in_production(gateway: Any) -> None:
    weak = gateway_settings(gateway, "mweak", env="production", metrics_token=SecretStr("short"))
    app = create_app(weak, registry=api_test_registry())
    async with asgi_client(app) as client:
        response = await client.get("/metrics", headers={"Authorization": "Bearer short"})
    await app.state.services.redis.close()
    assert response.status_code == 401
