"""shared.logs: JSON and console lines, extras as fields, idempotent setup, and redaction of secrets."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from shared.logs import REDACTED, JobqHandler, Redactor, configure_logging
from shared.settings import Settings

ADMIN = "admin-secret-0123456789abcdef"
API_KEY = "jq_0123456789abcdef_" + "A" * 32
log = logging.getLogger("jobq.test")


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {"env": "test", "admin_token": SecretStr(ADMIN), "log_level": "DEBUG"}
    return Settings(**{**values, **overrides})


@pytest.fixture
def output() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging(settings(), stream=stream)
    yield stream
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, JobqHandler)]:
        root.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_json_line_per_event_with_extras_as_fields(output: io.StringIO) -> None:
    log.info("job finished", extra={"job_id": "J1", "queue": "q", "attempt": 2, "duration_ms": 12.5})
    log.warning("two\nlines")
    first, second = lines(output)
    assert first["event"] == "job finished" and first["level"] == "info" and first["logger"] == "jobq.test"
    assert (first["job_id"], first["queue"], first["attempt"], first["duration_ms"]) == ("J1", "q", 2, 12.5)
    assert first["ts"].endswith("+00:00")
    assert second["event"] == "two\nlines"  # still one line of output: the newline is escaped
    assert len(output.getvalue().splitlines()) == 2


def test_console_format_is_one_readable_line() -> None:
    stream = io.StringIO()
    configure_logging(settings(log_format="console"), stream=stream)
    try:
        log.info("request", extra={"method": "GET", "path": "/v1/jobs", "status": 200})
    finally:
        configure_logging(settings(), stream=io.StringIO())
    line = stream.getvalue()
    assert "INFO" in line and "jobq.test" in line and "request" in line
    assert "method=GET path=/v1/jobs status=200" in line
    assert not line.lstrip().startswith("{")


def test_configuring_twice_keeps_one_handler(output: io.StringIO) -> None:
    configure_logging(settings(), stream=output)
    configure_logging(settings(), stream=output)
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, JobqHandler)]
    assert len(handlers) == 1
    log.info("once")
    assert [entry["event"] for entry in lines(output)] == ["once"]


def test_secret_fields_and_values_are_masked(output: io.StringIO) -> None:
    log.info(
        "submitted with admin token %s and header Authorization: Bearer %s",
        ADMIN,
        "some-jwt.abc.def",
        extra={
            "payload": {"card": "4111111111111111"},
            "headers": {"Authorization": f"Bearer {API_KEY}", "accept": "json"},
            "api_key": API_KEY,
            "note": f"key {API_KEY} used",
        },
    )
    try:
        raise RuntimeError(f"failed with {ADMIN}")
    except RuntimeError:
        log.exception("boom")
    text = output.getvalue()
    for secret in (ADMIN, API_KEY, "some-jwt.abc.def", "4111111111111111"):
        assert secret not in text
    entry, failure = lines(output)
    assert entry["payload"] == REDACTED and entry["api_key"] == REDACTED
    assert entry["headers"] == {"Authorization": REDACTED, "accept": "json"}
    assert entry["note"] == f"key {REDACTED} used"
    assert "RuntimeError" in failure["exc"] and REDACTED in failure["exc"]


def test_level_from_settings(output: io.StringIO) -> None:
    configure_logging(settings(log_level="warning"), stream=output)
    log.info("hidden")
    log.warning("shown")
    assert [entry["event"] for entry in lines(output)] == ["shown"]


def test_on_lambda_the_runtime_handler_is_reused_not_doubled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "jobq-api")
    root = logging.getLogger()
    stream = io.StringIO()
    runtime_handler = logging.StreamHandler(stream)  # stands in for the Lambda runtime's handler
    saved = root.handlers[:]
    root.handlers = [runtime_handler]
    try:
        configure_logging(settings())
        configure_logging(settings())
        log.info("token %s", ADMIN, extra={"job_id": "J1"})
        assert root.handlers == [runtime_handler]
        assert sum(isinstance(f, Redactor) for f in runtime_handler.filters) == 1
    finally:
        root.handlers = saved
    (entry,) = lines(stream)
    assert entry["event"] == f"token {REDACTED}" and entry["job_id"] == "J1"
