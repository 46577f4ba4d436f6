"""How a job and a queue's metrics are laid out in Redis, and back: the Python side of the field
layout documented in docs/redis-schema.md (the Lua side is shared/scripts/lib.lua)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from shared.ids import id_time_ms
from shared.keys import STATE_INDEXES
from shared.models import (
    HISTOGRAM_BOUNDS,
    POLICY_CODES,
    Backoff,
    Job,
    JobError,
    ParentLink,
    QueueMetrics,
    State,
    ThroughputPoint,
    Usage,
)


def ms(seconds: float) -> int:
    return round(seconds * 1000)


def dt(ms: int | float | str | None) -> datetime | None:
    """Epoch ms as a UTC datetime; a stored time beyond what datetime holds reads as its nearest end, so
    one bad value (written before run-at times were range-checked) cannot break every read of a job."""
    if ms is None or ms == "":
        return None
    try:
        return datetime.fromtimestamp(int(float(ms)) / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return datetime.max.replace(tzinfo=UTC) if float(ms) > 0 else datetime.min.replace(tzinfo=UTC)


def as_fields(reply: Any) -> dict[str, Any]:
    """A field/value reply as a dict, whatever shape it came in: a flat [f, v, ...] list (scripts),
    cjson's {} for an empty list, a dict (the SDK's HGETALL) or [(member, score), ...] (the SDK's
    ZRANGE WITHSCORES)."""
    if not reply:
        return {}
    if isinstance(reply, dict):
        return reply
    if isinstance(reply[0], (list, tuple)):
        return {item[0]: item[1] for item in reply}
    return {reply[i]: reply[i + 1] for i in range(0, len(reply), 2)}


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


M_FIELDS = ("s", "a", "k", "sa", "fa", "ra", "p", "x")  # the packed "m" field (see lib.lua)
DEFAULT_BACKOFF = ["e", 1, 2, 3600, 0.1]


def unpack_m(text: str) -> dict[str, str]:
    return dict(zip(M_FIELDS, text.split("|"), strict=False))


def fresh_m(job_id: str) -> str:
    """The packed state of a job that has waited since its submit: queued, no attempt, eligible since its
    creation. Its record leaves this field out until the job first moves (lib.lua `records` reads it the
    same way), which saves a hash field, about 90 bytes, per waiting job."""
    state = {"s": "queued", "a": "0", "ra": str(id_time_ms(job_id))}
    return "|".join(state.get(field, "") for field in M_FIELDS)


def shown_state(m: dict[str, str], now_ms: int) -> State:
    """The state a job shows: "queued" is delayed until its eligible time, then waiting."""
    if m.get("s") == "queued":
        eligible = int(m.get("ra") or 0)
        return State.DELAYED if eligible > now_ms else State.WAITING
    return State(m["s"])


def _backoff(raw: list[Any] | None) -> Backoff:
    kind, delay, factor, max_delay, jitter = raw or DEFAULT_BACKOFF
    return Backoff(
        kind="exponential" if kind == "e" else "fixed",
        delay=delay,
        factor=factor,
        max_delay=max_delay,
        jitter=jitter,
    )


def compact_backoff(b: Backoff) -> list[Any] | None:
    raw = ["e" if b.kind == "exponential" else "f", b.delay, b.factor, b.max_delay, b.jitter]
    return None if raw == DEFAULT_BACKOFF else raw


def decode_usage(text: str | None) -> Usage | None:
    """A job's stored usage field ('<id>:u', written by finish.lua), or None."""
    if not text:
        return None
    raw = json.loads(text)
    return Usage(
        input_tokens=int(raw.get("i") or 0),
        output_tokens=int(raw.get("o") or 0),
        cost=int(raw.get("c") or 0) / 1_000_000,
        model=raw.get("m") or None,
    )


