"""A newcomer follows README.md literally: the job type under "Add your own job type", exactly as the README
prints it, loaded by `jobq dev` through JOBQ_JOB_MODULES='["myapp.jobs"]' (on a real Redis), then a good
and a bad submit."""

from __future__ import annotations

import re
from pathlib import Path

from tests.e2e.devstack import DevStack, wait_settled
from tests.support.gateway_fixtures import require_real_redis

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_block(first_line: str) -> str:
    """The fenced python block of README.md whose first line is `first_line`."""
    blocks = re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.DOTALL | re.MULTILINE)
    found = [block for block in blocks if block.splitlines()[0].strip() == first_line]
    assert len(found) == 1, f"README.md has {len(found)} python blocks starting with {first_line!r}"
    return str(found[0])


def test_readme_job_type_runs_on_the_dev_stack(tmp_path: Path) -> None:
    package = tmp_path / "myapp"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "jobs.py").write_text(readme_block("# myapp/jobs.py"))
    stack = DevStack(tmp_path, redis_url=require_real_redis(), modules='["myapp.jobs"]', pythonpath=tmp_path)
    with stack, stack.client() as client:
        created = client.post("/v1/jobs", json={"type": "report", "payload": {"project_id": 7}})
        assert created.status_code == 201, created.text
        job = wait_settled(client, created.json()["id"])
        assert job["state"] == "completed", job
        assert job["result"] == {"rows": 42}
        assert "building report for project 7" in job["logs"], job["logs"]

        bad = client.post("/v1/jobs", json={"type": "report", "payload": {"project_id": "x"}})
        assert bad.status_code == 422, bad.text
        assert bad.json()["error"]["field"] == "payload.project_id", bad.json()
    assert stack.code == 0, stack.printed
    assert "Traceback" not in stack.printed
