"""`jobq status`'s job panel shows a job's workflow fields: its durable steps and its keys."""

from __future__ import annotations

from rich.console import Console

from infra.cli.output import job_panel


def rendered(job: dict[str, object]) -> str:
    console = Console(record=True, width=200)
    console.print(job_panel(job))
    return console.export_text()


def test_the_panel_lists_steps_and_keys() -> None:
    job: dict[str, object] = {
        "id": "j",
        "state": "delayed",
        "type": "t",
        "queue": "q",
        "owner": "o",
        "priority": 5,
    }
    assert "steps" not in rendered(job)
    job.update(
        steps=2,
        step_results={"generate": {"x": 1}, "sleep:1": 17},
        singleton_key="deploy-7",
        debounce_key=None,
    )
    text = rendered(job)
    assert "2: generate, sleep:1" in text
    assert "singleton key" in text and "deploy-7" in text and "debounce key" not in text
