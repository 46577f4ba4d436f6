"""The key schema, pinned: a change here is a data migration, not a refactor."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shared.keys import BLOCK, STATE_INDEXES, Keys

SCRIPTS = Path(__file__).parents[2] / "shared" / "scripts"


def test_every_key_is_pinned() -> None:
    keys = Keys("jobq")
    assert keys.wake("long") == "jobq:wake:long"
    assert keys.queues() == "jobq:queues"
    mail = keys.queue("mail")
    assert mail.block() == [f"jobq:{{mail}}:{part}" for part in BLOCK]
    assert (
        "jobs",
        *STATE_INDEXES,
        *("meta", "due", "events", "owners", "fair", "dedup", "children"),
        *("schedules", "schedule_times"),
    ) == BLOCK
    assert mail.state("waiting") == "jobq:{mail}:waiting"
    assert mail.waiting_children() == "jobq:{mail}:children" == mail.block()[BLOCK.index("children")]
    assert (mail.jobs(), mail.meta(), mail.due(), mail.events()) == (
        "jobq:{mail}:jobs",
        "jobq:{mail}:meta",
        "jobq:{mail}:due",
        "jobq:{mail}:events",
    )
    assert mail.owner_jobs("alice") == "jobq:{mail}:owner:alice"
    assert re.fullmatch(r"jobq:\{mail\}:tag:[0-9a-f]{32}:project:42", mail.tag_jobs("alice", "project:42"))
    assert re.fullmatch(r"jobq:\{mail\}:idem:[0-9a-f]{32}", mail.idempotency("alice", "k1"))
    assert mail.schedules() == "jobq:{mail}:schedules"
    assert re.fullmatch(r"jobq:\{mail\}:schedule_owner:[0-9a-f]{32}", mail.owner_schedules("alice"))


def test_every_key_of_a_queue_shares_its_hash_tag() -> None:
    """One queue's keys hash to one Redis Cluster slot: a script of the queue can be routed."""
    mail = Keys("jobq").queue("mail:eu.1")
    built = [
        *mail.block(),
        *(
            mail.owner_jobs("o"),
            mail.tag_jobs("o", "t"),
            mail.idempotency("o", "k"),
            mail.owner_schedules("o"),
        ),
    ]
    assert all(re.match(r"^jobq:\{mail:eu\.1\}:", key) for key in built)


def test_tag_listings_are_per_owner_and_owner_text_cannot_cross() -> None:
    q = Keys("jobq").queue("q")
    assert q.tag_jobs("alice", "t") != q.tag_jobs("bob", "t")
    assert q.tag_jobs("a:b", "c") != q.tag_jobs("a", "b:c")


def test_idempotency_key_separates_its_parts() -> None:
    q = Keys("jobq").queue("q")
    assert q.idempotency("a:b", "c") != q.idempotency("a", "b:c")
    assert q.idempotency("alice", "k") != q.idempotency("bob", "k")


def test_no_doubled_separator_and_prefix_applies_everywhere() -> None:
    keys = Keys("tenant-2")
    built = [keys.queues(), keys.wake("l"), *keys.queue("q").block(), keys.queue("q").owner_jobs("o")]
    assert all(k.startswith("tenant-2:") and "::" not in k for k in built)


@pytest.mark.parametrize("prefix", ["", "a:b", "x" * 33, "sp ace", "{hash}"])
def test_bad_prefix_is_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        Keys(prefix)


def test_unknown_state_index_is_refused() -> None:
    with pytest.raises(ValueError, match="state"):
        Keys().queue("q").state("running")


def test_lua_reads_the_block_in_the_same_order() -> None:
    """lib.lua's `block` maps KEYS positions to names: they must follow keys.py's BLOCK."""
    lib = (SCRIPTS / "lib.lua").read_text()
    assert f"local BLOCK_SIZE = {len(BLOCK)}" in lib
    for name in ("jobs", "meta", "due", "events", "owners", "fair", "dedup"):
        assert f"{name} = KEYS[base + {BLOCK.index(name) + 1}]" in lib
    assert "for i, s in ipairs(STATES) do Q.state[s] = KEYS[base + 1 + i] end" in lib
    assert "local STATES = {'waiting', 'delayed', 'active', 'completed', 'failed', 'cancelled'}" in lib
    assert BLOCK[1:7] == STATE_INDEXES


def test_no_script_builds_a_key_name() -> None:
    """Every key a script touches arrives in KEYS: no script keeps a prefix to build names from."""
    for script in SCRIPTS.glob("*.lua"):
        text = script.read_text()
        assert "ARGV[1] .. " not in text and "P .. " not in text, script.name
