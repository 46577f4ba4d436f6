"""docs/workflows.md's examples, run as written against the local stack (`jobq dev`): the job module is
saved as the file its first line names, the stack loads it, and the request and answer are the page's."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from tests.e2e.devstack import DevStack, wait_settled

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "workflows.md"


def block(language: str, first_line: str, containing: str = "") -> str:
    """The fenced block of docs/workflows.md in `language` whose first line starts with `first_line` (and
    that holds `containing`)."""
    blocks = re.findall(rf"^```{language}\n(.*?)^```", PAGE.read_text(), flags=re.DOTALL | re.MULTILINE)
    found = [t for t in blocks if t.splitlines()[0].strip().startswith(first_line) and containing in t]
    assert len(found) == 1, f"docs/workflows.md has {len(found)} {language} blocks starting {first_line!r}"
    return str(found[0])


def test_the_orchestrator_fan_out_runs_as_written(tmp_path: Path) -> None:
    module = block("python", "# agents/flow.py")
    path = module.splitlines()[0].removeprefix("# ").strip()
    (tmp_path / path).parent.mkdir(parents=True)
    (tmp_path / path).write_text(module)
    command = shlex.split(block("bash", "curl -s localhost:8000/v1/flows", '"type": "orchestrator"'))
    route = command[2].removeprefix("localhost:8000")
    body = json.loads(command[command.index("-d") + 1])
    expected = json.loads(block("json", '{"flight-search"'))
    with DevStack(tmp_path, modules='["agents.flow"]') as stack, stack.client() as client:
        created = client.post(route, json=body)
        assert created.status_code == 201, created.text
        tree = created.json()
        assert tree["job"]["state"] == "waiting-children", tree
        assert [c["job"]["type"] for c in tree["children"]] == [c["type"] for c in body["children"]]
        done = wait_settled(client, tree["job"]["id"])
        assert done["state"] == "completed", done
        assert done["result"] == expected
        read = client.get(f"/v1/flows/{tree['job']['id']}").json()
        assert [c["job"]["state"] for c in read["children"]] == ["completed"] * 3
    assert "Traceback" not in stack.printed, stack.printed


def test_the_code_generation_pipeline_runs_as_written(tmp_path: Path) -> None:
    """Generate (a child), then test and open a pull request (the parent's durable steps)."""
    module = block("python", "# codegen/pipeline.py")
    path = module.splitlines()[0].removeprefix("# ").strip()
    (tmp_path / path).parent.mkdir(parents=True)
    (tmp_path / path).write_text(module)
    command = shlex.split(block("bash", "curl -s localhost:8000/v1/flows", '"type": "ship"'))
    body = json.loads(command[command.index("-d") + 1])
    expected = json.loads(block("json", '{"tests"'))
    with DevStack(tmp_path, modules='["codegen.pipeline"]') as stack, stack.client() as client:
        created = client.post(command[2].removeprefix("localhost:8000"), json=body)
        assert created.status_code == 201, created.text
        parent = created.json()["job"]["id"]
        done = wait_settled(client, parent)
        assert done["state"] == "completed", done
        assert done["result"] == expected
        assert done["steps"] == 2
        assert done["step_results"] == {"test": expected["tests"], "pull-request": expected["pull_request"]}
        [child] = created.json()["children"]
        assert client.get(f"/v1/jobs/{child['job']['id']}").json()["state"] == "completed"
    assert "Traceback" not in stack.printed, stack.printed
