"""The AWS Lambda entry point: the ASGI app behind mangum, built on an instance's first invocation."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from mangum import Mangum

from functions.api.app import create_app


@lru_cache(maxsize=1)
def adapter() -> Mangum:
    return Mangum(create_app(), lifespan="off")


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    response: dict[str, Any] = adapter()(event, context)
    return response
