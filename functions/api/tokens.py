"""Browser tokens: short-lived, scoped credentials an app's backend mints for its user (POST /v1/tokens).

A browser token is `jqt_` + a JWT (HS256) signed with `browser_token_secret` (else with a key derived
from the admin token, so a deployment has one without configuration). It names the minting credential's
owner, its scopes, optionally one tag, and expires within MAX_TTL_SECONDS. The browser sends it as a
bearer header, or as `?access_token=` on the event routes only (EventSource cannot send a header).
Checking one costs no Redis command; a token outlives the revocation of the key that minted it until it
expires (at most an hour).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from shared.errors import AuthError, ForbiddenError, JobqError
from shared.settings import Settings

PREFIX = "jqt_"
MAX_TTL_SECONDS = 3600
DEFAULT_TTL_SECONDS = 900
AUDIENCE = "jobq:browser"
ALGORITHM = "HS256"
# What a token may do besides reading the owner's jobs and events: submit (and retry), cancel.
Scope = Literal["read", "submit", "cancel"]
SCOPES: tuple[Scope, ...] = ("read", "submit", "cancel")
_DERIVATION = b"jobq browser tokens v1"


class TokensUnavailableError(JobqError):
    code = "tokens_unavailable"
    status_code = 503


@dataclass(frozen=True)
class Grant:
    """What a browser token carries: whose jobs, which credential it counts against, what it may do."""

    owner: str
    credential: str  # the minting credential: rate limits count against it
    scopes: frozenset[str]
    tag: str | None = None
    rate: str | None = None  # the minting key's own submit rate, if it has one


def is_browser_token(token: str) -> bool:
    return token.startswith(PREFIX)


class BrowserTokens:
    """Mints and verifies browser tokens; `clock` (epoch seconds) is injectable for expiry tests."""

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time) -> None:
        self._key = _signing_key(settings)
        self._clock = clock

    def mint(self, grant: Grant, ttl: int) -> tuple[str, int]:
        """A token and its expiry (epoch seconds); `ttl` is capped at MAX_TTL_SECONDS."""
        if self._key is None:
            raise TokensUnavailableError(
                "browser tokens need JOBQ_BROWSER_TOKEN_SECRET (or JOBQ_ADMIN_TOKEN) to be set"
            )
        import jwt  # PyJWT loads at the first token, not at every cold start

        now = int(self._clock())
        expires = now + min(ttl, MAX_TTL_SECONDS)
        claims: dict[str, object] = {
            "aud": AUDIENCE,
            "sub": grant.owner,
            "iat": now,
            "exp": expires,
            "scp": sorted(grant.scopes | {"read"}),
            "crd": grant.credential,
        }
        if grant.tag is not None:
            claims["tag"] = grant.tag
        if grant.rate is not None:
            claims["rate"] = grant.rate
        return PREFIX + jwt.encode(claims, self._key, algorithm=ALGORITHM), expires

    def verify(self, token: str) -> Grant:
        """The grant of a valid token; AuthError for an expired, forged or malformed one (PyJWT compares
        signatures in constant time)."""
        if self._key is None or not is_browser_token(token):
            raise AuthError("invalid credentials")
        import jwt

        try:
            claims = jwt.decode(
                token.removeprefix(PREFIX),
                self._key,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                # Expiry (and issue time) are checked below against the injectable clock.
                options={
                    "require": ["sub", "exp", "iat", "scp", "crd"],
                    "verify_exp": False,
                    "verify_iat": False,
                },
            )
        except jwt.PyJWTError:
            raise AuthError("invalid token") from None
        owner, credential, scopes = claims["sub"], claims["crd"], claims["scp"]
        tag, rate = claims.get("tag"), claims.get("rate")
        exp, iat = claims["exp"], claims["iat"]
        if (
            not isinstance(owner, str)
            or not isinstance(credential, str)
            or not isinstance(scopes, list)
            or not set(scopes) <= set(SCOPES)
            or not all(isinstance(value, str | None) for value in (tag, rate))
            or not isinstance(exp, int)
            or not isinstance(iat, int)
            or exp - iat > MAX_TTL_SECONDS
        ):
            raise AuthError("invalid token")
        if exp <= self._clock():
            raise AuthError("token expired: ask the app for a new one")
        return Grant(owner, credential, frozenset(scopes), tag, rate)


def require_scope(scopes: frozenset[str] | None, scope: Scope) -> None:
    """ForbiddenError unless a caller limited to `scopes` (None: not limited) may `scope`."""
    if scopes is not None and scope not in scopes:
        raise ForbiddenError(f"this token lacks the {scope!r} scope")


def _signing_key(settings: Settings) -> bytes | None:
    if settings.browser_token_secret is not None:
        return settings.browser_token_secret.get_secret_value().encode()
    if settings.admin_token is not None and settings.admin_token.get_secret_value():
        admin = settings.admin_token.get_secret_value().encode()
        return hmac.new(admin, _DERIVATION, hashlib.sha256).digest()
    return None
