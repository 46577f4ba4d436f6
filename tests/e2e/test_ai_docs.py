"""docs/ai-jobs.md's examples, run as written: the API served on a loopback port, a consumer running, the
llm type pointed at the local OpenAI-compatible server; the examples talk HTTP like any client."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from functions.api.app import create_app
from functions.consumer.runtime import build_runtime
from functions.jobs import llm
from shared.consumer import ConsumerConfig
from shared.settings import Settings
from tests.support.ai_stack import ai_registry
from tests.support.api_fixtures import ADMIN_HEADERS, ServedApp
from tests.support.fake_llm import FakeLLM

DOC = Path(__file__).resolve().parents[2] / "docs" / "ai-jobs.md"
KINDS = ("summarize", "classify", "sentiment", "translate", "extract")


def doc_block(first_line: str) -> str:
    """The python block of docs/ai-jobs.md whose first line is `first_line`."""
    blocks = re.findall(r"^```python\n(.*?)^```", DOC.read_text(), flags=re.DOTALL | re.MULTILINE)
    found = [block for block in blocks if block.splitlines()[0].strip() == first_line]
    assert len(found) == 1, f"docs/ai-jobs.md has {len(found)} python blocks starting with {first_line!r}"
    return str(found[0])


@pytest.mark.parametrize("gateway", ["redis"], indirect=True)
async def test_the_docs_examples_run_as_written(
    api_settings: Settings,
    fake_llm: FakeLLM,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    registry = ai_registry()
    monkeypatch.setattr(llm, "registry", registry)  # the job module registers into this test's registry
    exec(compile(doc_block("# myapp/codegen.py"), "myapp/codegen.py", "exec"), {})
    assert "codegen" in registry

    runtime = build_runtime(api_settings, registry=registry, config=ConsumerConfig(wait_due=0))
    with ServedApp(create_app(api_settings, registry=registry)) as served:
        async with httpx.AsyncClient(base_url=served.url, headers=ADMIN_HEADERS) as admin:
            key = (await admin.post("/v1/keys", json={"owner": "launchkit"})).json()["key"]
        monkeypatch.setenv("JOBQ_URL", served.url)
        monkeypatch.setenv("JOBQ_API_KEY", key)
        namespace: dict[str, Any] = {"__name__": "launchkit_ai_jobs"}

        def run_examples() -> None:
            exec(compile(doc_block("# launchkit_ai_jobs.py"), "launchkit_ai_jobs.py", "exec"), namespace)
            exec(compile(doc_block("# codegen_client.py"), "codegen_client.py", "exec"), namespace)

        examples = asyncio.create_task(asyncio.to_thread(run_examples))
        try:
            while not examples.done():  # a consumer serving the examples' jobs as they arrive
                await runtime.consumer.drain()
                await asyncio.sleep(0.02)  # the consumer's idle poll interval, not a synchronisation
            await examples
        finally:
            namespace["api"].close()
            await runtime.redis.close()
    printed = capsys.readouterr().out
    for kind in KINDS:
        assert re.search(rf"^{kind}: completed, \d+ \+ 7 tokens, \$0\.0000\d\d: ", printed, re.MULTILINE), (
            printed
        )
    assert "this month: 5 jobs" in printed  # read before the code generations
    sent = [call["messages"][0]["content"] for call in fake_llm.calls]
    assert len(sent) == 7  # five kinds, then one code generation and its cache: false repeat
    assert {c.get("response_format", {}).get("type") for c in fake_llm.calls[:5]} == {None, "json_object"}
