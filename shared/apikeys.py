"""API keys: created by admins, stored in Redis only as a SHA-256 hash, looked up in one command.

A key reads `jq_<id>_<secret>`. All keys of a deployment live in one Redis hash (field: id, value: a JSON
record with the secret's hash, owner, admin flag, rate, created and revoked times), so a lookup is one HGET,
listing is one HGETALL and nothing else is needed to keep an index. The secret has 256 bits of entropy, so a
plain SHA-256 (no slow KDF) is the right hash; it is compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime

from pydantic import BaseModel

from shared.errors import ValidationError
from shared.store import Store

KEY_PATTERN = re.compile(r"^jq_([0-9a-f]{16})_([A-Za-z0-9_-]{20,64})$")
ID_PATTERN = re.compile(r"^[0-9a-f]{16}$")

_RATE = re.compile(r"^\s*(\d{1,9})\s*/\s*(\d{0,6})\s*([a-z]+)\s*$")
_UNITS = {
    "s": 1,
    "sec": 1,
    "second": 1,
    "seconds": 1,
    "m": 60,
    "min": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hour": 3600,
    "hours": 3600,
    "d": 86400,
    "day": 86400,
    "days": 86400,
}


def parse_rate(rate: str) -> tuple[int, int]:
    """'100/minute', '10/s', '500/5m' -> (requests, window in seconds); a ValidationError otherwise."""
    match = _RATE.match(rate.lower())
    if not match or match.group(3) not in _UNITS or int(match.group(1)) < 1:
        raise ValidationError(f"rate must look like '100/minute' or '10/s', got {rate!r}", field="rate")
    count, multiple, unit = match.groups()
    window = int(multiple or 1) * _UNITS[unit]
    if not 1 <= window <= 86400:
        raise ValidationError("a rate's window must be between 1 second and 1 day", field="rate")
    return int(count), window


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKey(BaseModel):
    id: str
    owner: str
    admin: bool = False
    rate: str | None = None
    hash: str
    created_at: datetime
    revoked_at: datetime | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


class ApiKeyStore:
    def __init__(self, store: Store, hash_key: str, *, clock: Callable[[], float] = time.time) -> None:
        self._store = store  # bounded calls with typed errors (StoreUnavailableError -> 503)
        self._redis = store.redis
        self._hash_key = hash_key  # the Redis hash holding every key record (Keys.api_keys)
        self._clock = clock

    async def create(self, owner: str, *, admin: bool = False, rate: str | None = None) -> tuple[ApiKey, str]:
        """A new key record and the secret key itself, which is returned once and never stored."""
        if rate is not None:
            parse_rate(rate)
        key_id = secrets.token_hex(8)
        secret = f"jq_{key_id}_{secrets.token_urlsafe(32)}"
        record = ApiKey(
            id=key_id,
            owner=owner,
            admin=admin,
            rate=rate,
            hash=digest(secret),
            created_at=datetime.fromtimestamp(self._clock(), UTC),
        )
        await self._store.call(lambda: self._redis.hsetnx(self._hash_key, key_id, record.model_dump_json()))
        return record, secret

    async def verify(self, key: str) -> ApiKey | None:
        """The key's record when the key is valid and not revoked; None otherwise. One HGET."""
        match = KEY_PATTERN.match(key)
        if match is None:
            return None
        record = await self.get(match.group(1))
        if record is None or record.revoked:
            return None
        return record if hmac.compare_digest(record.hash, digest(key)) else None

    async def get(self, key_id: str) -> ApiKey | None:
        if not ID_PATTERN.match(key_id):
            return None
        raw = await self._store.call(lambda: self._redis.hget(self._hash_key, key_id))
        return None if raw is None else ApiKey.model_validate(json.loads(raw))

    async def list(self) -> list[ApiKey]:
        raw: dict[str, str] = await self._store.call(lambda: self._redis.hgetall(self._hash_key)) or {}
        keys = [ApiKey.model_validate(json.loads(value)) for value in raw.values()]
        return sorted(keys, key=lambda k: k.created_at)

    async def revoke(self, key_id: str) -> ApiKey | None:
        """Mark a key revoked (kept for the record); None when there is no such key."""
        record = await self.get(key_id)
        if record is None:
            return None
        if record.revoked_at is None:
            record = record.model_copy(update={"revoked_at": datetime.fromtimestamp(self._clock(), UTC)})
            await self._store.call(lambda: self._redis.hset(self._hash_key, key_id, record.model_dump_json()))
        return record
