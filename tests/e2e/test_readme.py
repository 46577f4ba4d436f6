"""A newcomer follows README.md literally: saves the job type under "Add your own job type" as
`myapp/jobs.py` (nothing else: no `__init__.py`, no PYTHONPATH), runs the README's own command line
(`JOBQ_JOB_MODULES='["myapp.jobs"]' make dev`) in that directory, then submits a good and a bad job."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from tests.e2e.devstack import DevStack, wait_settled

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def readme_block(language: str, first_line: str) -> str:
    """The fenced block of README.md in `language` whose first line is `first_line`."""
    pattern = rf"^```{language}\n(.*?)^```"
    blocks = re.findall(pattern, README.read_text(), flags=re.DOTALL | re.MULTILINE)
    found = [block for block in blocks if block.splitlines()[0].strip().startswith(first_line)]
    assert len(found) == 1, f"README.md has {len(found)} {language} blocks starting with {first_line!r}"
    return str(found[0])


def test_readme_job_type_runs_with_make_dev_as_written(tmp_path: Path) -> None:
    (tmp_path / "myapp").mkdir()
    (tmp_path / "myapp" / "jobs.py").write_text(readme_block("python", "# myapp/jobs.py"))
    line = readme_block("bash", "JOBQ_JOB_MODULES=").strip()
    *assignments, make, target = shlex.split(line)
    assert (make, target) == ("make", "dev"), line
    env = dict(assignment.split("=", 1) for assignment in assignments)
    assert env == {"JOBQ_JOB_MODULES": '["myapp.jobs"]'}, line
    # The README's `make dev`, run from the directory that holds myapp/ (the repository's root there).
    command = ["make", "--no-print-directory", "-f", str(ROOT / "Makefile"), "dev"]
    stack = DevStack(tmp_path, env=env, command=command)
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
    assert "jobq dev stopped" in stack.printed, stack.printed
    assert "Traceback" not in stack.printed
