"""Outbound HTTP for the built-in jobs: URL guard on every hop, bounded reads, jobq's retry rules.

Network errors, 5xx, 408 and 429 are retryable (a `Retry-After` header becomes a RetryJobError with that
delay); any other 4xx is permanent; a redirect is followed by hand so each target passes the URL guard.
"""

from __future__ import annotations

import email.utils
import time
from typing import Any

import httpx

from shared.errors import PermanentJobError, RetryJobError
from shared.settings import get_settings
from shared.urlguard import IPAddress, check_url

MAX_REDIRECTS = 5
EXCERPT_BYTES = 1024
MAX_RETRY_AFTER = 3600.0
RETRYABLE_STATUSES = frozenset({408, 429})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


class UpstreamError(Exception):
    """A retryable remote failure (network error or retryable status): the type's backoff applies."""


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta seconds or an HTTP date), capped; None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    delay = when.timestamp() - (time.time() if now is None else now)
    return min(max(delay, 0.0), MAX_RETRY_AFTER)


async def _excerpt(response: httpx.Response) -> str:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= EXCERPT_BYTES:
            break
    return b"".join(chunks)[:EXCERPT_BYTES].decode("utf-8", errors="replace")


async def send(
    method: str,
    url: str,
    *,
    headers: dict[str, str],
    content: bytes | None,
    timeout: float,  # noqa: ASYNC109 (httpx's own per-phase timeouts, not a wall-clock bound)
) -> dict[str, Any]:
    """Send the request; return {"status", "body", "url"} for a final answer below 400, else raise."""
    settings = get_settings()
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False) as client:
        for _ in range(MAX_REDIRECTS + 1):
            addresses = await check_url(url, settings)
            host = httpx.URL(url).host
            try:
                response = await _connect(client, method, url, headers, content, addresses)
            except httpx.TransportError as exc:
                raise UpstreamError(f"{type(exc).__name__} calling {host}") from exc
            try:
                location = response.headers.get("location")
                if response.status_code in REDIRECT_STATUSES and location:
                    url = str(httpx.URL(url).join(location))
                    if response.status_code == 303:
                        method, content = "GET", None
                    continue
                body = await _excerpt(response)
            except httpx.TransportError as exc:
                raise UpstreamError(f"{type(exc).__name__} reading from {host}") from exc
            finally:
                await response.aclose()
            return _judge(response, body, url)
    raise PermanentJobError(f"more than {MAX_REDIRECTS} redirects", field="payload.url")


async def _connect(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    headers: dict[str, str],
    content: bytes | None,
    addresses: list[IPAddress],
) -> httpx.Response:
    """Try the checked addresses in order; only a failed connect (nothing sent yet) moves to the next."""
    for address in addresses[:-1]:
        request = _pinned(client.build_request(method, url, headers=headers, content=content), address)
        try:
            return await client.send(request, stream=True)
        except httpx.ConnectError:
            continue
    request = _pinned(client.build_request(method, url, headers=headers, content=content), addresses[-1])
    return await client.send(request, stream=True)


def _pinned(request: httpx.Request, address: IPAddress) -> httpx.Request:
    """Connect to the checked address; Host header and TLS name (SNI, certificate) stay the URL's host."""
    host = request.url.host
    request.url = request.url.copy_with(host=str(address))
    if request.url.scheme == "https":
        request.extensions["sni_hostname"] = host
    return request


def _judge(response: httpx.Response, body: str, url: str) -> dict[str, Any]:
    status = response.status_code
    result = {"status": status, "body": body, "url": url}
    if status < 400:
        return result
    message = f"HTTP {status} from {httpx.URL(url).host}: {body[:200]}"
    if status >= 500 or status in RETRYABLE_STATUSES:
        delay = retry_after(response.headers.get("retry-after"))
        if delay is not None:
            raise RetryJobError(message, after=delay)
        raise UpstreamError(message)
    raise PermanentJobError(message)
