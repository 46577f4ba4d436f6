"""Abuse over the wire: each hostile request gets a clear 4xx JSON error, writes nothing, and the server
stays up. The app runs under uvicorn on a loopback port, through the REST gateway on real Redis; "nothing
written" is checked on every key under the test's prefix (rate-limit counters aside: they count the abuse).

Per-route validation details (413 fields, hostile ids, another user's jobs) are pinned in
tests/e2e/test_api_jobs.py; schema-driven fuzzing is tests/e2e/test_api_fuzz.py. This suite sends what a
well-behaved client library cannot: raw bytes, broken encodings, smuggled headers.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from shared.settings import Settings
from tests.abuse.conftest import Snapshot
from tests.support.api_fixtures import ADMIN_HEADERS, ServedApp

pytestmark = pytest.mark.realredis


async def raw_request(port: int, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """Send exact bytes over a socket; return the status code and the response body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head + b"\r\n\r\n" + body)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(1 << 20), 10)
    finally:
        writer.close()
    status_line, _, rest = data.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


def assert_clear_4xx(response: httpx.Response) -> None:
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    error = response.json()["error"]
    assert error["code"] and error["message"], error


async def assert_still_up(client: httpx.AsyncClient) -> None:
    assert (await client.get("/health")).status_code == 200


@pytest.fixture
async def wire(api_server: ServedApp) -> Any:
    async with httpx.AsyncClient(base_url=api_server.url, timeout=30) as client:
        yield client


async def user_headers(wire: httpx.AsyncClient, owner: str) -> dict[str, str]:
    created = await wire.post("/v1/keys", json={"owner": owner}, headers=ADMIN_HEADERS)
    assert created.status_code == 201, created.text
    return {"Authorization": f"Bearer {created.json()['key']}"}


def nested(depth: int) -> bytes:
    return b'{"type":"echo","payload":{"message":"x","deep":' + b"[" * depth + b"]" * depth + b"}}"


BODY_CASES: dict[str, Callable[[Settings], bytes]] = {
    "oversized body": lambda s: (
        b'{"type":"echo","payload":{"message":"' + b"x" * (s.max_body_bytes + 1) + b'"}}'
    ),
    "deeply nested json": lambda s: nested(100_000),
    "invalid utf-8": lambda s: b'{"type":"echo","payload":{"message":"\xff\xfe\xc3"}}',
    "lone surrogate escape": lambda s: b'{"type":"echo","payload":{"message":"\\ud800"}}',
    "not json": lambda s: b"type=echo&payload=x",
    "json array": lambda s: b'[{"type":"echo"}]',
    "huge number": lambda s: b'{"type":"echo","payload":{"message":"x"},"priority":' + b"9" * 5000 + b"}",
    "null bytes in type": lambda s: b'{"type":"echo\\u0000","payload":{"message":"x"}}',
}


@pytest.mark.parametrize("case", sorted(BODY_CASES))
async def test_hostile_bodies_are_4xx_and_write_nothing(
    case: str, wire: httpx.AsyncClient, api_settings: Settings, key_snapshot: Snapshot
) -> None:
    user = await user_headers(wire, "mallory")
    before = await key_snapshot()
    body = BODY_CASES[case](api_settings)
    response = await wire.post("/v1/jobs", content=body, headers={**user, "Content-Type": "application/json"})
    assert_clear_4xx(response)
    assert await key_snapshot() == before
    await assert_still_up(wire)


async def test_huge_batch_is_refused_whole(
    wire: httpx.AsyncClient, api_settings: Settings, key_snapshot: Snapshot
) -> None:
    user = await user_headers(wire, "mallory")
    before = await key_snapshot()
    items = [{"type": "echo", "payload": {"message": "x"}}] * (api_settings.max_batch + 1)
    response = await wire.post("/v1/jobs/batch", json={"jobs": items}, headers=user)
    assert_clear_4xx(response)
    one_bad = [{"type": "echo", "payload": {"message": "x"}}] * 10 + [{"type": "echo", "payload": {}}]
    response = await wire.post("/v1/jobs/batch", json={"jobs": one_bad}, headers=user)
    assert_clear_4xx(response)
    assert await key_snapshot() == before
    await assert_still_up(wire)


