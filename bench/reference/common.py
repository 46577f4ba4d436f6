"""The phase protocol shared by the reference scripts (stdlib only: runs in bench/.venv).

A script prints `MARK <phase>` and waits for the driver's line on stdin; the driver snapshots the proxy's
command counts and the server's INFO (and flushes the private server on a `reset_*` mark) in between.
The last line is `RESULT <json>` with the timings the script measured itself.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

PAYLOAD = {"body": "x" * 170, "n": 0}  # ~200 bytes once serialised with its key names


def payload(i: int) -> dict[str, Any]:
    return {**PAYLOAD, "n": i}


def mark(phase: str) -> None:
    print(f"MARK {phase}", flush=True)
    if sys.stdin.readline().strip() != "OK":
        raise SystemExit(f"driver did not acknowledge {phase}")


def result(figures: dict[str, Any]) -> None:
    print("RESULT " + json.dumps(figures), flush=True)


def args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True, help="the counting proxy")
    parser.add_argument("--direct-port", type=int, required=True, help="the server itself, for polling")
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--idle", type=float, default=60.0)
    return parser.parse_args()


class Clock:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    def seconds(self) -> float:
        return time.perf_counter() - self.start
