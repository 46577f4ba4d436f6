"""Who may start a pushed consumer run: QStash (signed JWT) or a self-hosted caller with the shared secret."""

from __future__ import annotations

import hashlib
import hmac
import time
import warnings

import jwt
from jwt.warnings import InsecureKeyLengthWarning
from qstash import Receiver

from shared.errors import AuthError
from shared.settings import Settings

CLOCK_TOLERANCE = 5  # seconds of clock skew accepted on the JWT's nbf/exp


class PushAuth:
    def __init__(self, settings: Settings) -> None:
        current, following = settings.qstash_current_signing_key, settings.qstash_next_signing_key
        self._receiver = (
            Receiver(current.get_secret_value(), following.get_secret_value())
            if current is not None and following is not None
            else None
        )
        self._secret = settings.consumer_secret.get_secret_value() if settings.consumer_secret else None
        # The JWT's subject must be this function's push URL when it is configured.
        self._url = settings.push_url(settings.lane or settings.lane_set.names[0])

    def verify(self, *, signature: str | None, authorization: str | None, body: bytes) -> str:
        """Return how the call was authenticated ("qstash" or "secret"); raise AuthError otherwise."""
        if signature is not None:
            return self._verify_qstash(signature, body)
        if authorization is not None and self._secret:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() == "bearer" and hmac.compare_digest(token.encode(), self._secret.encode()):
                return "secret"
            raise AuthError("bad consumer secret")
        if self._receiver is None and not self._secret:
            raise AuthError(
                "the push endpoint is not configured (no QStash signing keys, no consumer secret)"
            )
        raise AuthError("missing Upstash-Signature or Authorization header")

    def _verify_qstash(self, signature: str, body: bytes) -> str:
        if self._receiver is None:
            raise AuthError("QStash signing keys are not configured")
        try:
            text = body.decode()
            with warnings.catch_warnings():  # the keys are Upstash's to choose; a short one is not our bug
                warnings.simplefilter("ignore", InsecureKeyLengthWarning)
                self._receiver.verify(
                    signature=signature, body=text, url=self._url, clock_tolerance=CLOCK_TOLERANCE
                )
        except Exception as exc:  # the SDK raises SignatureError, but a malformed token may raise others
            raise AuthError("invalid or expired Upstash-Signature") from exc
        return "qstash"


def signed_identity(signature: str, *, max_seconds: float) -> tuple[str, float]:
    """What a verified QStash signature names uniquely, and for how long it stays valid (seconds, at most
    `max_seconds`): its `jti` claim, or the token itself when it has none. A replay of the same signed
    request carries the same identity whatever Upstash-Message-Id it sends, since that header is unsigned.
    Call only after `PushAuth.verify` accepted the signature."""
    claims = jwt.decode(signature, options={"verify_signature": False})
    jti = claims.get("jti")
    identity = jti if isinstance(jti, str) and jti else hashlib.sha256(signature.encode()).hexdigest()
    exp = claims.get("exp")
    left = float(exp) - time.time() + CLOCK_TOLERANCE if isinstance(exp, int | float) else max_seconds
    return identity, min(max_seconds, max(1.0, left))
