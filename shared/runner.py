"""One way to run a long-lived process's event loop: uvloop's when it is installed, else asyncio's.

`jobq worker` and `jobq dev` spend most of their time in the event loop and in socket calls (one HTTP
request per claim, finish and submit); uvloop does that work in C. The local extra (uvicorn[standard])
brings it; without it the same code runs on asyncio's loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)
