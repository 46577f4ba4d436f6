"""Who is calling: the bootstrap admin token, an API key, a JWT from a frontend's own login, or a browser
token minted by the app's backend (functions/api/tokens.py).

Verified API keys are cached in the warm function for `key_cache_seconds`, so repeat requests cost no Redis
command; a revoked key therefore stops working within that time.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from functions.api.tokens import BrowserTokens, is_browser_token
from shared.apikeys import KEY_PATTERN, ApiKeyStore
from shared.errors import AuthError
from shared.settings import Settings

CACHE_SIZE = 10_000
MAX_TOKEN_CHARS = 8192
# The bootstrap admin token's owner. No API key can be made for it (a key's owner starts with a letter or
# digit) and a JWT naming it is refused, so nobody else can read or cancel the jobs it submits.
ADMIN_OWNER = "@admin"


@dataclass(frozen=True)
class Principal:
    owner: str  # owns the jobs it submits
    admin: bool
    credential: str  # what rate limits count against: "key:<id>", "jwt:<sub>" or "admin-token"
    rate: str | None = None  # per-credential override of the default submit rate
    # A browser token's limits: what it may do besides read (None: anything), and the one tag it sees.
    scopes: frozenset[str] | None = None
    tag: str | None = None

    @property
    def browser(self) -> bool:
        return self.scopes is not None


class Authenticator:
    def __init__(
        self, settings: Settings, keys: ApiKeyStore, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._settings = settings
        self._keys = keys
        self._clock = clock
        self._cache: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        admin = settings.admin_token.get_secret_value() if settings.admin_token else ""
        self._admin_digest = _sha256(admin) if admin else None
        self._jwt_key = _jwt_key(settings)
        self.tokens = BrowserTokens(settings)

    async def authenticate(self, token: str | None) -> Principal:
        """The caller behind a bearer token; AuthError (401) for a missing, bad or revoked one."""
        if not token:
            raise AuthError("missing credentials: send Authorization: Bearer <key>")
        if len(token) > MAX_TOKEN_CHARS:
            raise AuthError("invalid credentials")
        if self._admin_digest is not None and hmac.compare_digest(_sha256(token), self._admin_digest):
            return Principal(owner=ADMIN_OWNER, admin=True, credential="admin-token")
        if KEY_PATTERN.match(token):
            return await self._api_key(token)
        if is_browser_token(token):
            grant = self.tokens.verify(token)
            return Principal(
                owner=grant.owner,
                admin=False,
                credential=grant.credential,
                rate=grant.rate,
                scopes=grant.scopes,
                tag=grant.tag,
            )
        if self._jwt_key is not None and token.count(".") == 2:
            return self._jwt(token)
        raise AuthError("invalid credentials")

    def forget(self, key_id: str) -> None:
        """Drop a key from this instance's cache at once (other warm instances expire it on their own)."""
        for digest, (principal, _) in list(self._cache.items()):
            if principal.credential == f"key:{key_id}":
                del self._cache[digest]

    async def _api_key(self, token: str) -> Principal:
        digest = _sha256(token)
        now = self._clock()
        cached = self._cache.get(digest)
        if cached is not None and cached[1] > now:
            return cached[0]
        record = await self._keys.verify(token)
        if record is None:
            self._cache.pop(digest, None)
            raise AuthError("invalid or revoked API key")
        principal = Principal(
            owner=record.owner, admin=record.admin, credential=f"key:{record.id}", rate=record.rate
        )
        if self._settings.key_cache_seconds > 0:
            self._cache[digest] = (principal, now + self._settings.key_cache_seconds)
            self._cache.move_to_end(digest)
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return principal

    def _jwt(self, token: str) -> Principal:
        settings = self._settings
        assert self._jwt_key is not None
        import jwt  # PyJWT and cryptography load at the first JWT, not at every cold start without one

        try:
            claims = jwt.decode(
                token,
                self._jwt_key,
                algorithms=_jwt_algorithms(settings),
                issuer=settings.jwt_issuer,
                audience=settings.jwt_audience,
                options={"require": ["sub", "exp"]},
            )
        except jwt.PyJWTError as exc:
            raise AuthError(f"invalid token: {exc}") from None
        sub = claims.get("sub")
        if not isinstance(sub, str) or not 1 <= len(sub) <= 128:
            raise AuthError("invalid token: sub must be a non-empty string")
        if sub == ADMIN_OWNER:
            raise AuthError(f"invalid token: sub {ADMIN_OWNER!r} is reserved")
        for claim in ("exp", "nbf", "iat"):  # PyJWT also takes a numeric string; RFC 7519 wants a number
            value = claims.get(claim)
            if claim in claims and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise AuthError(f"invalid token: {claim} must be a number (NumericDate)")
        return Principal(
            owner=sub, admin=claims.get(settings.jwt_admin_claim) is True, credential=f"jwt:{sub}"
        )


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _jwt_algorithms(settings: Settings) -> list[str]:
    """HMAC algorithms only with a shared secret, public-key ones only with a public key (no confusion)."""
    if settings.jwt_public_key:
        return [a for a in settings.jwt_algorithms if not a.startswith("HS")] or ["RS256", "ES256"]
    return [a for a in settings.jwt_algorithms if a.startswith("HS")] or ["HS256"]


def _jwt_key(settings: Settings) -> str | None:
    if settings.jwt_public_key:
        return settings.jwt_public_key
    if settings.jwt_secret:
        return settings.jwt_secret.get_secret_value()
    return None
