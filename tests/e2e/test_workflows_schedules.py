"""docs/workflows.md "A nightly cleanup", followed as written against `jobq dev` on real Redis: the job
type saved as the document names it, the nightly schedule created from its JSON, then changed to run
every 2 seconds three times, and its three runs completed by the stack's own consumer."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.e2e.devstack import DevStack, wait_settled
from tests.support.gateway_fixtures import require_real_redis

pytestmark = pytest.mark.realredis

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "workflows.md"


def block(language: str, first_line: str = "") -> list[str]:
    """The fenced blocks of docs/workflows.md's "Schedules" section in `language` whose first line starts
    with `first_line`."""
    section = DOC.read_text().split("\n## Schedules\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(rf"^```{language}\n(.*?)^```", section, flags=re.DOTALL | re.MULTILINE)
    return [b for b in blocks if b.splitlines()[0].strip().startswith(first_line)]


def jobs_of(client: httpx.Client, type_name: str) -> list[dict[str, object]]:
    response = client.get("/v1/jobs", params={"type": type_name})
    assert response.status_code == 200, response.text
    jobs: list[dict[str, object]] = response.json()["jobs"]
    return jobs


def test_the_nightly_cleanup_example_runs_as_written(tmp_path: Path) -> None:
    [module] = block("python", "# cleanup/jobs.py")
    (tmp_path / "cleanup").mkdir()
    (tmp_path / "cleanup" / "jobs.py").write_text(module)
    nightly, often = (json.loads(text) for text in block("json"))
    stack = DevStack(tmp_path, redis_url=require_real_redis(), modules='["cleanup.jobs"]')
    with stack, stack.client() as client:
        created = client.post("/v1/schedules", json=nightly)
        assert created.status_code == 201, created.text
        schedule = created.json()
        berlin = datetime.fromisoformat(schedule["next_run_at"]).astimezone(ZoneInfo("Europe/Berlin"))
        assert (berlin.hour, berlin.minute) == (3, 0)
        assert datetime.fromisoformat(schedule["next_run_at"]) > datetime.now(UTC)

        changed = client.patch(f"/v1/schedules/{schedule['id']}", json=often)
        assert changed.status_code == 200, changed.text
        deadline = time.monotonic() + 30
        while len(jobs_of(client, "cleanup")) < 3:  # polled with a deadline; the stack fires them
            assert time.monotonic() < deadline, "the schedule did not run three times within 30 s"
            time.sleep(0.2)
        for job in jobs_of(client, "cleanup"):
            done = wait_settled(client, str(job["id"]))
            assert done["state"] == "completed" and done["result"] == {"removed": 0}, done
            assert str(done["idempotency_key"]).startswith(f"schedule:{schedule['id']}:")
        final = client.get(f"/v1/schedules/{schedule['id']}").json()
        assert (final["fired"], final["next_run_at"]) == (3, None)
        assert len(jobs_of(client, "cleanup")) == 3
    assert "Traceback" not in stack.printed