def decode_job(job_id: str, fields: dict[str, str], now_ms: int) -> Job:
    """A Job from its Redis hash (fields in docs/redis-schema.md), its state as of `now_ms`."""
    d = json.loads(fields["d"])
    m = unpack_m(fields.get("m") or fresh_m(job_id))
    errors = [JobError.model_validate(e) for e in json.loads(fields.get("e") or "[]")]
    return Job(
        id=job_id,
        queue=d["q"],
        type=d["y"],
        owner=d["o"],
        payload=d.get("x"),
        priority=d["p"],
        state=shown_state(m, now_ms),
        attempts=int(m.get("a") or 0),
        max_attempts=d["m"],
        backoff=_backoff(d.get("b")),
        run_at=dt(m.get("ra")),
        timeout=d["t"],
        idempotency_key=d.get("i"),
        progress=int(float(m.get("p") or 0)),
        result=json.loads(fields["r"]) if "r" in fields else None,
        error=errors[-1] if errors else None,
        errors=errors,
        logs=json.loads(fields.get("g") or "[]"),
        created_at=dt(id_time_ms(job_id)) or datetime.now(UTC),
        started_at=dt(m.get("sa")),
        finished_at=dt(m.get("fa")),
        metadata=d.get("md") or {},
        tags=d.get("g") or [],
        cancel_requested=m.get("x") == "1",
        steps=decode_steps(fields.get("s")),
        singleton_key=d.get("sk"),
        debounce_key=d.get("dk"),
        callback_url=d.get("cb"),
        **_flow_links(fields),
        usage=decode_usage(fields.get("u")),
    )


POLICY_NAMES = {code: name for name, code in POLICY_CODES.items()}


def _flow_links(fields: dict[str, str]) -> dict[str, Any]:
    """A record's flow fields (shared/scripts/flow.lua): `f` what it waits for, `p` who waits on it.
    An empty Lua list comes back as {} (cjson), which list() reads as empty too."""
    f = json.loads(fields.get("f") or "{}")
    parents = json.loads(fields.get("p") or "[]")
    return {
        "children": list(f.get("c") or []),
        "depends_on": list(f.get("d") or []),
        "pending_children": max(0, int(f.get("n") or 0)),
        "parents": [ParentLink(id=pid, policy=POLICY_NAMES.get(code, "fail")) for pid, code in parents or []],
    }


def decode_steps(text: str | None) -> dict[str, Any]:
    """A job's durable steps from its record part "s": one `<name JSON>\t<result JSON>\n` line per step,
    in the order recorded (lib.lua has_step)."""
    steps: dict[str, Any] = {}
    for line in (text or "").split("\n"):
        if line:
            name, _, result = line.partition("\t")
            steps[json.loads(name)] = json.loads(result)
    return steps


def decode_metrics(entry: dict[str, Any], now: int) -> QueueMetrics:
    meta = as_fields(entry.get("m"))
    counts = dict(zip((*STATE_INDEXES, State.WAITING_CHILDREN.value), entry["c"], strict=True))
    buckets = len(HISTOGRAM_BOUNDS) + 1

    def count(field: str) -> int:
        return int(meta.get(field, 0))

    minute_now = now // 60000
    points = []
    for minute in range(minute_now - 59, minute_now + 1):
        slot = minute % 60
        held = meta.get(f"tm{slot}")
        same = held is not None and int(held) == minute
        points.append(
            ThroughputPoint(
                minute=dt(minute * 60000) or datetime.now(UTC),
                completed=count(f"tc{slot}") if same else 0,
                failed=count(f"tf{slot}") if same else 0,
            )
        )
    wait_buckets = [count(f"hw{i}") for i in range(1, buckets + 1)]
    oldest = entry.get("oldest")
    return QueueMetrics(
        queue=entry["q"],
        paused=bool(entry.get("paused")),
        counts={State(state): n for state, n in counts.items()},
        completed_total=count("completed"),
        failed_total=count("failed"),
        retried_total=count("retried"),
        cancelled_total=count("cancelled"),
        run_seconds_total=count("run_ms") / 1000,
        wait_seconds_total=count("wait_ms") / 1000,
        oldest_waiting_age=None if oldest is None else max(0.0, (now - oldest) / 1000),
        last_claim_at=dt(meta.get("lc")),
        run_buckets=[count(f"hr{i}") for i in range(1, buckets + 1)],
        wait_buckets=wait_buckets,
        claimed_total=sum(wait_buckets),
        cache_hits_total=count("ch"),
        cache_misses_total=count("cm"),
        input_tokens_total=count("ui"),
        output_tokens_total=count("uo"),
        cost_total=count("uc") / 1_000_000,
        throughput=points,
    )
