"""Property-based fuzzing of the whole API from its OpenAPI schema: no 5xx, responses conform to the schema,
and every 4xx is the one error shape (naming the field for input errors). Hostile JSON that no schema
describes (NaN, lone surrogates, deep nesting, odd dates) is tests/abuse/test_api_properties.py.

The app runs under uvicorn on real Redis (through the gateway); a fixed seed and a bounded number of
examples per operation keep the run reproducible and short. Hypothesis drives each operation's strategy
directly (schemathesis' lazy pytest fixture loader does not work with pytest 9).
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, seed, settings
from schemathesis import APIOperation, Case, CheckContext
from schemathesis.core.transport import Response
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.support.api_fixtures import ADMIN_HEADERS, ServedApp

pytestmark = pytest.mark.realredis

EXAMPLES_PER_OPERATION = 15
# Where a schema-valid request may still rightly be a 422: a job's payload is validated by the model of its
# type, registered at run time (the static schema cannot say which submits name a known type with a valid
# payload), and a page cursor is opaque, issued by the engine (an arbitrary string is not one). A schedule
# holds such a job, and its cron expression and time zone are checked by cronsim and the zone database.
RUNTIME_VALIDATED = {
    ("POST", "/v1/schedules"),
    ("PATCH", "/v1/schedules/{schedule_id}"),
    ("POST", "/v1/jobs"),
    ("POST", "/v1/jobs/batch"),
    ("POST", "/v1/flows"),
    ("GET", "/v1/jobs"),
    ("GET", "/v1/queues/{queue}/jobs"),
}


INPUT_ERRORS = (400, 413, 422)


@schemathesis.check
def error_shape(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """Every 4xx is `{"error": {"code", "message", "field"?}}`; input errors (400/413/422) name the field."""
    if not 400 <= response.status_code < 500:
        return None
    error = response.json()["error"]
    assert isinstance(error.get("code"), str) and error["code"], error
    assert isinstance(error.get("message"), str) and error["message"], error
    if response.status_code in INPUT_ERRORS:
        assert isinstance(error.get("field"), str) and error["field"], error
    return True


def fuzz(operation: APIOperation) -> None:
    @seed(20261122)
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def check(case: Case) -> None:
        case.call_and_validate(
            headers=ADMIN_HEADERS, excluded_checks=excluded, additional_checks=[error_shape]
        )

    excluded = (
        [positive_data_acceptance] if (operation.method.upper(), operation.path) in RUNTIME_VALIDATED else []
    )

    check()


def test_api_conforms_to_its_schema(api_server: ServedApp) -> None:
    schema = schemathesis.openapi.from_url(f"{api_server.url}/openapi.json")
    schema.config.update(base_url=api_server.url)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    for operation in operations:
        fuzz(operation)
