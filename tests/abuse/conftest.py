"""Fixtures of the abuse suite."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from shared.settings import Settings

Snapshot = Callable[[], Awaitable[dict[str, str]]]


@pytest.fixture
def key_snapshot(gateway: Any, api_settings: Settings) -> Snapshot:
    """Every key under the test's prefix with a digest of its value (rate-limit windows left out)."""
    prefix = api_settings.key_prefix
    auth = {"Authorization": f"Bearer {gateway.token}"}

    async def snapshot() -> dict[str, str]:
        async with httpx.AsyncClient(timeout=10) as rest:
            keys = (await rest.post(gateway.url, json=["KEYS", f"{prefix}:*"], headers=auth)).json()["result"]
            keys = sorted(k for k in keys if not k.startswith(f"{prefix}:ratelimit"))
            if not keys:
                return {}
            dumps = [["DUMP", key] for key in keys]
            binary = {**auth, "Upstash-Encoding": "base64"}  # DUMP output is binary
            replies = (await rest.post(f"{gateway.url}/pipeline", json=dumps, headers=binary)).json()
            return {key: json.dumps(reply) for key, reply in zip(keys, replies, strict=True)}

    return snapshot
