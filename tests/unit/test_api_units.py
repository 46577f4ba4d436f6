"""Pure logic of the API function: rates, field names, event ids, startup checks, JWT, body limits."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from functions.api.app import StartupError, check_settings
from functions.api.auth import Authenticator
from functions.api.errors import field_name
from functions.api.middleware import BodyLimitMiddleware, RequestIdMiddleware
from functions.api.sse import Mark, new_logs, status_changed
from shared.apikeys import ApiKeyStore, parse_rate
from shared.errors import AuthError, ValidationError
from shared.keys import Keys
from shared.models import Job, State
from shared.settings import Settings
from shared.store import Store


@pytest.mark.parametrize(
    ("rate", "expected"),
    [("100/minute", (100, 60)), ("10/s", (10, 1)), ("5 / 10s", (5, 10)), ("1000/hour", (1000, 3600))],
)
def test_parse_rate_accepts_common_forms(rate: str, expected: tuple[int, int]) -> None:
    assert parse_rate(rate) == expected


@pytest.mark.parametrize("rate", ["", "100", "0/minute", "10/fortnight", "-1/s", "10/0s", "5/2d"])
def test_parse_rate_rejects_the_rest_naming_the_field(rate: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_rate(rate)
    assert caught.value.field == "rate"


def test_api_keys_are_pinned() -> None:
    keys = Keys("jobq")
    assert (keys.api_keys(), keys.rate_limits()) == ("jobq:apikeys", "jobq:ratelimit")


def test_field_names_drop_the_location_and_index_lists() -> None:
    assert field_name(("body", "jobs", 3, "payload", "url")) == "jobs[3].payload.url"
    assert field_name(("query", "limit")) == "limit"
    assert field_name(("body",)) is None


def _job(**changes: object) -> Job:
    base = {"id": "j1", "queue": "q", "type": "t", "owner": "alice", "state": State.ACTIVE}
    return Job.model_validate({**base, "created_at": datetime.now(UTC), **changes})


def test_event_ids_round_trip_and_refuse_hostile_input() -> None:
    mark = Mark.of(_job(progress=40, attempts=2, logs=["a", "b"]))
    assert Mark.decode(mark.encode()) == mark
    for hostile in ["", "x" * 64, "active.1.1.0.1.zzzzzzzz", "../../etc", "active.1000.1.0.1.-"]:
        assert Mark.decode(hostile) is None


def test_new_logs_sends_only_unseen_lines_even_with_repeats_and_scrolling() -> None:
    seen = Mark.of(_job(logs=["step", "step"]))
    assert new_logs(["step", "step", "step"], seen) == ["step"]
    # The engine keeps the last N lines: the seen tail scrolled up, the new lines are still found.
    assert new_logs(["step", "other", "new"], Mark.of(_job(logs=["x", "y", "other"]))) == ["new"]
    assert new_logs(["a", "b"], None) == ["a", "b"]
    assert new_logs(["c"], Mark.of(_job(logs=["gone"]))) == ["c"]


def test_status_changes_are_state_progress_attempts_or_cancel() -> None:
    job = _job(progress=10)
    assert status_changed(job, None)
    assert not status_changed(job, Mark.of(job))
    assert status_changed(_job(progress=11), Mark.of(job))
    assert status_changed(_job(progress=10, cancel_requested=True), Mark.of(job))


@pytest.mark.parametrize("token", [None, "changeme", "admin", "short-but-real"])
def test_production_refuses_a_missing_or_placeholder_admin_token(token: str | None) -> None:
    settings = Settings(env="production", admin_token=SecretStr(token) if token is not None else None)
    with pytest.raises(StartupError, match="JOBQ_ADMIN_TOKEN"):
        check_settings(settings)


def test_local_and_test_accept_any_admin_token() -> None:
    check_settings(Settings(env="local", admin_token=None))
    check_settings(Settings(env="test", admin_token=SecretStr("changeme")))
    check_settings(Settings(env="production", admin_token=SecretStr("f" * 32)))


def _authenticator(**settings: object) -> Authenticator:
    unused = ApiKeyStore(Store(None), "unused")  # only API keys (jq_...) would reach Redis
    return Authenticator(Settings(env="test", **settings), unused)


async def test_jwt_hs256_owner_admin_claim_issuer_and_audience() -> None:
    auth = _authenticator(jwt_secret=SecretStr("s" * 32), jwt_issuer="https://idp", jwt_audience="jobq")
    claims = {"sub": "carol", "iss": "https://idp", "aud": "jobq", "exp": int(time.time()) + 60}
    user = await auth.authenticate(jwt.encode(claims, "s" * 32, algorithm="HS256"))
    assert (user.owner, user.admin, user.credential) == ("carol", False, "jwt:carol")
    admin = await auth.authenticate(jwt.encode({**claims, "jobq_admin": True}, "s" * 32, algorithm="HS256"))
    assert admin.admin
    for bad in [
        {**claims, "aud": "other"},
        {**claims, "iss": "https://evil"},
        {**claims, "exp": int(time.time()) - 10},
        {key: value for key, value in claims.items() if key != "sub"},
    ]:
        with pytest.raises(AuthError):
            await auth.authenticate(jwt.encode(bad, "s" * 32, algorithm="HS256"))
    with pytest.raises(AuthError):
        await auth.authenticate(jwt.encode(claims, "t" * 32, algorithm="HS256"))


async def test_jwt_rs256_with_a_public_key_refuses_hmac_tokens() -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    auth = _authenticator(jwt_public_key=public_pem.decode(), jwt_algorithms=["RS256"])
    claims = {"sub": "dave", "exp": int(time.time()) + 60}
    assert (await auth.authenticate(jwt.encode(claims, private, algorithm="RS256"))).owner == "dave"
    with pytest.raises(AuthError):  # the classic confusion: HMAC signed with the public key as secret
        await auth.authenticate(jwt.encode(claims, "x" * 32, algorithm="HS256"))


async def test_admin_token_is_recognised_and_anything_else_is_401() -> None:
    auth = _authenticator(admin_token=SecretStr("a" * 32))
    assert (await auth.authenticate("a" * 32)).admin
    for bad in [None, "", "a" * 31, "b" * 32, "x" * 9000]:
        with pytest.raises(AuthError):
            await auth.authenticate(bad)


async def _echo_size(request: Request) -> JSONResponse:
    return JSONResponse({"size": len(await request.body())})


async def _explode(request: Request) -> JSONResponse:
    raise RuntimeError("secret internals")


def _limited_app(max_bytes: int) -> httpx.AsyncClient:
    app = Starlette(
        routes=[Route("/echo", _echo_size, methods=["POST"]), Route("/boom", _explode)],
        middleware=[Middleware(RequestIdMiddleware), Middleware(BodyLimitMiddleware, max_bytes=max_bytes)],
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")


async def test_body_limit_checks_declared_and_chunked_sizes_before_the_app_reads() -> None:
    async with _limited_app(100) as client:
        assert (await client.post("/echo", content=b"x" * 100)).json() == {"size": 100}
        declared = await client.post("/echo", content=b"x" * 101)
        assert declared.status_code == 413
        assert declared.json()["error"]["code"] == "too_large"

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(5):
                yield b"y" * 30

        chunked = await client.post("/echo", content=chunks())
        assert chunked.status_code == 413
        assert chunked.headers.get_list("x-request-id") == [chunked.json()["error"]["request_id"]]


async def test_an_unexpected_exception_is_a_bare_500_with_a_request_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with _limited_app(100) as client:
        response = await client.get("/boom", headers={"X-Request-ID": "req-12345678"})
    assert response.status_code == 500
    assert response.json() == {
        "error": {"code": "internal", "message": "internal error", "request_id": "req-12345678"}
    }
    assert "secret internals" not in response.text
    assert any(getattr(record, "request_id", None) == "req-12345678" for record in caplog.records)
