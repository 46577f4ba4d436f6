"""Start-up benchmark: `python -m bench startup` (or `make bench BENCH=startup`).

What a user waits for before anything happens: the `jobq` CLI (`jobq version`, wall clock of the installed
script), and a Lambda cold start, i.e. importing the handler module plus its first event through mangum,
for the API (an unauthenticated `GET /v1/jobs`: 401 without a Redis call), the consumer (import alone, and
with a first push that is refused 401), and, as the yardstick, a bare FastAPI + mangum app answering one
route. Each figure is the median of BENCH_STARTUP_RUNS (default 9) fresh interpreters; nothing is cached
between them but the operating system's file cache and Python's bytecode, which the Lambda package ships
(`npm run bytecode`, run here first). More rows frame the figures: each handler's first request as a
user's is, authenticated and reaching Redis (`jobq gateway` on the embedded store, over the Upstash REST
protocol, on loopback); a minimal app made of the parts jobq must load (pydantic-settings, an upstash-redis
client, one route with a header and a response model); and the API handler without bytecode, as the
Lambda package was built before it shipped its .pyc files.

The Lambda rows run as the Lambda package does: without the CLI's and the local stack's packages (rich,
click, typer, uvicorn, redis, fakeredis), which requirements-lambda.txt leaves out; httpx, for one, imports
rich and click for its own command line when they are installed.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

RUNS = int(os.environ.get("BENCH_STARTUP_RUNS", "9"))
ROOT = Path(__file__).resolve().parents[1]
JOBQ = Path(sys.executable).with_name("jobq")
CLI_TARGET = 0.3  # seconds for `jobq version`
LAMBDA_TARGET = 1.3  # a handler's cold start over the bare app's
STORE_START_TIMEOUT = 30.0
NOT_IN_LAMBDA = ("rich", "click", "typer", "uvicorn", "redis", "fakeredis")

# Run first in every Lambda subprocess: hide what the Lambda package lacks, and build the event.
PRELUDE = f"""
import importlib.abc, sys, time
class _NotInLambda(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {NOT_IN_LAMBDA!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (not in the Lambda package)")
        return None
sys.meta_path.insert(0, _NotInLambda())

def event(method, path, token=None):
    http = {{"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7"}}
    return {{
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
        "headers": {{
            "host": "abc.execute-api.eu-west-1.amazonaws.com", "content-type": "application/json",
            **({{"authorization": f"Bearer {{token}}"}} if token else {{}}),
        }},
        "requestContext": {{"http": http, "requestId": "r1", "stage": "$default", "routeKey": "$default"}},
        "body": None, "isBase64Encoded": False,
    }}

class Context:
    function_name = "bench"
    aws_request_id = "r1"
    def get_remaining_time_in_millis(self):
        return 60_000

started = time.perf_counter()
"""

BARE = """
from fastapi import FastAPI
from mangum import Mangum

app = FastAPI()

@app.get("/health")
def health():
    return {"ok": True}

reply = Mangum(app, lifespan="off")(event("GET", "/health"), Context())
assert reply["statusCode"] == 200, reply
"""

API = """
from functions.api.lambda_handler import handler

reply = handler(event("GET", "/v1/jobs"), Context())
assert reply["statusCode"] == 401, reply
"""

CONSUMER_IMPORT = """
import functions.consumer.lambda_handler
"""

CONSUMER_PUSH = """
from functions.consumer.lambda_handler import handler

reply = handler(event("POST", "/consume"), Context())
assert reply["statusCode"] == 401, reply
"""

# The least a jobq-shaped handler loads: settings, a Redis client, a route with a parameter and a model.
PARTS = """
from typing import Annotated

from fastapi import FastAPI, Header, HTTPException
from mangum import Mangum
from pydantic import BaseModel
from pydantic_settings import BaseSettings, SettingsConfigDict
from upstash_redis.asyncio import Redis

class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="JOBQ_")
    redis_rest_url: str
    redis_rest_token: str

class Job(BaseModel):
    id: str
    state: str

settings = Settings()
redis = Redis(url=settings.redis_rest_url, token=settings.redis_rest_token)
app = FastAPI()

@app.get("/v1/jobs")
def jobs(authorization: Annotated[str | None, Header()] = None) -> list[Job]:
    raise HTTPException(401)

reply = Mangum(app, lifespan="off")(event("GET", "/v1/jobs"), Context())
assert reply["statusCode"] == 401, reply
"""

# What a user's first request costs: authenticated, it reaches Redis (through the REST gateway).
API_AUTHENTICATED = """
import os
from functions.api.lambda_handler import handler

reply = handler(event("GET", "/v1/jobs", os.environ["JOBQ_ADMIN_TOKEN"]), Context())
assert reply["statusCode"] == 200, reply
"""

CONSUMER_AUTHENTICATED = """
import os
from functions.consumer.lambda_handler import handler

reply = handler(event("POST", "/consume", os.environ["JOBQ_CONSUMER_SECRET"]), Context())
assert reply["statusCode"] == 200, reply
"""

ROWS = (
    ("bare FastAPI + mangum: import + first request", BARE),
    ("API handler: import + first request", API),
    ("consumer handler: import", CONSUMER_IMPORT),
    ("consumer handler: import + first push", CONSUMER_PUSH),
)
CONTEXT_ROWS = (
    ("API handler: import + first request reaching Redis", API_AUTHENTICATED, False),
    ("consumer handler: import + first push reaching Redis", CONSUMER_AUTHENTICATED, False),
    ("minimal app of jobq's parts: import + first request", PARTS, False),
    ("API handler without bytecode (package before 12-07)", API, True),
)


def lambda_environment(store_url: str = "http://127.0.0.1:9", store_token: str = "unused") -> dict[str, str]:
    """A production configuration on the given REST store (by default none: the 401 rows need no Redis)."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("JOBQ_", "UPSTASH_"))}
    return {
        **keep,
        "JOBQ_ENV": "production",
        "JOBQ_ADMIN_TOKEN": secrets.token_hex(16),
        "JOBQ_REDIS_REST_URL": store_url,
        "JOBQ_REDIS_REST_TOKEN": store_token,
        "JOBQ_CONSUMER_SECRET": secrets.token_hex(16),
    }


@contextlib.contextmanager
def served_store() -> Iterator[tuple[str, str]]:
    """`jobq gateway` (the embedded store, the Upstash REST protocol) on a spare loopback port: where the
    rows that reach Redis send their commands."""
    token = secrets.token_hex(16)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    command = [str(JOBQ), "gateway", "--port", str(port), "--token", token]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + STORE_START_TIMEOUT
        while not _answers(url, token):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"`jobq gateway` did not answer on {url}")
            time.sleep(0.05)
        yield url, token
    finally:
        process.terminate()
        process.wait(timeout=10)