def forged_tokens(real: str) -> list[str]:
    header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    claims = base64.urlsafe_b64encode(b'{"sub":"admin","admin":true}').rstrip(b"=").decode()
    return [
        f"{header}.{claims}.",  # unsigned JWT
        real[:-1] + ("A" if real[-1] != "A" else "B"),  # the right shape, one character off
        "x" * 9000,  # longer than any token
        "null",
        ADMIN_HEADERS["Authorization"].split()[1] + "x",  # admin token with a suffix
    ]


async def test_forged_tokens_are_401_and_write_nothing(
    wire: httpx.AsyncClient, key_snapshot: Snapshot
) -> None:
    real = (await user_headers(wire, "alice"))["Authorization"].split()[1]
    before = await key_snapshot()
    for token in forged_tokens(real):
        for method, path in [("POST", "/v1/jobs"), ("GET", "/v1/jobs"), ("POST", "/v1/keys")]:
            body = {"type": "echo", "payload": {"message": "x"}} if path == "/v1/jobs" else {"owner": "m"}
            response = await wire.request(
                method,
                path,
                json=body if method == "POST" else None,
                headers={"Authorization": f"Bearer {token}"},
            )
            assert response.status_code == 401, (token[:20], path, response.text)
            assert_clear_4xx(response)
    assert await key_snapshot() == before
    await assert_still_up(wire)


async def test_another_users_job_ids_change_nothing(wire: httpx.AsyncClient, key_snapshot: Snapshot) -> None:
    alice, bob = await user_headers(wire, "alice"), await user_headers(wire, "bob")
    created = await wire.post("/v1/jobs", json={"type": "echo", "payload": {"message": "hi"}}, headers=alice)
    assert created.status_code == 201, created.text
    job = created.json()
    before = await key_snapshot()
    for method, path in [
        ("GET", f"/v1/jobs/{job['id']}"),
        ("DELETE", f"/v1/jobs/{job['id']}"),
        ("POST", f"/v1/jobs/{job['id']}/retry"),
    ]:
        response = await wire.request(method, path, headers=bob)
        assert response.status_code == 404, (method, response.text)
        assert_clear_4xx(response)
    assert await key_snapshot() == before
    assert (await wire.get(f"/v1/jobs/{job['id']}", headers=alice)).json()["state"] == "waiting"


@pytest.mark.parametrize(
    "path",
    [
        "/v1/jobs/../keys",
        "/v1/jobs/..%2F..%2Fkeys",
        "/v1/jobs/%2e%2e/%2e%2e/keys",
        "/v1/jobs/x%00y",
        "/v1/jobs/" + "%2F" * 50,
        "/v1/queues/..%2Fdue/pause",
        "/v1/queues/a:b:*/clean",
    ],
)
async def test_path_traversal_reaches_nothing(
    path: str, api_server: ServedApp, wire: httpx.AsyncClient, key_snapshot: Snapshot
) -> None:
    user = await user_headers(wire, "mallory")
    before = await key_snapshot()
    for method in ("GET", "DELETE", "POST"):
        head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n"
        head += f"Authorization: {user['Authorization']}"
        status, body = await raw_request(api_server.port, head.encode())
        # A path that decodes to bare slashes gets Starlette's trailing-slash redirect: no handler runs.
        redirect = status == 307 and path.endswith("%2F")
        assert 400 <= status < 500 or redirect, (method, path, status, body[:200])
    assert await key_snapshot() == before
    await assert_still_up(wire)


@pytest.mark.parametrize(
    "header",
    [
        b"Authorization: Bearer abc\rX-Admin: 1",
        b"Authorization: Bearer abc\nX-Admin: 1",
        b"Idempotency-Key: a\r\n\r\nGET /v1/keys HTTP/1.1",
        b"Authorization: Bearer \x00admin",
        b"X-Forwarded-For: 127.0.0.1\r\nAuthorization: " + ADMIN_HEADERS["Authorization"].encode()[:-1],
    ],
)
async def test_header_injection_gets_no_access(
    header: bytes, api_server: ServedApp, wire: httpx.AsyncClient, key_snapshot: Snapshot
) -> None:
    before = await key_snapshot()
    body = b'{"owner":"smuggled","admin":true}'
    head = b"POST /v1/keys HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n"
    head += b"Content-Length: %d\r\n" % len(body) + header
    status, _ = await raw_request(api_server.port, head, body)
    assert 400 <= status < 500, (header, status)
    assert await key_snapshot() == before
    await assert_still_up(wire)
