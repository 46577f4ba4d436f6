"""The gateway's request parsing and reply encoding, and the real-Redis requirement of the fixtures."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from typer.testing import CliRunner

from infra.cli import app
from infra.local import protocol
from infra.local.protocol import RequestError
from infra.local.rest_gateway import create_app
from tests.support import gateway_fixtures
from tests.support.gateway import free_port


def test_arguments_as_bytes() -> None:
    assert protocol.parse_command(["set", "k", 1, 2.5, -3, "é"]) == [
        b"set",
        b"k",
        b"1",
        b"2.5",
        b"-3",
        "é".encode(),
    ]


@pytest.mark.parametrize("raw", [[], "GET", {"0": "GET"}, None, 5])
def test_bad_commands(raw: Any) -> None:
    with pytest.raises(RequestError) as caught:
        protocol.parse_command(raw)
    assert caught.value.status == 400 and caught.value.message.startswith("ERR ")


def test_booleans_are_their_json_text() -> None:
    assert protocol.parse_command(["SET", "k", True, False]) == [b"SET", b"k", b"true", b"false"]


def test_json_numbers_keep_their_text() -> None:
    raw = protocol.parse_json(b'["SET", "k", 1e20, 12345678901234567890123, 0.1, -3]')
    assert protocol.parse_command(raw)[2:] == [b"1e20", b"12345678901234567890123", b"0.1", b"-3"]


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_is_not_json(literal: bytes) -> None:
    with pytest.raises(RequestError, match="invalid JSON"):
        protocol.parse_json(b'["SET", "k", ' + literal + b"]")


@pytest.mark.parametrize("bad", [None, {}, [], ["x"]])
def test_bad_arguments_name_their_position(bad: Any) -> None:
    with pytest.raises(RequestError, match="argument 1"):
        protocol.parse_command(["GET", bad])


def test_pipeline_body_must_be_array_of_arrays() -> None:
    assert protocol.parse_commands([["PING"], ["GET", "k"]]) == [[b"PING"], [b"GET", b"k"]]
    bad_bodies: list[Any] = [[], {}, ["GET"], [["GET"], "x"]]
    for raw in bad_bodies:
        with pytest.raises(RequestError):
            protocol.parse_commands(raw)


def test_json_errors_and_size_limit() -> None:
    with pytest.raises(RequestError, match="invalid JSON"):
        protocol.parse_json(b"[1,")
    with pytest.raises(RequestError, match="max request size exceeded") as caught:
        protocol.parse_json(b" " * (protocol.MAX_BODY_BYTES + 1))
    assert caught.value.status == 413


@pytest.mark.parametrize(
    ("command", "refused"),
    [
        (["BLPOP", "k", "0"], True),
        (["bzpopmin", "k", "0"], True),
        (["client", "list"], True),
        (["XREAD", "COUNT", "1", "block", "0", "STREAMS", "k", "0"], True),
        (["XREAD", "COUNT", "1", "STREAMS", "k", "0"], False),
        (["LPOP", "k"], False),
    ],
)
def test_refused_commands(command: list[str], refused: bool) -> None:
    if refused:
        with pytest.raises(RequestError, match="not available"):
            protocol.parse_command(command)
    else:
        protocol.parse_command(command)


@pytest.mark.parametrize(
    ("command", "keys"),
    [
        (["GET", "a"], [b"a"]),
        (["DEL", "a", "b"], [b"a", b"b"]),
        (["MSET", "a", "1", "b", "2"], [b"a", b"b"]),
        (["EVAL", "s", "2", "a", "b", "argv"], [b"a", b"b"]),
        (["EVALSHA", "s", "x"], []),
        (["PING"], []),
        (["SCRIPT", "LOAD", "x" * 40000], []),
    ],
)
def test_keys_of(command: list[str], keys: list[bytes]) -> None:
    assert list(protocol.keys_of([arg.encode() for arg in command])) == keys


def test_key_size_limit_text() -> None:
    protocol.check_key_sizes([b"GET", b"k" * protocol.MAX_KEY_BYTES])
    with pytest.raises(RequestError) as caught:
        protocol.check_key_sizes([b"MSET", b"ok", b"v", b"k" * 40000, b"v"])
    assert caught.value.message == "ERR max key size exceeded. Limit: 32768 bytes, Actual: 40000 bytes"


def test_encode_result() -> None:
    reply = [b"OK", b"x", 3, None, [b"\xff\x00", b"OK"]]
    assert protocol.encode_result(reply, base64_encoding=False) == ["OK", "x", 3, None, ["\ufffd\x00", "OK"]]
    encoded = protocol.encode_result(reply, base64_encoding=True)
    assert encoded == ["OK", "eA==", 3, None, [base64.b64encode(b"\xff\x00").decode(), "OK"]]


def test_create_app_needs_a_token() -> None:
    with pytest.raises(ValueError, match="token"):
        create_app("")


def test_cli_gateway_refuses_an_empty_token() -> None:
    result = CliRunner().invoke(app, ["gateway", "--token", "", "--port", str(free_port())])
    assert result.exit_code != 0
    assert "--token" in result.output


def test_cli_gateway_refuses_a_negative_replica_lag() -> None:
    result = CliRunner().invoke(app, ["gateway", "--token", "t", "--replica-lag-ms", "-1"])
    assert result.exit_code != 0
    assert "--replica-lag-ms" in result.output


def test_cli_gateway_help_names_the_options() -> None:
    result = CliRunner().invoke(app, ["gateway", "--help"])
    assert result.exit_code == 0
    for option in ("--token", "--port", "--host", "--redis-url", "--replica-lag-ms", "JOBQ_GATEWAY_TOKEN"):
        assert option in result.output


def test_unreachable_redis_skips_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBQ_TEST_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("JOBQ_REQUIRE_REAL_REDIS", raising=False)
    with pytest.raises(pytest.skip.Exception, match="unreachable"):
        gateway_fixtures.require_real_redis()


@pytest.mark.parametrize(("name", "value"), [("CI", "true"), ("JOBQ_REQUIRE_REAL_REDIS", "1")])
def test_unreachable_redis_fails_when_required(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv("JOBQ_TEST_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("JOBQ_REQUIRE_REAL_REDIS", raising=False)
    monkeypatch.setenv(name, value)
    with pytest.raises(pytest.fail.Exception, match="unreachable"):
        gateway_fixtures.require_real_redis()