def _answers(url: str, token: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        reply = httpx.post(url, json=["PING"], headers={"Authorization": f"Bearer {token}"}, timeout=1)
        return reply.status_code == 200
    return False


def compile_bytecode() -> None:
    """What `npm run bytecode` does before packaging: hash-checked .pyc files for our code."""
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", "-f", "functions", "shared"],
        cwd=ROOT,
        env={**os.environ, "SOURCE_DATE_EPOCH": "315532800"},
        check=True,
        stdout=subprocess.DEVNULL,
    )


def cold_start(body: str, env: dict[str, str], *, bytecode: bool = True) -> float:
    """Seconds from the handler's first import to its first answer, in a fresh interpreter; without
    `bytecode`, every module is compiled from source, as on a Lambda package without .pyc files."""
    program = PRELUDE + textwrap.dedent(body) + "\nprint(time.perf_counter() - started)\n"
    with tempfile.TemporaryDirectory() as empty:
        options = [] if bytecode else ["-X", f"pycache_prefix={empty}"]
        done = subprocess.run(
            [sys.executable, *options, "-c", program], env=env, capture_output=True, text=True, check=False
        )
    if done.returncode != 0:
        raise RuntimeError(f"cold start failed:\n{done.stderr}")
    return float(done.stdout.strip().splitlines()[-1])


def cli_run(*args: str) -> float:
    """Wall-clock seconds of the installed `jobq` script, interpreter start-up included."""
    started = time.perf_counter()
    subprocess.run([str(JOBQ), *args], capture_output=True, check=True)
    return time.perf_counter() - started


def main() -> None:
    with served_store() as (store_url, store_token):
        measure(lambda_environment(store_url, store_token))


def measure(env: dict[str, str]) -> None:
    compile_bytecode()
    cold_start(API, env)  # warm the file cache once; every measured run is fresh after
    samples: dict[str, list[float]] = {name: [] for name, _ in ROWS}
    context: dict[str, list[float]] = {name: [] for name, _, _ in CONTEXT_ROWS}
    for _ in range(RUNS):  # rows take turns, so a busy moment of the machine weighs on all of them
        for name, body in ROWS:
            samples[name].append(cold_start(body, env))
        for name, body, no_bytecode in CONTEXT_ROWS:
            context[name].append(cold_start(body, env, bytecode=not no_bytecode))
    figures = {name: statistics.median(values) for name, values in samples.items()}
    bare = figures[ROWS[0][0]]
    cli = statistics.median(cli_run("version") for _ in range(RUNS))
    width = max(len(name) for name in [*samples, *context])
    write = sys.stdout.write
    write(f"{f'start-up (median of {RUNS} fresh processes)':<{width}}  {'ms':>6}  {'vs bare':>7}  target\n")
    for row, (name, seconds) in enumerate(figures.items()):
        target = f"{LAMBDA_TARGET}x" if row else ""
        write(f"{name:<{width}}  {seconds * 1000:>6.0f}  {seconds / bare:>6.2f}x  {target}\n")
    for name, values in context.items():
        seconds = statistics.median(values)
        write(f"{name:<{width}}  {seconds * 1000:>6.0f}  {seconds / bare:>6.2f}x\n")
    cli_name = "jobq version (wall clock)"
    write(f"{cli_name:<{width}}  {cli * 1000:>6.0f}  {'':>7}  {CLI_TARGET * 1000:.0f} ms\n")


if __name__ == "__main__":
    main()
