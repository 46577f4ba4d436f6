"""The key schema, pinned: a change here is a data migration, not a refactor."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shared.keys import STATE_INDEXES, Keys

LIB = Path(__file__).parents[2] / "shared" / "scripts" / "lib.lua"


def test_every_key_is_pinned() -> None:
    keys = Keys("jobq")
    assert keys.due() == "jobq:due"
    assert keys.trigger("standard") == "jobq:trigger:standard"
    assert keys.wake("long") == "jobq:wake:long"
    assert keys.queues() == "jobq:queues"
    assert keys.job("01ABC") == "jobq:job:01ABC"
    assert keys.queue_state("mail", "waiting") == "jobq:q:mail:waiting"
    assert keys.queue_states("mail") == [f"jobq:q:mail:{s}" for s in STATE_INDEXES]
    assert keys.queue_meta("mail") == "jobq:q:mail:meta"
    assert keys.queue_events("mail") == "jobq:q:mail:events"
    assert keys.owner_jobs("alice") == "jobq:owner:alice"
    assert re.fullmatch(r"jobq:tag:[0-9a-f]{32}:project:42", keys.tag_jobs("alice", "project:42"))
    idem = keys.idempotency("mail", "alice", "k1")
    assert re.fullmatch(r"jobq:idem:[0-9a-f]{32}", idem)


def test_tag_listings_are_per_owner_and_owner_text_cannot_cross() -> None:
    keys = Keys("jobq")
    assert keys.tag_jobs("alice", "t") != keys.tag_jobs("bob", "t")
    assert keys.tag_jobs("a:b", "c") != keys.tag_jobs("a", "b:c")


def test_idempotency_key_separates_its_parts() -> None:
    keys = Keys("jobq")
    assert keys.idempotency("q", "a:b", "c") != keys.idempotency("q", "a", "b:c")
    assert keys.idempotency("q", "alice", "k") != keys.idempotency("q", "bob", "k")


def test_no_doubled_separator_and_prefix_applies_everywhere() -> None:
    keys = Keys("tenant-2")
    built = [keys.due(), keys.job("X"), keys.queue_meta("q"), *keys.queue_states("q"), keys.owner_jobs("o")]
    assert all(k.startswith("tenant-2:") and "::" not in k for k in built)


@pytest.mark.parametrize("prefix", ["", "a:b", "x" * 33, "sp ace", "{hash}"])
def test_bad_prefix_is_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        Keys(prefix)


def test_unknown_state_index_is_refused() -> None:
    with pytest.raises(ValueError, match="state"):
        Keys().queue_state("q", "running")


def test_lua_builds_the_same_keys() -> None:
    """lib.lua derives keys from the prefix; its templates must agree with keys.py."""
    lib = LIB.read_text()
    assert "local function k_job(id) return P .. 'job:' .. id end" in lib
    assert "local function k_state(q, s) return P .. 'q:' .. q .. ':' .. s end" in lib
    assert "local function k_meta(q) return P .. 'q:' .. q .. ':meta' end" in lib
    assert "local function k_events(q) return P .. 'q:' .. q .. ':events' end" in lib
    assert "local K_DUE = P .. 'due'" in lib
    assert "local K_QUEUES = P .. 'queues'" in lib
    assert "local STATES = {'waiting', 'delayed', 'active', 'completed', 'failed', 'cancelled'}" in lib
    assert tuple(STATE_INDEXES) == ("waiting", "delayed", "active", "completed", "failed", "cancelled")
