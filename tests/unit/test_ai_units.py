"""Pure parts of AI jobs: request normalisation, prices, budgets, usage sums, status mapping."""

from __future__ import annotations

from datetime import date
from typing import Any

import httpx
import openai
import pytest
from pydantic import ValidationError

from functions.jobs.llm import LLMPayload, ProviderUnavailableError, _status_error, price
from shared.context import JobContext
from shared.errors import PermanentJobError, RetryJobError
from shared.errors import ValidationError as JobqValidationError
from shared.llmcache import request_hash
from shared.models import ClaimedJob, Job, State
from shared.settings import ModelPrice, Settings
from shared.usage import Budget, UsageTotals, days_between, last_days, month_of


def test_a_request_hash_ignores_key_order_and_whitespace_but_not_values() -> None:
    a = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.5}
    b = {"temperature": 0.5, "messages": [{"content": "hi", "role": "user"}], "model": "m"}
    assert request_hash(a) == request_hash(b)
    assert request_hash(a) != request_hash({**a, "temperature": 0.6})


def test_the_normalised_request_leaves_out_unset_parameters_and_jobqs_own_flags() -> None:
    payload = LLMPayload.model_validate(
        {"messages": [{"role": "user", "content": "x"}], "cache": False, "stream": True, "max_tokens": None}
    )
    assert payload.request("default-model") == {
        "messages": [{"role": "user", "content": "x"}],
        "model": "default-model",
    }
    named = LLMPayload.model_validate({"messages": [{"role": "user", "content": "x"}], "model": "big"})
    assert named.request("default-model")["model"] == "big"


def test_price_uses_the_answered_model_then_the_asked_one() -> None:
    settings = Settings(llm_prices={"m": ModelPrice(input=1.0, output=4.0)})
    assert price(settings, "m", "m", 1_000_000, 500_000) == pytest.approx(3.0)
    assert price(settings, "m-2024-07-18", "m", 2_000, 0) == pytest.approx(0.002)
    assert price(settings, "other", "unknown", 10**6, 10**6) == 0.0


def test_a_budget_needs_a_limit_and_says_why_it_is_spent() -> None:
    with pytest.raises(ValidationError):
        Budget(period="day")
    budget = Budget(period="month", tokens=100, cost=1.0)
    assert budget.exceeded_by(UsageTotals(input_tokens=50, output_tokens=49, cost=0.5)) is None
    assert "100 of 100 tokens" in (budget.exceeded_by(UsageTotals(input_tokens=60, output_tokens=40)) or "")
    assert "of $1 spent this month" in (budget.exceeded_by(UsageTotals(cost=1.0)) or "")


def test_usage_totals_parse_and_add() -> None:
    total = UsageTotals.parse("10 5 1500 2")
    total.add(UsageTotals.parse("1 1 1 1"))
    assert total == UsageTotals(input_tokens=11, output_tokens=6, cost=0.001501, jobs=3)
    assert UsageTotals.parse(None) == UsageTotals()


def test_a_usage_range_ends_where_asked_and_stops_at_the_first_day() -> None:
    assert last_days(date(2026, 3, 2), 3) == (date(2026, 2, 28), date(2026, 3, 2))
    assert last_days(date(1, 1, 5), 93) == (date.min, date(1, 1, 5))
    assert month_of(date(5, 7, 1)) == "0005-07"


def test_a_usage_range_is_bounded() -> None:
    assert len(days_between(date(2026, 1, 30), date(2026, 2, 2))) == 4
    with pytest.raises(JobqValidationError):
        days_between(date(2026, 1, 1), date(2026, 6, 1))
    with pytest.raises(JobqValidationError):
        days_between(date(2026, 2, 1), date(2026, 1, 1))


def test_record_usage_adds_up_within_an_attempt() -> None:
    job = Job(
        id="01J0000000000000000000000A.llm",
        queue="llm",
        type="llm",
        owner="o",
        state=State.ACTIVE,
        created_at="2026-01-01T00:00:00Z",
    )
    ctx = JobContext(ClaimedJob(job=job, token="t", lease_until="2026-01-01T00:05:00Z"))
    ctx.record_usage(input_tokens=10, output_tokens=2, cost=0.1, model="a")
    ctx.record_usage(input_tokens=5, cost=0.05)
    assert ctx.usage is not None
    assert ctx.usage.model_dump() == {
        "input_tokens": 15,
        "output_tokens": 2,
        "cost": pytest.approx(0.15),
        "model": "a",
    }
    with pytest.raises(ValidationError):
        ctx.record_usage(input_tokens=-1)


def _status(code: int, headers: dict[str, str] | None = None, body: Any = None) -> openai.APIStatusError:
    request = httpx.Request("POST", "http://provider.test/v1/chat/completions")
    response = httpx.Response(code, headers=headers or {}, request=request)
    return openai.APIStatusError("failed", response=response, body=body)


def test_provider_statuses_map_to_jobqs_retry_rules() -> None:
    retry = _status_error(_status(429, {"Retry-After": "7"}, {"error": {"message": "slow down"}}))
    assert isinstance(retry, RetryJobError) and retry.after == 7 and "slow down" in retry.message
    assert isinstance(_status_error(_status(503)), ProviderUnavailableError)
    assert isinstance(_status_error(_status(408)), ProviderUnavailableError)
    assert _status_error(_status(500, {"retry-after-ms": "250"})).after == 0.25  # type: ignore[attr-defined]
    huge = _status_error(_status(429, {"retry-after-ms": "9" * 30}))
    assert isinstance(huge, RetryJobError) and huge.after == 3600  # a provider cannot park a job for years
    for code in (400, 401, 403, 404, 422):
        assert isinstance(_status_error(_status(code)), PermanentJobError)
