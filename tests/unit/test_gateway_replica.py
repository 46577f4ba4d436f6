"""The replica-lag rules on their own (infra/local/replica.py): which reads lag, and what they become."""

from __future__ import annotations

from infra.local.replica import ABSENT_SUFFIX, ReplicaLag, token_value
from infra.local.scripts import sha1_hex
from tests.support.engine_fixtures import FakeClock


def lagging(lag_ms: int = 300) -> tuple[ReplicaLag, FakeClock]:
    clock = FakeClock(0.0)
    return ReplicaLag(lag_ms, clock=clock), clock


def test_tokens_are_ours_or_none() -> None:
    assert token_value("0000000000000042") == 42
    for header in (None, "", "abc", "-1", "4.2", "²", "9" * 21):
        assert token_value(header) == 0


def test_a_lagging_key_keeps_its_hash_tag_and_other_arguments() -> None:
    replica, _ = lagging()
    replica.wrote([[b"SET", b"{q}:job", b"v"]], 5)
    [read] = replica.reads([[b"HMGET", b"{q}:job", b"f"]], None)
    assert read == [b"HMGET", b"{q}:job" + ABSENT_SUFFIX, b"f"]
    assert b"{" not in ABSENT_SUFFIX and b"}" not in ABSENT_SUFFIX  # a tagless key gets no tag
    assert replica.reads([[b"HMGET", b"{q}:job", b"f"]], "5") == [[b"HMGET", b"{q}:job", b"f"]]


def test_writes_scripts_and_keyless_reads_pass_unchanged() -> None:
    replica, _ = lagging()
    replica.wrote([[b"SET", b"k", b"v"]], 1)
    commands = [
        [b"SET", b"k", b"w"],
        [b"EVALSHA", sha1_hex(b"return 1"), b"1", b"k"],
        [b"FCALL_RO", b"f", b"1", b"k"],
        [b"SCAN", b"0"],
        [b"NOSUCH", b"k"],
    ]
    assert replica.reads(commands, None) == commands


def test_read_only_scripts_write_nothing_and_undeclared_ones_everything() -> None:
    replica, clock = lagging()
    replica.wrote([[b"EVAL_RO", b"return 1", b"0"], [b"GET", b"k"]], 1)
    assert replica.writes == {} and replica.everything is None
    replica.wrote([[b"EVAL", b"return 1", b"0"]], 2)
    assert replica.reads([[b"GET", b"any"]], None) == [[b"GET", b"any" + ABSENT_SUFFIX]]
    clock.now = 0.3
    assert replica.reads([[b"GET", b"any"]], None) == [[b"GET", b"any"]]
    assert replica.everything is None  # forgotten once every replica has it


def test_old_writes_are_forgotten_oldest_first() -> None:
    replica, clock = lagging()
    replica.wrote([[b"SET", b"a", b"1"]], 1)
    clock.now = 0.2
    replica.wrote([[b"SET", b"b", b"1"]], 2)
    clock.now = 0.25
    replica.wrote([[b"SET", b"a", b"2"]], 3)  # a rewrite moves `a` behind `b`
    assert list(replica.writes) == [b"b", b"a"]
    clock.now = 0.5
    replica.reads([[b"GET", b"a"]], None)
    assert list(replica.writes) == [b"a"]
