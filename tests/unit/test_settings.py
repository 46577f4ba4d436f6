"""Settings: the REST endpoint comes from jobq's own variables, Upstash's, or keyword arguments."""

from __future__ import annotations

import pytest

from shared.settings import Settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("JOBQ_REDIS_REST_URL", "UPSTASH_REDIS_REST_URL", "JOBQ_REDIS_REST_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("UPSTASH_REDIS_REST_TOKEN", raising=False)


def test_keyword_arguments_set_the_endpoint() -> None:
    settings = Settings(redis_rest_url="http://example.test:1", redis_rest_token="tok")
    assert settings.redis_rest_url == "http://example.test:1"
    assert settings.redis_rest_token.get_secret_value() == "tok"


def test_upstash_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UPSTASH_REDIS_REST_URL", "https://eu1.upstash.example")
    monkeypatch.setenv("UPSTASH_REDIS_REST_TOKEN", "upstash-token")
    settings = Settings()
    assert settings.redis_rest_url == "https://eu1.upstash.example"
    assert settings.redis_rest_token.get_secret_value() == "upstash-token"


def test_jobq_variable_wins_over_upstash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UPSTASH_REDIS_REST_URL", "https://upstash.example")
    monkeypatch.setenv("JOBQ_REDIS_REST_URL", "http://127.0.0.1:8079")
    assert Settings().redis_rest_url == "http://127.0.0.1:8079"


def test_token_is_never_in_repr() -> None:
    settings = Settings(redis_rest_token="very-secret-token")
    assert "very-secret-token" not in repr(settings)
