"""The real Lambda entry point: mangum driving the app with API Gateway v2 (httpApi) events."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from functions.api import lambda_handler
from shared.settings import Settings, get_settings
from tests.support.api_fixtures import ADMIN_TOKEN

pytestmark = pytest.mark.realredis


def http_api_event(
    method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """An API Gateway HTTP API (payload format 2.0) event, as Lambda receives it."""
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {
            "content-type": "application/json",
            "host": "abc123.execute-api.eu-west-1.amazonaws.com",
            **(headers or {}),
        },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": "abc123.execute-api.eu-west-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.7",
                "userAgent": "test",
            },
            "requestId": "req-1",
            "routeKey": "$default",
            "stage": "$default",
            "time": "22/Nov/2026:17:00:00 +0000",
            "timeEpoch": 1795366800000,
        },
        "body": None if body is None else json.dumps(body),
        "isBase64Encoded": False,
    }


class LambdaContext:
    function_name = "jobq-api"
    aws_request_id = "req-1"

    def get_remaining_time_in_millis(self) -> int:
        return 29_000


@pytest.fixture
def lambda_env(monkeypatch: pytest.MonkeyPatch, api_settings: Settings) -> Iterator[None]:
    monkeypatch.setenv("JOBQ_ENV", "test")
    monkeypatch.setenv("JOBQ_REDIS_REST_URL", api_settings.redis_rest_url)
    monkeypatch.setenv("JOBQ_REDIS_REST_TOKEN", api_settings.redis_rest_token.get_secret_value())
    monkeypatch.setenv("JOBQ_KEY_PREFIX", api_settings.key_prefix)
    monkeypatch.setenv("JOBQ_ADMIN_TOKEN", ADMIN_TOKEN)
    monkeypatch.setenv("JOBQ_JOB_MODULES", '["tests.support.api_job_types"]')
    get_settings.cache_clear()
    lambda_handler.adapter.cache_clear()
    yield
    services = lambda_handler.adapter().app.state.services
    loop = asyncio.get_event_loop()  # the one mangum set up, as on a warm Lambda instance
    loop.run_until_complete(services.redis.close())
    loop.close()
    asyncio.set_event_loop(None)
    lambda_handler.adapter.cache_clear()
    get_settings.cache_clear()


def test_lambda_handler_submits_and_reads_a_job(lambda_env: None) -> None:
    auth = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    submitted = lambda_handler.handler(
        http_api_event("POST", "/v1/jobs", {"type": "api_echo", "payload": {"message": "from lambda"}}, auth),
        LambdaContext(),
    )
    assert submitted["statusCode"] == 201, submitted
    job = json.loads(submitted["body"])
    assert submitted["headers"]["location"] == f"/v1/jobs/{job['id']}"

    status = lambda_handler.handler(
        http_api_event("GET", f"/v1/jobs/{job['id']}", headers=auth), LambdaContext()
    )
    assert status["statusCode"] == 200
    assert json.loads(status["body"])["payload"] == {"message": "from lambda"}

    bad = lambda_handler.handler(
        http_api_event("POST", "/v1/jobs", {"type": "api_echo"}, auth), LambdaContext()
    )
    assert bad["statusCode"] == 422
    assert json.loads(bad["body"])["error"]["field"] == "payload"
