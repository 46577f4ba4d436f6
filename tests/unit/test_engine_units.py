"""Engine and store logic that needs no Redis: job decoding, edge validation, error mapping, the
script runner's NOSCRIPT fallback and fault handling at the HTTP layer (respx), the retry helper."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import respx
from pydantic import ValidationError as PydanticValidationError
from upstash_redis.asyncio import Redis
from upstash_redis.errors import UpstashError

from shared.codec import as_fields, decode_job, shown_state, unpack_m
from shared.engine import Engine
from shared.errors import (
    IdempotencyConflictError,
    InvalidTransitionError,
    JobNotFoundError,
    PayloadTooLargeError,
    StoreError,
    StoreUnavailableError,
    ValidationError,
)
from shared.ids import new_id
from shared.limits import MAX_ERRORS_KEPT, MAX_LOG_LINES
from shared.models import Backoff, JobSpec, State
from shared.settings import Settings
from shared.store import Store, constants_header, make_redis, map_error, retrying, script_sha, script_source

URL = "http://redis.test"


class Boom:
    """A redis stand-in that fails the test if the engine sends anything."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"engine called redis.{name} for input it should have refused")


def test_decode_job_from_packed_fields() -> None:
    job_id = new_id(1_800_000_000_000)
    d = (
        '{"q":"mail","o":"alice","p":3,"m":5,"t":60,"b":["f",2,2,10,0],"y":"send","i":"k",'
        '"md":{"a":1},"g":["t:1"],"x":{"to":"b"}}'
    )
    fields = {
        "d": d,
        "m": "completed|2|2.abc1|1800000001000|1800000002000|1800000000500|100|",
        "r": '{"ok":true}',
        "e": json.dumps([{"kind": "retryable", "message": "x", "attempt": 1, "at": 1800000000900}]),
        "g": '["l1"]',
    }
    job = decode_job(job_id, fields, 1_800_000_003_000)
    assert (job.queue, job.type, job.owner, job.priority, job.max_attempts, job.timeout) == (
        "mail",
        "send",
        "alice",
        3,
        5,
        60,
    )
    assert job.backoff == Backoff(kind="fixed", delay=2, factor=2, max_delay=10, jitter=0)
    assert (job.state, job.attempts, job.progress, job.result, job.logs) == (
        State.COMPLETED,
        2,
        100,
        {"ok": True},
        ["l1"],
    )
    assert job.created_at == datetime.fromtimestamp(1_800_000_000, UTC)
    assert job.finished_at == datetime.fromtimestamp(1_800_000_002, UTC)
    assert job.error is not None and job.error.at == datetime.fromtimestamp(1_800_000_000.9, UTC)
    assert (job.idempotency_key, job.metadata, job.tags, job.payload) == ("k", {"a": 1}, ["t:1"], {"to": "b"})


def test_queued_shows_delayed_until_its_time() -> None:
    m = unpack_m("queued|0||||2000||")
    assert shown_state(m, 1999) is State.DELAYED
    assert shown_state(m, 2000) is State.WAITING


def test_as_fields_accepts_every_reply_shape() -> None:
    assert (
        as_fields(["a", "1", "b", "2"])
        == as_fields({"a": "1", "b": "2"})
        == as_fields([("a", "1"), ("b", "2")])
    )
    assert as_fields({}) == as_fields([]) == as_fields(None) == {}


@pytest.mark.parametrize(
    ("spec", "error", "field"),
    [
        (JobSpec(type="echo", payload="x" * 300), PayloadTooLargeError, "jobs[0].payload"),
        (JobSpec(type="echo", metadata={"k": "v" * 9000}), PayloadTooLargeError, "jobs[0].metadata"),
        (JobSpec(type="echo", payload={"n": float("nan")}), ValidationError, "jobs[0].payload"),
        (JobSpec(type="echo", timeout=841), ValidationError, "jobs[0].timeout"),  # fits no default lane
    ],
)
async def test_bad_specs_are_refused_before_any_command(
    spec: JobSpec, error: type[Exception], field: str
) -> None:
    engine = Engine(Boom(), max_payload_bytes=256)
    with pytest.raises(error) as caught:
        await engine.enqueue([spec])
    assert getattr(caught.value, "field", None) == field


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"queue": "a b"}, "queue"),
        ({"type": "../x"}, "type"),
        ({"priority": 12}, "priority"),
        ({"tags": ["bad tag"]}, "tags.0"),
        ({"run_at": datetime(2030, 1, 1)}, "run_at"),  # naive: which zone?
    ],
)
def test_a_job_spec_is_validated_whole_so_the_engine_can_trust_it(fields: dict[str, Any], where: str) -> None:
    with pytest.raises(PydanticValidationError) as caught:
        JobSpec.model_validate({"type": "echo", **fields})
    assert ".".join(str(part) for part in caught.value.errors()[0]["loc"]) == where


