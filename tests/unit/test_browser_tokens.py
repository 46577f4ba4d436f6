"""Browser tokens (functions/api/tokens.py): signed, scoped, at most an hour, refused when forged or late."""

from __future__ import annotations

import base64
import json

import jwt
import pytest
from pydantic import SecretStr

from functions.api.tokens import MAX_TTL_SECONDS, PREFIX, BrowserTokens, Grant, TokensUnavailableError
from shared.errors import AuthError
from shared.settings import Settings

NOW = 1_800_000_000.0
GRANT = Grant("alice", "key:0123456789abcdef", frozenset({"cancel"}), "session:42")


def tokens(clock: float = NOW, **settings: object) -> BrowserTokens:
    values: dict[str, object] = {"env": "test", "browser_token_secret": SecretStr("s" * 32)}
    return BrowserTokens(Settings(**{**values, **settings}), clock=lambda: clock)


def test_a_token_carries_its_grant_and_expires_within_an_hour() -> None:
    token, expires = tokens().mint(GRANT, ttl=10 * MAX_TTL_SECONDS)
    assert token.startswith(PREFIX)
    assert expires == NOW + MAX_TTL_SECONDS  # capped
    grant = tokens(NOW + MAX_TTL_SECONDS - 1).verify(token)
    assert grant == Grant("alice", GRANT.credential, frozenset({"read", "cancel"}), "session:42")
    with pytest.raises(AuthError, match="expired"):
        tokens(NOW + MAX_TTL_SECONDS).verify(token)


def test_forged_tampered_and_foreign_tokens_are_refused() -> None:
    token, _ = tokens().mint(GRANT, ttl=60)
    with pytest.raises(AuthError, match="invalid token"):  # another deployment's secret
        tokens(browser_token_secret=SecretStr("t" * 32)).verify(token)
    head, body, signature = token.removeprefix(PREFIX).split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["sub"] = "bob"  # a user's attempt to read another owner's jobs
    forged_body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(AuthError, match="invalid token"):
        tokens().verify(f"{PREFIX}{head}.{forged_body}.{signature}")
    unsigned = jwt.encode(claims, key=None, algorithm="none")  # type: ignore[arg-type]
    with pytest.raises(AuthError, match="invalid token"):
        tokens().verify(PREFIX + unsigned)
    with pytest.raises(AuthError):
        tokens().verify(PREFIX + "not-a-jwt")


def test_a_validly_signed_token_longer_than_an_hour_or_with_unknown_scopes_is_refused() -> None:
    key = "s" * 32
    base = {"aud": "jobq:browser", "sub": "alice", "crd": "key:x", "iat": int(NOW), "scp": ["read"]}
    long = jwt.encode({**base, "exp": int(NOW) + MAX_TTL_SECONDS + 1}, key, algorithm="HS256")
    with pytest.raises(AuthError, match="invalid token"):
        tokens().verify(PREFIX + long)
    admin = jwt.encode({**base, "exp": int(NOW) + 60, "scp": ["read", "admin"]}, key, algorithm="HS256")
    with pytest.raises(AuthError, match="invalid token"):
        tokens().verify(PREFIX + admin)
    other_audience = jwt.encode({**base, "exp": int(NOW) + 60, "aud": "x"}, key, algorithm="HS256")
    with pytest.raises(AuthError, match="invalid token"):
        tokens().verify(PREFIX + other_audience)


def test_the_signing_key_defaults_to_one_derived_from_the_admin_token() -> None:
    derived = tokens(browser_token_secret=None, admin_token=SecretStr("a" * 32))
    token, _ = derived.mint(GRANT, ttl=60)
    assert derived.verify(token).owner == "alice"
    with pytest.raises(AuthError):  # the admin token itself is not the key
        tokens(browser_token_secret=SecretStr("a" * 32)).verify(token)
    with pytest.raises(TokensUnavailableError):
        tokens(browser_token_secret=None, admin_token=None).mint(GRANT, ttl=60)
