"""The API's deferred routers: each answers only under its declared prefixes, and a request builds only the
routers whose prefixes it falls under (functions/api/deferred.py)."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

from fastapi.routing import APIRoute

from functions.api.deferred import DeferredRouter
from functions.api.routes import ROUTERS

ROOT = Path(__file__).resolve().parents[2]


def test_every_route_lies_under_its_routers_prefixes() -> None:
    for module, prefixes in ROUTERS:
        router = DeferredRouter(module, prefixes)
        paths = [route.path for route in importlib.import_module(module).router.routes]
        assert paths, module
        assert all(router.owns(path) for path in paths), (module, paths, prefixes)


def test_prefixes_match_whole_path_segments() -> None:
    router = DeferredRouter("functions.api.routes.jobs", ("/v1/jobs",))
    assert router.owns("/v1/jobs") and router.owns("/v1/jobs/") and router.owns("/v1/jobs/abc/retry")
    assert not router.owns("/v1/jobsx") and not router.owns("/v1") and not router.owns("/v1/job")


def test_the_openapi_schema_documents_every_router() -> None:
    from functions.api.app import create_app
    from shared.settings import Settings

    app = create_app(Settings(env="local"))
    documented = set(app.openapi()["paths"])
    for module, _ in ROUTERS:
        for route in importlib.import_module(module).router.routes:
            if isinstance(route, APIRoute) and route.include_in_schema:
                assert route.path in documented, (module, route.path)


# Run in a fresh interpreter: which modules a cold start's first request loads.
COLD_START = """
import json, sys
from fastapi.testclient import TestClient
from functions.api.app import create_app
client = TestClient(create_app())
assert client.get("/v1/jobs").status_code == 401
loaded = [m for m in sys.modules if m.startswith(("functions.api.routes.", "prometheus_client"))]
print(json.dumps(sorted(loaded)))
"""


def test_a_first_request_builds_only_the_routers_it_needs() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBQ_")} | {"JOBQ_ENV": "local"}
    done = subprocess.run(
        [sys.executable, "-c", COLD_START], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded == ["functions.api.routes.jobs"]  # no other router, and no Prometheus client
