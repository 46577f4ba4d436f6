"""Webhook signatures: HMAC-SHA256 over `timestamp.body`, so a receiver can check origin and freshness.

Headers sent with a signed webhook:
    Jobq-Timestamp: <unix seconds>
    Jobq-Signature: v1=<hex digest>
A receiver calls `verify(secret, body, timestamp_header, signature_header)`.
"""

from __future__ import annotations

import hashlib
import hmac
import time

TIMESTAMP_HEADER = "Jobq-Timestamp"
SIGNATURE_HEADER = "Jobq-Signature"
VERSION = "v1"
DEFAULT_TOLERANCE = 300.0  # seconds a signature stays acceptable, against replays


def sign(secret: str, body: bytes, timestamp: int) -> str:
    message = f"{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return f"{VERSION}={digest}"


def signed_headers(secret: str, body: bytes, now: float | None = None) -> dict[str, str]:
    timestamp = int(time.time() if now is None else now)
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: sign(secret, body, timestamp)}


def verify(
    secret: str,
    body: bytes,
    timestamp: str,
    signature: str,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> bool:
    """True when `signature` is ours for this body and timestamp, and the timestamp is fresh."""
    try:
        stamp = int(timestamp)
    except (TypeError, ValueError):
        return False
    current = time.time() if now is None else now
    if abs(current - stamp) > tolerance:
        return False
    expected = sign(secret, body, stamp)
    # Several comma-separated signatures may be sent while a secret is rotated.
    candidates = [part.strip() for part in signature.split(",")]
    return any(hmac.compare_digest(expected.encode(), c.encode()) for c in candidates)
