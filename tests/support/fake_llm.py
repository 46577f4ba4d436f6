"""A local OpenAI-compatible chat endpoint for the AI-job tests: a real socket on 127.0.0.1 (uvicorn in a
thread), scripted replies, never a real provider.

`FakeLLM.script(...)` queues behaviours for the next calls (a reply, a status with headers, a slow reply,
a streamed reply, a malformed body); once the script is used up, `default` answers (a reply derived from
the request, whose usage the tests can compute with `expected_usage`). Every call is recorded.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.support.api_fixtures import ServedApp

API_KEY = "sk-test-fake-llm-key-0123456789"
OUTPUT_TOKENS = 7


@dataclass
class Reply:
    content: str = "ok"
    input_tokens: int = 10
    output_tokens: int = 5
    model: str | None = None
    delay: float = 0.0  # seconds before the answer starts (a slow provider)


@dataclass
class Status:
    code: int
    message: str = "scripted failure"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Stream:
    parts: list[str]
    input_tokens: int = 10
    output_tokens: int = 5
    gap: float = 0.0  # seconds between chunks


@dataclass
class Malformed:
    body: str = "{not json"


Behaviour = Reply | Status | Stream | Malformed


def expected_usage(body: dict[str, Any]) -> tuple[int, int]:
    """The default reply's usage for a request: (input tokens, output tokens)."""
    text = "".join(m["content"] for m in body["messages"])
    return len(text) // 4 + 1, OUTPUT_TOKENS


def default_content(body: dict[str, Any]) -> str:
    return "answer to: " + body["messages"][-1]["content"][:60]


class FakeLLM:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []  # request bodies, in order
        self.auth: list[str] = []  # Authorization headers seen
        self._script: list[Behaviour] = []
        self.default: Behaviour | None = None  # None: a reply derived from the request
        self._lock = threading.Lock()
        self.app = Starlette(routes=[Route("/v1/chat/completions", self._complete, methods=["POST"])])
        self.url = ""

    def script(self, *behaviours: Behaviour) -> None:
        with self._lock:
            self._script.extend(behaviours)

    @property
    def count(self) -> int:
        return len(self.calls)

    def _next(self) -> Behaviour | None:
        with self._lock:
            return self._script.pop(0) if self._script else self.default

    async def _complete(self, request: Request) -> Response:
        body = await request.json()
        self.calls.append(body)
        self.auth.append(request.headers.get("authorization", ""))
        behaviour = self._next()
        if behaviour is None:
            tokens_in, tokens_out = expected_usage(body)
            behaviour = Reply(default_content(body), tokens_in, tokens_out)
        model = body.get("model", "unknown")
        if isinstance(behaviour, Status):
            error = {"error": {"message": behaviour.message, "type": "scripted", "code": None}}
            return JSONResponse(error, status_code=behaviour.code, headers=behaviour.headers)
        if isinstance(behaviour, Malformed):
            return Response(behaviour.body, media_type="application/json")
        if isinstance(behaviour, Stream):
            return StreamingResponse(_sse(behaviour, model), media_type="text/event-stream")
        if behaviour.delay:
            await asyncio.sleep(behaviour.delay)  # the provider being slow, not a test waiting
        return JSONResponse(_completion(behaviour, behaviour.model or model))


def _completion(reply: Reply, model: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1700000000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply.content},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": reply.input_tokens,
            "completion_tokens": reply.output_tokens,
            "total_tokens": reply.input_tokens + reply.output_tokens,
        },
    }


async def _sse(stream: Stream, model: str) -> AsyncIterator[bytes]:
    def event(choices: list[Any], usage: dict[str, int] | None = None) -> bytes:
        chunk = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": model,
            "choices": choices,
            "usage": usage,
        }
        return f"data: {json.dumps(chunk)}\n\n".encode()

    yield event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
    for part in stream.parts:
        if stream.gap:
            await asyncio.sleep(stream.gap)  # the provider producing tokens
        yield event([{"index": 0, "delta": {"content": part}, "finish_reason": None}])
    yield event([{"index": 0, "delta": {}, "finish_reason": "stop"}])
    usage = {
        "prompt_tokens": stream.input_tokens,
        "completion_tokens": stream.output_tokens,
        "total_tokens": stream.input_tokens + stream.output_tokens,
    }
    yield event([], usage)
    yield b"data: [DONE]\n\n"


@pytest.fixture
def fake_llm(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLLM]:
    """The fake provider, served; the process's settings (get_settings) point the llm type at it."""
    from shared.settings import get_settings

    fake = FakeLLM()
    with ServedApp(fake.app) as served:
        fake.url = f"{served.url}/v1"
        monkeypatch.setenv("JOBQ_LLM_BASE_URL", fake.url)
        monkeypatch.setenv("JOBQ_LLM_API_KEY", API_KEY)
        monkeypatch.setenv("JOBQ_LLM_MODEL", "fake-mini")
        monkeypatch.setenv("JOBQ_LLM_PRICES", json.dumps({"fake-mini": {"input": 0.5, "output": 2.0}}))
        get_settings.cache_clear()
        yield fake
    get_settings.cache_clear()
