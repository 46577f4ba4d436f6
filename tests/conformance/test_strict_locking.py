"""Strict locking (`jobq gateway --strict-locking`): a script that would take Upstash's global lock is
refused, so a CI run can prove a workload takes none. On the embedded backend and on Redis."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import httpx
import pytest

from tests.support.gateway import GatewayProcess, ThreadGateway
from tests.support.gateway_fixtures import require_real_redis

LOCKING = "#!lua flags=allow-key-locking\nreturn redis.call('INCR', KEYS[1])"
PLAIN = "return redis.call('INCR', KEYS[1])"


@pytest.fixture(scope="module", params=["embedded", "redis"])
def strict(request: pytest.FixtureRequest) -> Iterator[ThreadGateway]:
    url = require_real_redis() if request.param == "redis" else None
    with ThreadGateway(url, strict_locking=True) as running:
        yield running


def post(gateway: ThreadGateway, body: object, path: str = "/") -> httpx.Response:
    return httpx.post(gateway.url + path, json=body, headers=gateway.auth, timeout=10)


def test_flagged_scripts_run(strict: ThreadGateway, unique_name: str) -> None:
    assert post(strict, ["EVAL", LOCKING, 1, unique_name]).json() == {"result": 1}
    sha = hashlib.sha1(LOCKING.encode()).hexdigest()
    assert post(strict, ["EVALSHA", sha, 1, unique_name]).json() == {"result": 2}
    assert strict.global_lock_scripts() == 0


def test_scripts_without_the_flag_are_refused_and_never_sent(strict: ThreadGateway, unique_name: str) -> None:
    strict.reset_commands()
    response = post(strict, ["EVAL", PLAIN, 1, unique_name])
    assert response.status_code == 400
    assert response.json()["error"].startswith("ERR strict locking: EVAL of a script without")
    in_pipeline = post(strict, [["GET", unique_name], ["EVAL", PLAIN, 1, unique_name]], "/pipeline")
    assert in_pipeline.status_code == 400
    assert strict.counts() == {"commands": 0, "global_lock_scripts": 0}
    assert post(strict, ["GET", unique_name]).json() == {"result": None}


def test_an_unknown_sha_is_noscript_so_the_client_sends_the_text(strict: ThreadGateway) -> None:
    """The gateway cannot read the flags of a script it has not seen: the client's EVAL fallback shows
    them."""
    sha = hashlib.sha1(PLAIN.encode()).hexdigest()
    response = post(strict, ["EVALSHA", sha, 1, "k"])
    assert (response.status_code, response.json()["error"]) == (
        400,
        "NOSCRIPT No matching script. Please use EVAL.",
    )


def test_the_cli_flag_reaches_the_gateway() -> None:
    with GatewayProcess(None, extra_args=("--strict-locking",)) as process:
        response = post(process, ["EVAL", PLAIN, 1, "k"])  # type: ignore[arg-type]
        assert response.status_code == 400 and "strict locking" in response.json()["error"]