async def test_bad_calls_are_refused_before_any_command() -> None:
    engine = Engine(Boom())
    for call in (
        engine.enqueue([]),
        engine.claim("q", 1001),
        engine.claim("../q", 1),
        engine.claim("q", 1, lease=0),
        engine.claim("q", 1, max_timeout=0),
        engine.claim("q", 1, lane="no-such-lane"),
        engine.book_wake("no-such-lane", 0),
        engine.extend([], 0),
        engine.retry_failed("q", limit=0),
        engine.clean("q", State.ACTIVE, older_than=0),
        engine.list_jobs(owner="a", limit=0),
        engine.list_jobs(queue="q", cursor="1.2; DROP"),
        engine.events("q", after="$"),
    ):
        with pytest.raises(ValidationError):
            await call
    with pytest.raises(JobNotFoundError):
        await engine.get("../../etc/passwd")


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("ERR Error running script: JOBQ:not_found job not found", JobNotFoundError),
        ("JOBQ:idempotency_conflict jobs[3]", IdempotencyConflictError),
        ("JOBQ:invalid_transition only a failed job", InvalidTransitionError),
        ("JOBQ:something_new text", StoreError),
        ("WRONGTYPE Operation against a key", StoreError),
        ("LOADING Redis is loading the dataset", StoreUnavailableError),
        ("ERR Redis backend unavailable: Connection refused", StoreUnavailableError),
        ("ERR unknown command 'FOO'", StoreError),
    ],
)
def test_error_replies_map_to_typed_errors(reply: str, expected: type[Exception]) -> None:
    assert type(map_error(UpstashError(reply))) is expected


def test_transport_failures_are_unavailable() -> None:
    assert isinstance(map_error(httpx.ConnectError("refused")), StoreUnavailableError)
    assert isinstance(map_error(TimeoutError()), StoreUnavailableError)
    assert isinstance(map_error(json.JSONDecodeError("x", "<html>", 0)), StoreUnavailableError)


def test_scripts_carry_the_shared_library() -> None:
    source = script_source("claim")
    flags, limits, default_policy, rest = source.split("\n", 3)
    assert flags == "#!lua flags=allow-key-locking"  # every key it touches is in KEYS
    assert script_source("list").startswith("#!lua flags=allow-key-locking,no-writes\n")
    assert f"{limits}\n{default_policy}" == constants_header()
    assert rest.startswith("-- lib.lua") and "\n-- claim.lua" in rest
    assert f"errors = {MAX_ERRORS_KEPT}," in limits and f"log_lines = {MAX_LOG_LINES}" in limits
    assert "kn = 1000," in default_policy and "cc = 0" in default_policy  # QueueOptions' defaults
    assert len(script_sha("claim")) == 40 and script_sha("claim") != script_sha("finish")


def client() -> Redis:
    return make_redis(Settings(JOBQ_REDIS_REST_URL=URL, JOBQ_REDIS_REST_TOKEN="t", redis_timeout=1))


@respx.mock
async def test_noscript_falls_back_to_the_source_once() -> None:
    route = respx.post(URL).mock(
        side_effect=[
            httpx.Response(400, json={"error": "NOSCRIPT No matching script. Please use EVAL."}),
            httpx.Response(200, json={"result": "b2s="}),  # base64 of "ok"
        ]
    )
    redis = client()
    assert await Store(redis).script("claim", ["k1", "k2"], ["-1"]) == "ok"
    sent = [json.loads(call.request.content) for call in route.calls]
    assert [body[0] for body in sent] == ["EVALSHA", "EVAL"]
    assert sent[0][1] == script_sha("claim") and sent[1][1] == script_source("claim")
    assert sent[0][2:] == sent[1][2:] == [2, "k1", "k2", "-1"]  # the keys, declared
    await redis.close()


@respx.mock
async def test_5xx_and_refused_connections_are_unavailable_and_not_retried_by_the_sdk() -> None:
    route = respx.post(URL).mock(return_value=httpx.Response(502, text="<html>bad gateway</html>"))
    redis = client()
    with pytest.raises(StoreUnavailableError):
        await Store(redis).command("GET", "k")
    assert route.call_count == 1  # the SDK's own retry is off
    route.mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(StoreUnavailableError):
        await Store(redis).command("GET", "k")
    await redis.close()


@respx.mock
async def test_a_hanging_server_hits_the_deadline() -> None:
    async def hang(request: httpx.Request) -> httpx.Response:
        import asyncio

        await asyncio.sleep(5)
        return httpx.Response(200, json={"result": None})

    respx.post(URL).mock(side_effect=hang)
    redis = client()
    with pytest.raises(StoreUnavailableError):
        await Store(redis, timeout=0.05).command("GET", "k")
    await redis.close()


async def test_retrying_retries_only_unavailability() -> None:
    calls: list[int] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise StoreUnavailableError("down")
        return "ok"

    assert await retrying(flaky, base_delay=0.001) == "ok" and len(calls) == 3

    async def broken() -> str:
        calls.append(1)
        raise JobNotFoundError("no")

    calls.clear()
    with pytest.raises(JobNotFoundError):
        await retrying(broken, base_delay=0.001)
    assert len(calls) == 1

    async def down() -> str:
        raise StoreUnavailableError("down")

    with pytest.raises(StoreUnavailableError):
        await retrying(down, attempts=2, base_delay=0.001)


def test_models_round_trip_through_json() -> None:
    fields = {
        "d": '{"q":"q","o":"o","p":5,"m":3,"t":300,"y":"t","x":[1,{"a":null}]}',
        "m": "active|1|1.ab1|1800000000000||1800000000000|40|1",
        "g": '["x"]',
    }
    job = decode_job(new_id(1_800_000_000_000), fields, 1_800_000_000_000)
    assert job.cancel_requested and job.progress == 40
    assert type(job).model_validate_json(job.model_dump_json()) == job
