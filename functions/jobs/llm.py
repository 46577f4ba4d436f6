"""`llm`: one chat completion from any OpenAI-compatible endpoint, through the official `openai` SDK.

The provider's URL, key and default model come from settings (JOBQ_LLM_*); the key never reaches a job
record or a log. An identical request (model, messages, parameters) is answered from the response cache
(`ctx.cache`, the owner's own scope unless the type shares it) without calling the provider; otherwise
the owner's budget is checked, the provider called, and its usage recorded with the cost from the price
table (JOBQ_LLM_PRICES). jobq's retry rules apply, not the SDK's (its own retries are off): 429, 408 and
5xx answers, timeouts and broken replies are retried with the type's backoff (a `Retry-After` header
sets the delay), any other 4xx fails the job at once. `stream: true` reports the partial output as log
lines and progress while it arrives. `llm_type(...)` registers more types on the same handler, each with
its own queue, cache lifetime and cache scope (docs/ai-jobs.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from functions.jobs.outbound import MAX_RETRY_AFTER, retry_after
from shared.context import JobContext
from shared.errors import PermanentJobError, RetryJobError
from shared.models import Backoff
from shared.registry import JobType, Registry, registry
from shared.settings import Settings, get_settings

if TYPE_CHECKING:
    import openai
    from openai import AsyncOpenAI

MODEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:/@-]{0,127}$"
RETRYABLE_STATUSES = frozenset({408, 409, 429})
TIMEOUT_MARGIN = 2.0  # seconds of the job's time kept after the provider's timeout, to report the failure
MIN_CALL_TIMEOUT = 1.0
MAX_ERROR_EXCERPT = 300


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "developer", "user", "assistant"]
    content: str = Field(max_length=200_000)
    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$")


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _schema_with_its_type(self) -> ResponseFormat:
        if (self.type == "json_schema") != (self.json_schema is not None):
            raise ValueError("`json_schema` is given exactly when `type` is 'json_schema'")
        return self


class LLMPayload(BaseModel):
    """One chat completion request; `cache` and `stream` say how jobq runs it."""

    model_config = ConfigDict(extra="forbid")

    messages: list[ChatMessage] = Field(min_length=1, max_length=256)
    model: str | None = Field(default=None, pattern=MODEL_PATTERN)  # None: JOBQ_LLM_MODEL
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    response_format: ResponseFormat | None = None
    cache: bool = True  # false: always ask the provider (and keep nothing)
    stream: bool = False  # true: partial output as log lines and progress while it arrives

    def request(self, default_model: str) -> dict[str, Any]:
        """The provider request, normalised: what the cache keys on (unset parameters left out)."""
        body = self.model_dump(mode="json", exclude_none=True, exclude={"cache", "stream"})
        body["model"] = self.model or default_model
        return body


@dataclass(frozen=True)
class LLMOptions:
    """Per type: how long cached answers live (None: JOBQ_LLM_CACHE_TTL; 0: no cache) and whether they are
    shared between owners (off by default: each owner's answers are their own)."""

    cache_ttl: float | None = None
    shared_cache: bool = False


class ProviderUnavailableError(Exception):
    """A retryable provider failure without a Retry-After: the type's backoff applies."""


async def run_llm(payload: LLMPayload, ctx: JobContext, options: LLMOptions) -> dict[str, Any]:
    settings = get_settings()
    request = payload.request(settings.llm_model)
    ttl = settings.llm_cache_ttl if options.cache_ttl is None else options.cache_ttl
    cached = payload.cache and ttl > 0
    if cached:
        hit = await ctx.cache.get(request, shared=options.shared_cache)
        if isinstance(hit, dict):
            return {**hit, "cached": True}
    await ctx.check_budget()  # before any provider call
    answer = await _complete(request, payload.stream, ctx, settings)
    usage = answer["usage"]
    model = answer["model"] or request["model"]
    ctx.record_usage(
        input_tokens=usage["input_tokens"],
        output_tokens=usage["output_tokens"],
        cost=price(settings, model, request["model"], usage["input_tokens"], usage["output_tokens"]),
        model=model,
    )
    if cached:
        await ctx.cache.put(request, answer, ttl=ttl, shared=options.shared_cache)
    return {**answer, "cached": False}


def price(settings: Settings, model: str, asked: str, input_tokens: int, output_tokens: int) -> float:
    """USD for the tokens at the model's price (the answered model's, else the asked one's; 0 unlisted)."""
    rate = settings.llm_prices.get(model) or settings.llm_prices.get(asked)
    if rate is None:
        return 0.0
    return round((input_tokens * rate.input + output_tokens * rate.output) / 1_000_000, 9)


async def _complete(
    request: dict[str, Any], stream: bool, ctx: JobContext, settings: Settings
) -> dict[str, Any]:
    """The provider's answer as {content, model, finish_reason, usage: {input_tokens, output_tokens}}."""
    # The SDK loads at the first call, not at import: it is about half a second of every cold start of
    # the API and the consumers (python -m bench startup), and a provider call's own latency dwarfs it.
    import openai

    timeout = max(MIN_CALL_TIMEOUT, min(settings.llm_timeout, ctx.remaining - TIMEOUT_MARGIN))
    client = openai.AsyncOpenAI(
        base_url=settings.llm_base_url,
        api_key=settings.llm_api_key.get_secret_value() or "unset",
        max_retries=0,  # jobq's retries, with the type's backoff, not the SDK's
        timeout=timeout,
    )
    try:
        async with client:
            if stream:
                return await _streamed(client, request, ctx)
            completion = await client.chat.completions.create(**request)
            return _answer(completion)
    except openai.APIStatusError as exc:
        raise _status_error(exc, settings.llm_api_key.get_secret_value()) from None
    except openai.APITimeoutError:
        raise ProviderUnavailableError(f"provider did not answer within {timeout:g} s") from None
    except openai.APIConnectionError as exc:
        raise ProviderUnavailableError(f"provider unreachable: {type(exc.__cause__).__name__}") from None
    except (openai.APIResponseValidationError, ValueError, TypeError, AttributeError, KeyError) as exc:
        raise ProviderUnavailableError(f"provider sent a malformed reply ({type(exc).__name__})") from None


def _answer(completion: Any) -> dict[str, Any]:
    choice = completion.choices[0]
    usage = completion.usage
    return _result(
        choice.message.content or "",
        completion.model,
        choice.finish_reason,
        usage.prompt_tokens if usage else 0,
        usage.completion_tokens if usage else 0,
    )


def _result(content: str, model: Any, finish: Any, input_tokens: Any, output_tokens: Any) -> dict[str, Any]:
    if not isinstance(content, str):
        raise TypeError("content is not text")
    return {
        "content": content,
        "model": model if isinstance(model, str) else None,
        "finish_reason": finish if isinstance(finish, str) else None,
        "usage": {"input_tokens": int(input_tokens or 0), "output_tokens": int(output_tokens or 0)},
    }


async def _streamed(client: AsyncOpenAI, request: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Stream the answer: each finished line of output is a log line, progress follows max_tokens."""
    chunks = await client.chat.completions.create(
        **request, stream=True, stream_options={"include_usage": True}
    )
    parts: list[str] = []
    line = ""
    model = finish = None
    input_tokens = output_tokens = received = 0
    limit = request.get("max_tokens")
    async for chunk in chunks:
        model = chunk.model or model
        if chunk.usage is not None:
            input_tokens, output_tokens = chunk.usage.prompt_tokens, chunk.usage.completion_tokens
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            text = choice.delta.content or ""
            if not text:
                continue
            parts.append(text)
            received += 1
            *done, line = (line + text).split("\n")
            for finished in done:
                ctx.log(finished)
            if limit:
                ctx.progress(min(99, received * 100 // limit))
    if line:
        ctx.log(line)
    return _result("".join(parts), model, finish, input_tokens, output_tokens)


def _status_error(exc: openai.APIStatusError, key: str = "") -> Exception:
    """429, 408, 409 and 5xx: retry (after the provider's Retry-After when it sends one); other: permanent.
    The provider's message goes into the job's error, so the key is cut out of it should it be echoed."""
    status = exc.status_code
    detail = _excerpt(exc)
    if key:
        detail = detail.replace(key, "[key]")
    if status in RETRYABLE_STATUSES or status >= 500:
        headers = exc.response.headers
        after_ms = headers.get("retry-after-ms")  # OpenAI's own, finer than Retry-After
        if after_ms and after_ms.isdigit():
            after: float | None = min(float(after_ms) / 1000, MAX_RETRY_AFTER)
        else:
            after = retry_after(headers.get("retry-after"))  # capped there
        message = f"provider answered {status}: {detail}"
        if after is not None:
            return RetryJobError(message, after=after)
        return ProviderUnavailableError(message)
    return PermanentJobError(f"provider refused the request ({status}): {detail}")


def _excerpt(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        text = error.get("message") if isinstance(error, dict) else None
        if isinstance(text, str):
            return text[:MAX_ERROR_EXCERPT]
    return exc.message[:MAX_ERROR_EXCERPT]


def llm_type(
    name: str,
    *,
    queue: str | None = None,
    cache_ttl: float | None = None,
    shared_cache: bool = False,
    target: Registry | None = None,
    **type_options: Any,
) -> JobType:
    """Register an LLM job type `name` (on queue `queue`, default `name`) with its cache options, in
    `target` (default: the process's registry); other keyword arguments are JobType fields (max_attempts,
    backoff, timeout, concurrency, ...)."""
    options = LLMOptions(cache_ttl=cache_ttl, shared_cache=shared_cache)

    async def handler(payload: LLMPayload, ctx: JobContext) -> dict[str, Any]:
        return await run_llm(payload, ctx, options)

    defaults: dict[str, Any] = {"max_attempts": 5, "backoff": Backoff(delay=2.0), "timeout": 300.0}
    return (registry if target is None else target).register(
        JobType(
            name=name,
            payload_model=LLMPayload,
            handler=handler,
            queue=queue or name,
            **{**defaults, **type_options},
        )
    )


llm_type("llm")
