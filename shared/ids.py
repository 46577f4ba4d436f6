"""Job ids: `<ulid>.<queue>`, a time-ordered unique part and the name of the queue that holds the job.

The unique part (`new_id`) is 26 characters of Crockford base32, a 48-bit millisecond timestamp then 80
random bits: sortable by creation time (lexicographic order is time order) and unique without
coordination. Within one process ids created in the same millisecond increase: the random part of the
previous id is incremented, so a batch keeps its submission order. The queue after it is what routes a
read or a change of the job to its queue's keys (each queue's keys share one hash tag: shared/keys.py),
so every script can name its keys before it runs. Inside a queue's structures the unique part alone
names the job.
`is_job_id` is the strict check every id from outside passes before it comes near a Redis key.
"""

from __future__ import annotations

import re
import secrets
import threading
import time

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford: no I, L, O, U
ID_LENGTH = 26
UNIQUE = r"[0-7][0-9A-HJKMNP-TV-Z]{25}"  # 48-bit time: the first character is at most 7
_UNIQUE = re.compile(f"^{UNIQUE}$")
_ID = re.compile(rf"^{UNIQUE}\.[A-Za-z0-9][A-Za-z0-9_.:-]{{0,63}}$")  # the queue: models.NAME_PATTERN


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, digit = divmod(value, 32)
        chars.append(ALPHABET[digit])
    return "".join(reversed(chars))


_last = [0, 0]  # ms and random part of the previous id of this process
_lock = threading.Lock()


def new_id(now_ms: int | None = None) -> str:
    """A fresh id for a job created at `now_ms` (default: the current time)."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    if not 0 <= ms < 1 << 48:
        raise ValueError("timestamp out of range")
    with _lock:
        # A fresh draw leaves one bit of headroom, so increments never overflow in practice.
        same_ms = ms == _last[0] and _last[1] + 1 < 1 << 80
        rand = _last[1] + 1 if same_ms else secrets.randbits(79)
        _last[0], _last[1] = ms, rand
    return _encode(ms, 10) + _encode(rand, 16)


def job_id(unique: str, queue: str) -> str:
    """The public id of the job `unique` (from new_id) in `queue`."""
    return f"{unique}.{queue}"


def split_id(job_id: str) -> tuple[str, str]:
    """(unique part, queue) of a valid job id."""
    return job_id[:ID_LENGTH], job_id[ID_LENGTH + 1 :]


def id_time_ms(job_id: str) -> int:
    """The creation time (epoch ms) encoded in an id (or in its unique part)."""
    value = 0
    for char in job_id[:10]:
        value = value * 32 + ALPHABET.index(char)
    return value


def is_job_id(value: object) -> bool:
    return isinstance(value, str) and _ID.fullmatch(value) is not None


def is_unique_id(value: object) -> bool:
    """The unique part of an id alone (listing cursors)."""
    return isinstance(value, str) and _UNIQUE.fullmatch(value) is not None
