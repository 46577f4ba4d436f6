"""Webhook signatures: a receiver accepts ours and refuses tampering, other secrets and stale timestamps."""

from __future__ import annotations

from shared.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign, signed_headers, verify

SECRET = "whsec_test_0123456789"
BODY = b'{"order":42}'


def test_a_signed_body_verifies() -> None:
    headers = signed_headers(SECRET, BODY, now=1_700_000_000)
    assert headers[SIGNATURE_HEADER].startswith("v1=")
    assert verify(SECRET, BODY, headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER], now=1_700_000_010)


def test_tampered_body_timestamp_or_secret_fails() -> None:
    headers = signed_headers(SECRET, BODY, now=1_700_000_000)
    stamp, signature = headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER]
    assert not verify(SECRET, b'{"order":43}', stamp, signature, now=1_700_000_000)
    assert not verify(SECRET, BODY, "1700000001", signature, now=1_700_000_000)
    assert not verify("other-secret", BODY, stamp, signature, now=1_700_000_000)
    assert not verify(SECRET, BODY, "not-a-number", signature, now=1_700_000_000)


def test_stale_signature_fails_outside_tolerance() -> None:
    headers = signed_headers(SECRET, BODY, now=1_700_000_000)
    args = (SECRET, BODY, headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER])
    assert verify(*args, now=1_700_000_299)
    assert not verify(*args, now=1_700_000_301)
    assert not verify(*args, now=1_699_999_000)


def test_one_of_several_signatures_may_match_during_rotation() -> None:
    good = sign(SECRET, BODY, 1_700_000_000)
    assert verify(SECRET, BODY, "1700000000", f"v1=deadbeef, {good}", now=1_700_000_000)
