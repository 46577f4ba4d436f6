"""docs/workflows.md, run as written: its job module is loaded as a user's module would be, its requests are
sent to the API with the statuses the page states, and a consumer runs the jobs, all on the gateway."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import shared.registry
from functions.api.app import create_app
from functions.consumer.runtime import ConsumerRuntime, build_runtime
from shared.consumer import ConsumerConfig
from shared.models import State
from shared.registry import Registry
from shared.settings import Settings
from tests.support.api_fixtures import asgi_client
from tests.support.consumer_fixtures import poll

pytestmark = pytest.mark.realredis

DOC = Path(__file__).resolve().parents[2] / "docs" / "workflows.md"
FENCED = re.compile(r"^```(\w+)\n(.*?)^```", re.DOTALL | re.MULTILINE)


def blocks(language: str) -> list[str]:
    return [body for lang, body in FENCED.findall(DOC.read_text()) if lang == language]


def load_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Registry:
    """The page's job module, saved and imported as a user's module: its `job_type` registers into a
    registry of this test's own (the process-wide one would keep the types after the test)."""
    [source] = [b for b in blocks("python") if b.startswith("# workflow_jobs.py")]
    path = tmp_path / "workflow_jobs.py"
    path.write_text(source)
    registry = Registry()
    monkeypatch.setattr(shared.registry, "job_type", registry.job_type)
    spec = importlib.util.spec_from_file_location(f"workflow_jobs_{tmp_path.name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return registry


def requests() -> list[tuple[str, str, int, dict[str, Any]]]:
    """Each `http` block: `METHOD path -> status`, then the JSON body."""
    out = []
    for block in blocks("http"):
        first, body = block.split("\n", 1)
        method, path, arrow, status = first.split()
        assert arrow == "->"
        out.append((method, path, int(status), json.loads(body)))
    return out


@pytest.fixture
async def stack(
    api_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[httpx.AsyncClient, ConsumerRuntime]]:
    registry = load_example(tmp_path, monkeypatch)
    app = create_app(api_settings, registry=registry)
    runtime = build_runtime(api_settings, registry=registry, config=ConsumerConfig())
    async with asgi_client(app) as api:
        yield api, runtime
    await app.state.services.redis.close()
    await runtime.redis.close()


async def settled(api: httpx.AsyncClient, runtime: ConsumerRuntime, job_id: str, headers: Any) -> Any:
    async def done() -> bool:
        await runtime.consumer.drain(90)  # a budget the jobs' timeouts fit in (it ends once idle)
        return (await runtime.engine.get(job_id)).state in (State.COMPLETED, State.FAILED)

    await poll(done, within=30)
    return (await api.get(f"/v1/jobs/{job_id}", headers=headers)).json()


async def test_the_workflow_examples_run_as_written(
    stack: tuple[httpx.AsyncClient, ConsumerRuntime], admin_headers: dict[str, str]
) -> None:
    api, runtime = stack
    key = await api.post("/v1/keys", json={"owner": "docs"}, headers=admin_headers)
    user = {"Authorization": f"Bearer {key.json()['key']}"}

    change = {"type": "code_change", "payload": {"repo": "acme/app", "prompt": "add a health check"}}
    created = await api.post("/v1/jobs", json=change, headers=user)
    assert created.status_code == 201, created.text
    job = await settled(api, runtime, created.json()["id"], user)
    assert job["state"] == "completed", job
    assert job["result"] == {"pull_request": "https://git.example/acme/app/pull/jobq/18"}
    assert job["steps"] == 4 and job["attempts"] == 1
    assert list(job["step_results"]) == ["generate", "test", "sleep:1", "open_pull_request"]

    answers = []
    for method, path, status, body in requests():
        response = await api.request(method, path, json=body, headers=user)
        assert response.status_code == status, (body, response.text)
        answers.append(response.json())
    reindex_first, reindex_joined, deploy, refused = answers
    assert reindex_joined["id"] == reindex_first["id"]
    assert refused["error"]["code"] == "singleton_conflict" and refused["error"]["job_id"] == deploy["id"]
    job = await settled(api, runtime, reindex_first["id"], user)
    assert (job["state"], job["result"]) == ("completed", {"reindexed": 7})
    listed = (await api.get("/v1/jobs?type=reindex", headers=user)).json()["jobs"]
    assert len(listed) == 1
