"""Job ids: 26 characters of Crockford base32, a 48-bit millisecond timestamp then 80 random bits.

Sortable by creation time (lexicographic order is time order) and unique without coordination. Within
one process ids created in the same millisecond increase: the random part of the previous id is
incremented, so a batch keeps its submission order.
`is_job_id` is the strict check every id from outside passes before it comes near a Redis key.
"""

from __future__ import annotations

import re
import secrets
import threading
import time

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford: no I, L, O, U
ID_LENGTH = 26
_ID = re.compile(r"^[0-7][0-9A-HJKMNP-TV-Z]{25}$")  # 48-bit time: the first character is at most 7


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


def id_time_ms(job_id: str) -> int:
    """The creation time (epoch ms) encoded in an id."""
    value = 0
    for char in job_id[:10]:
        value = value * 32 + ALPHABET.index(char)
    return value


def is_job_id(value: object) -> bool:
    return isinstance(value, str) and _ID.match(value) is not None
