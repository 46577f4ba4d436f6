"""Property-based hostile input over every route: no 5xx, every 4xx is the JSON error shape (naming the
field for 400, 413 and 422), and a refused request writes nothing: the caller's and the admin's listings
and stats, and every key under the test's prefix, read back the same as before it.

Hypothesis builds hostile JSON (deep nesting, lone surrogates escaped and as raw bytes, NaN and Infinity,
numbers too large for a float or for int(), duplicate members, odd dates up to year-9999 offsets, unicode
in every string field) and hostile paths, queries and headers. The app runs under uvicorn on real Redis
through the gateway. A fixed seed and a bounded number of examples per route group keep the run short
and reproducible; the totals are printed (and kept as test properties) for the closing note.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from functions.api.app import create_app
from shared.limits import MAX_JSON_DEPTH
from tests.support.api_fixtures import (
    ADMIN_HEADERS,
    ServedApp,
    _prefix,
    api_test_registry,
    gateway_settings,
)

pytestmark = pytest.mark.realredis

EXAMPLES_PER_GROUP = 40
FIELD_STATUSES = (400, 413, 422)  # input errors: these must name the field


# -- hostile JSON ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Raw:
    """JSON text written verbatim: what a well-behaved encoder would never produce."""

    text: str


@dataclass(frozen=True)
class Dup:
    """An object whose member names repeat."""

    pairs: tuple[tuple[str, Any], ...]


def encode(value: Any, *, escape: bool) -> str:
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, Dup):
        return (
            "{"
            + ",".join(f"{encode(k, escape=escape)}:{encode(v, escape=escape)}" for k, v in value.pairs)
            + "}"
        )
    if isinstance(value, dict):
        return (
            "{"
            + ",".join(f"{encode(k, escape=escape)}:{encode(v, escape=escape)}" for k, v in value.items())
            + "}"
        )
    if isinstance(value, list):
        return "[" + ",".join(encode(v, escape=escape) for v in value) + "]"
    return json.dumps(value, ensure_ascii=escape)


def body_bytes(value: Any, escape: bool) -> bytes:
    """Escaped: surrogates as \\ud800; raw: as the UTF-8-shaped bytes ED A0 80 (which are not UTF-8)."""
    return encode(value, escape=escape).encode("utf-8", "surrogatepass")


lone_surrogate = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
odd_chars = st.sampled_from(
    ["\x00", "\u202e", "\ufeff", "\u0301", "\U0001d518", "\U0001f600", "\n", '"', "\\"]
)
hostile_text = st.one_of(
    st.text(max_size=20),
    st.text(st.one_of(st.characters(), odd_chars, lone_surrogate), max_size=12),
    st.builds(lambda a, s, b: a + s + b, st.text(max_size=4), lone_surrogate, st.text(max_size=4)),
    st.sampled_from(
        ["", " ", "echo", "a" * 300, "../../keys", "*", "a:b:*", "%00", "1.2", "99999999999999999999"]
    ),
)
huge_numbers = st.one_of(
    st.integers(min_value=-(2**200), max_value=2**200),
    st.sampled_from([2**63, -(2**63) - 1, 2**64, 10**30]).map(int),
    st.sampled_from(["1e400", "-1e400", "1e-400", "-0", "0e0", "1" + "0" * 5000, "9" * 4301]).map(Raw),
    st.floats(allow_nan=False, allow_infinity=False),
)
non_json = st.sampled_from(["NaN", "Infinity", "-Infinity", "nan", "undefined"]).map(Raw)
deep = st.builds(
    lambda depth, kind: Raw(("[" if kind else '{"a":') * depth + "1" + ("]" if kind else "}") * depth),
    st.sampled_from([MAX_JSON_DEPTH - 1, MAX_JSON_DEPTH, MAX_JSON_DEPTH + 1, 256, 600, 950, 3000]),
    st.booleans(),
)


def _date(year: str, month: int, day: int, hour: int, minute: int, second: int, frac: str, zone: str) -> str:
    return f"{year}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}{frac}{zone}"


odd_dates = st.one_of(
    st.sampled_from(
        [
            "9999-12-31T23:59:59-12:00",
            "9999-12-31T23:59:59-23:59",
            "9999-12-31T23:59:59+00:00",
            "0001-01-01T00:00:00+14:00",
            "0001-01-01T00:00:00Z",
            "0000-01-01T00:00:00Z",
            "10000-01-01T00:00:00Z",
            "+10000-01-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-06-30T23:59:60Z",
            "2026-01-01T00:00:00+24:00",
            "2026-01-01",
            "2026-01-01T00:00:00.1234567891234Z",
            "now",
        ]
    ),
    st.builds(
        _date,
        st.sampled_from(["0001", "1970", "2026", "9998", "9999"]),
        st.integers(0, 13),
        st.integers(0, 32),
        st.integers(0, 25),
        st.integers(0, 60),
        st.integers(0, 61),
        st.sampled_from(["", ".5", ".999999"]),
        st.sampled_from(["", "Z", "+14:00", "-12:00", "-23:59", "+23:59", "+25:00"]),
    ),
    st.sampled_from([253402300800, 253402300799, -62135596801, 10**20, 1e308]),
)
scalars = st.one_of(st.none(), st.booleans(), huge_numbers, hostile_text, non_json)
hostile_json: st.SearchStrategy[Any] = st.recursive(
    st.one_of(scalars, deep),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(hostile_text, children, max_size=4),
        st.builds(lambda k, a, b: Dup(((k, a), (k, b))), hostile_text, children, children),
    ),
    max_leaves=12,
)

JOB_FIELDS = [
    "type",
    "payload",
    "priority",
    "delay_seconds",
    "run_at",
    "max_attempts",
    "backoff",
    "timeout_seconds",
    "idempotency_key",
    "metadata",
    "tags",
    "extra",
]


@st.composite
def job_body(draw: st.DrawFn) -> dict[str, Any]:
    """A valid submit with one to three fields made hostile (payload fields and nested backoff too)."""
    body: dict[str, Any] = {"type": "echo", "payload": {"message": "x"}}
    for _ in range(draw(st.integers(1, 3))):
        name = draw(
            st.sampled_from([*JOB_FIELDS, "payload.message", "payload.repeat", "backoff.delay", "tags[]"])
        )
        value = draw(odd_dates if name == "run_at" and draw(st.booleans()) else hostile_json)
        if name == "payload.message" or name == "payload.repeat":
            body["payload"] = {**body["payload"], name.split(".")[1]: value}
        elif name == "backoff.delay":
            body["backoff"] = {"kind": "fixed", "delay": value}
        elif name == "tags[]":
            body["tags"] = [value]
        else:
            body[name] = value
    return body


# -- requests -------------------------------------------------------------------------------------


@dataclass
class Call:
    method: str
    path: str
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    admin: bool = False


def segment(text: str) -> str:
    """Any text as one path segment or query value, percent-encoded from its bytes (surrogates included)."""
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


# What HTTP/1.1 can carry in a header value: Latin-1 without control characters or edge whitespace.
latin1_text = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=40
).map(lambda text: text.strip() or "x")
escape_mode = st.booleans()

submit_calls = st.builds(lambda b, esc: Call("POST", "/v1/jobs", body_bytes(b, esc)), job_body(), escape_mode)
batch_calls = st.builds(
    lambda bodies, esc: Call(
        "POST",
        "/v1/jobs/batch",
        body_bytes({"jobs": [{"type": "echo", "payload": {"message": "ok"}}, *bodies]}, esc),
    ),
    st.lists(job_body(), min_size=1, max_size=3),
    escape_mode,
)
whole_body_calls = st.builds(
    lambda path, value, esc: Call("POST", path, body_bytes(value, esc)),
    st.sampled_from(
        ["/v1/jobs", "/v1/jobs/batch", "/v1/keys", "/v1/queues/echo/clean", "/v1/queues/echo/retry-failed"]
    ),
    hostile_json,
    escape_mode,
).map(
    lambda call: Call(
        call.method, call.path, call.body, admin=call.path.startswith(("/v1/keys", "/v1/queues"))
    )
)
admin_body_calls = st.one_of(
    st.builds(
        lambda owner, admin, rate, esc: Call(
            "POST", "/v1/keys", body_bytes({"owner": owner, "admin": admin, "rate": rate}, esc), admin=True
        ),
        hostile_text,
        st.one_of(st.booleans(), hostile_json),
        st.one_of(st.none(), hostile_text, st.sampled_from(["100/minute", "0/s", "1/0s", "999999999/d"])),
        escape_mode,
    ),
    st.builds(
        lambda state, older, limit, esc: Call(
            "POST",
            "/v1/queues/echo/clean",
            body_bytes({"state": state, "older_than_seconds": older, "limit": limit}, esc),
            admin=True,
        ),
        st.one_of(st.sampled_from(["completed", "failed", "cancelled", "waiting"]), hostile_text),
        hostile_json,
        hostile_json,
        escape_mode,
    ),
    st.builds(
        lambda limit, esc: Call(
            "POST", "/v1/queues/echo/retry-failed", body_bytes({"limit": limit}, esc), admin=True
        ),
        hostile_json,
        escape_mode,
    ),
)
query = st.one_of(
    hostile_text, st.sampled_from(["waiting", "echo", "0", "-1", "201", "1e3", "01ARZ3NDEKTSV4RRFFQ69G5FAV"])
)
list_calls = st.builds(
    lambda path, params, admin: Call(
        "GET",
        path + ("&" if "?" in path else "?") + "&".join(f"{k}={segment(v)}" for k, v in params.items()),
        admin=admin,
    ),
    st.sampled_from(["/v1/jobs", "/v1/queues/echo/jobs", "/v1/queues/echo/jobs?view=summary"]),
    st.dictionaries(st.sampled_from(["state", "type", "tag", "cursor", "limit", "owner"]), query, max_size=4),
    st.booleans(),
).map(lambda c: Call(c.method, c.path, admin=c.admin or not c.path.startswith("/v1/jobs")))
path_calls = st.builds(
    lambda template, method, text, admin: Call(method, template.format(segment(text)), admin=admin),
    st.sampled_from(
        [
            "/v1/jobs/{}",
            "/v1/jobs/{}/retry",
            "/v1/jobs/{}/events?wait=0",
            "/v1/queues/{}",
            "/v1/queues/{}/jobs",
            "/v1/queues/{}/pause",
            "/v1/queues/{}/resume",
            "/v1/keys/{}",
            "/v1/queues/{}/jobs?view=summary",
        ]
    ),
    st.sampled_from(["GET", "POST", "DELETE"]),
    query,
    st.booleans(),
)
header_calls = st.builds(
    lambda path, name, value: Call(
        "GET" if "events" in path or "stream" in path else "POST",
        path,
        headers={name: value},
        body=b'{"type":"echo","payload":{"message":"h"}}' if path == "/v1/jobs" else None,
        admin=path == "/v1/events/queues",
    ),
    st.sampled_from(["/v1/jobs/{job}/events?wait=0", "/v1/events/queues", "/v1/jobs"]),
    st.sampled_from(["Last-Event-ID", "Idempotency-Key", "X-Request-ID"]),
    st.one_of(
        latin1_text,
        st.sampled_from(
            [
                "99999999999999999999",
                "18446744073709551616~echo=1-1",
                "1~echo=99999999999999999999-0",
                "x" * 9000,
            ]
        ),
    ),
)
event_query_calls = st.builds(
    lambda wait, since: Call("GET", f"/v1/jobs/{{job}}/events?wait={segment(wait)}&since={segment(since)}"),
    st.one_of(st.sampled_from(["0", "-1", "26", "1e400", "nan", "inf", "0.0"]), hostile_text),
    query,
)

GROUPS: dict[str, st.SearchStrategy[Call]] = {
    "submit": submit_calls,
    "batch": batch_calls,
    "whole bodies": whole_body_calls,
    "admin bodies": admin_body_calls,
    "listings": list_calls,
    "paths": path_calls,
    "headers": header_calls,
    "event queries": event_query_calls,
}


# -- the property ---------------------------------------------------------------------------------


@dataclass
class Tally:
    requests: int = 0
    server_errors: int = 0
    statuses: Counter[int] = field(default_factory=Counter)


class Prober:
    """Sends calls, checks each answer, and compares what the caller and the admin read before and after."""

    def __init__(
        self, client: httpx.Client, user: dict[str, str], job_id: str, gateway: Any, prefix: str
    ) -> None:
        self.client, self.user, self.job_id = client, user, job_id
        self.gateway, self.prefix = gateway, prefix
        self.tally = Tally()
        self.baseline = self.snapshot()

    def send(
        self, method: str, path: str, *, headers: dict[str, str], body: bytes | None = None
    ) -> httpx.Response:
        hdrs = {**headers, "Content-Type": "application/json"} if body is not None else headers
        raw = {name: value.encode("latin-1") for name, value in hdrs.items()}  # bytes: httpx sends them as is
        response = self.client.request(method, path, content=body, headers=raw)
        self.tally.requests += 1
        self.tally.statuses[response.status_code] += 1
        if response.status_code >= 500:
            self.tally.server_errors += 1
        return response

    def snapshot(self) -> tuple[Any, ...]:
        reads = [
            ("/v1/jobs?limit=200", self.user),
            ("/v1/jobs?limit=200", ADMIN_HEADERS),
            ("/v1/queues", ADMIN_HEADERS),
            ("/v1/queues/echo/jobs?limit=200", ADMIN_HEADERS),
            ("/v1/keys", ADMIN_HEADERS),
        ]
        seen: list[Any] = []
        for path, headers in reads:
            response = self.send("GET", path, headers=headers)
            assert response.status_code == 200, (path, response.text[:300])
            seen.append(_stable(response.json()))
        return (*seen, self.keys())

    def keys(self) -> dict[str, str]:
        """Every key under the prefix with a digest of its value."""
        auth = {"Authorization": f"Bearer {self.gateway.token}"}
        keys = httpx.post(self.gateway.url, json=["KEYS", f"{self.prefix}:*"], headers=auth).json()["result"]
        # Left out: rate-limit buckets (they count the abuse) and the lanes' pending-trigger flags (they
        # expire on their own, so one set by an earlier accepted submit may vanish between two reads).
        passing = (f"{self.prefix}:ratelimit", f"{self.prefix}:trigger:")
        keys = sorted(k for k in keys if not k.startswith(passing))
        if not keys:
            return {}
        binary = {**auth, "Upstash-Encoding": "base64"}
        replies = httpx.post(
            f"{self.gateway.url}/pipeline", json=[["DUMP", k] for k in keys], headers=binary
        ).json()
        return {k: json.dumps(r) for k, r in zip(keys, replies, strict=True)}

    def check(self, call: Call) -> None:
        headers = {**(ADMIN_HEADERS if call.admin else self.user), **call.headers}
        path = call.path.replace("{job}", self.job_id)
        response = self.send(call.method, path, headers=headers, body=call.body)
        where = f"{call.method} {path[:200]} {(call.body or b'')[:300]!r}"
        assert response.status_code < 500, (where, response.status_code, response.text[:300])
        if response.status_code >= 400:
            assert response.headers.get("content-type") == "application/json", (where, response.text[:300])
            error = response.json()["error"]
            assert isinstance(error["code"], str) and error["code"], (where, error)
            assert isinstance(error["message"], str) and error["message"], (where, error)
            if response.status_code in FIELD_STATUSES:
                assert isinstance(error.get("field"), str) and error["field"], (where, error)
            after = self.snapshot()
            changed = [i for i, (a, b) in enumerate(zip(after, self.baseline, strict=True)) if a != b]
            assert not changed, f"refused but written: {where}: {_diff(after, self.baseline, changed)}"
        elif call.method != "GET":
            self.baseline = self.snapshot()  # accepted: what it wrote is the new normal


def _diff(after: tuple[Any, ...], before: tuple[Any, ...], changed: list[int]) -> list[Any]:
    """What differs: the reads by index, and for the key snapshot (last) only the keys that changed."""
    found: list[Any] = []
    for i in changed:
        if i == len(after) - 1:
            keys = sorted(set(after[i]) | set(before[i]))
            found.append(
                [(k, before[i].get(k), after[i].get(k)) for k in keys if after[i].get(k) != before[i].get(k)]
            )
        else:
            found.append((i, before[i], after[i]))
    return found


def _stable(value: Any) -> Any:
    """A read without the figures that move with the clock alone (ages, and the minutes of the last hour's
    throughput: only minutes that counted a job are kept)."""
    if isinstance(value, dict):
        return {
            k: _busy_minutes(v) if k == "throughput" else _stable(v)
            for k, v in value.items()
            if k not in ("oldest_waiting_age",)
        }
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def _busy_minutes(points: list[dict[str, Any]]) -> dict[str, tuple[int, int]]:
    return {p["minute"]: (p["completed"], p["failed"]) for p in points if p["completed"] or p["failed"]}


@pytest.fixture
def prober(real_gateway: Any, unique_name: str) -> Iterator[Prober]:
    """On the real-Redis gateway only: the embedded stand-in would double the run and prove nothing more."""
    gateway = real_gateway
    prefix = _prefix(unique_name)
    app_settings = gateway_settings(
        gateway, prefix, default_rate="100000/s", events_max_seconds=0.2, events_poll_seconds=0.05
    )
    with (
        ServedApp(create_app(app_settings, registry=api_test_registry())) as served,
        httpx.Client(base_url=served.url, timeout=30) as client,
    ):
        created = client.post("/v1/keys", json={"owner": "prober"}, headers=ADMIN_HEADERS)
        user = {"Authorization": f"Bearer {created.json()['key']}"}
        job = client.post(
            "/v1/jobs", json={"type": "echo", "payload": {"message": "base"}, "tags": ["t"]}, headers=user
        )
        client.post(
            "/v1/jobs", json={"type": "echo", "payload": {"message": "admin's"}}, headers=ADMIN_HEADERS
        )
        assert job.status_code == 201, job.text
        yield Prober(client, user, job.json()["id"], gateway, prefix)


def run_group(prober: Prober, strategy: st.SearchStrategy[Call]) -> None:
    @seed(20261201)
    @settings(
        max_examples=EXAMPLES_PER_GROUP,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(call=strategy)
    def check(call: Call) -> None:
        prober.check(call)

    check()


def test_hostile_input_over_every_route(
    prober: Prober, record_property: Callable[[str, object], None]
) -> None:
    for name, strategy in GROUPS.items():
        before = prober.tally.requests
        run_group(prober, strategy)
        print(f"{name}: {prober.tally.requests - before} requests")
    tally = prober.tally
    summary = f"{tally.requests} requests, {tally.server_errors} 5xx; by status {dict(tally.statuses)}"
    print(f"hostile-input property suite: {summary}")
    record_property("requests", tally.requests)
    record_property("server_errors", tally.server_errors)
    assert tally.server_errors == 0
