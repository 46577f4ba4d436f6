"""serverless.yml packages offline (Serverless Framework v3, no AWS account) into the expected stack."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
NPX = shutil.which("npx")
NPM = shutil.which("npm")
PACKAGE_TIMEOUT = 150

pytestmark = pytest.mark.skipif(NPX is None and not os.environ.get("CI"), reason="npx is not installed")

DUMMY_ENV = {
    "SLS_TELEMETRY_DISABLED": "1",
    "SLS_NOTIFICATIONS_MODE": "off",
    "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",  # no account needed, only a credentials shape
    "AWS_SECRET_ACCESS_KEY": "dummy-secret-for-offline-packaging",
    "UPSTASH_REDIS_REST_URL": "https://example.upstash.io",
    "UPSTASH_REDIS_REST_TOKEN": "dummy",
    "JOBQ_ADMIN_TOKEN": "dummy",
    "JOBQ_WEBHOOK_SECRET": "dummy",
    "QSTASH_TOKEN": "dummy",
    "QSTASH_CURRENT_SIGNING_KEY": "dummy",
    "QSTASH_NEXT_SIGNING_KEY": "dummy",
}


@pytest.fixture(scope="module")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    assert NPX is not None and NPM is not None, "CI must have Node.js (npx) to validate serverless.yml"
    out = tmp_path_factory.mktemp("sls")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "JOBQ_", "UPSTASH_", "QSTASH_"))}
    env.update(DUMMY_ENV)
    if not (ROOT / "node_modules" / "serverless-python-requirements").is_dir():
        subprocess.run(
            [NPM, "ci", "--no-audit", "--no-fund"], cwd=ROOT, env=env, check=True, timeout=PACKAGE_TIMEOUT
        )
    done = subprocess.run(
        [NPM, "run", "package", "--", "--stage", "ci", "--package", str(out)],  # as users package
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=PACKAGE_TIMEOUT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def resources(packaged: Path) -> dict[str, Any]:
    template = json.loads((packaged / "cloudformation-template-update-stack.json").read_text())
    found: dict[str, Any] = template["Resources"]
    return found


@pytest.mark.timeout(PACKAGE_TIMEOUT + 20)
def test_template_has_the_functions_routes_schedules_and_lanes(packaged: Path) -> None:
    found = resources(packaged)
    functions = {
        name: props["Properties"] for name, props in found.items() if props["Type"] == "AWS::Lambda::Function"
    }
    by_lane = {
        props["Environment"]["Variables"].get("JOBQ_LANE"): props
        for props in functions.values()
        if props["Handler"] == "functions/consumer/lambda_handler.handler"
    }
    assert set(by_lane) == {"standard", "long"}
    lanes = json.loads(next(iter(functions.values()))["Environment"]["Variables"]["JOBQ_LANES"])
    for lane, props in by_lane.items():  # each lane's function outlives its longest job, grace and margin
        assert props["Timeout"] >= lanes[lane] + 15, (lane, props["Timeout"])
    assert by_lane["long"]["Timeout"] == 900
    routes = {r["Properties"]["RouteKey"] for r in found.values() if r["Type"] == "AWS::ApiGatewayV2::Route"}
    assert {"ANY /v1/{proxy+}", "GET /health"} <= routes
    urls = [r["Properties"] for r in found.values() if r["Type"] == "AWS::Lambda::Url"]
    assert len(urls) == 2  # each lane is pushed to on its own Function URL (no API Gateway 30 s cut)
    rules = [r["Properties"] for r in found.values() if r["Type"] == "AWS::Events::Rule"]
    assert [rule["ScheduleExpression"] for rule in rules] == ["rate(1 minute)"] * 2
    targets = {rule["Targets"][0]["Arn"]["Fn::GetAtt"][0] for rule in rules}
    assert {found[t]["Properties"]["Environment"]["Variables"]["JOBQ_LANE"] for t in targets} == set(lanes)
    api = next(p for p in functions.values() if p["Handler"] == "functions/api/lambda_handler.handler")
    assert "FunctionUrl" in json.dumps(api["Environment"]["Variables"]["JOBQ_CONSUMER_URLS"])


@pytest.mark.timeout(PACKAGE_TIMEOUT + 20)
def test_package_holds_the_code_scripts_and_lambda_wheels(packaged: Path) -> None:
    names = zipfile.ZipFile(packaged / "jobq.zip").namelist()
    scripts = {Path(n).name for n in names if n.startswith("shared/scripts/") and n.endswith(".lua")}
    assert scripts == {p.name for p in (ROOT / "shared" / "scripts").glob("*.lua")}
    assert "functions/jobs/webhook.py" in names and "shared/engine.py" in names
    static = ROOT / "functions" / "api" / "static"  # the dashboard's and the panel's pages, modules, style
    assert {p.relative_to(ROOT).as_posix() for p in static.rglob("*") if p.is_file()} <= set(names)
    assert not any(n.startswith(("tests/", "infra/", "node_modules/", ".venv/")) for n in names)
    binaries = [n for n in names if n.endswith(".so")]
    assert any("pydantic_core" in n for n in binaries)
    assert all("darwin" not in n and "win" not in Path(n).name for n in binaries)


@pytest.mark.timeout(PACKAGE_TIMEOUT + 20)
def test_package_ships_bytecode_that_stays_valid_on_lambda(packaged: Path) -> None:
    """Both zips date every file 1980 and /var/task is read-only: a module whose .pyc is missing or checked
    by timestamp is compiled at every cold start. Every module ships a hash-checked .pyc of its source."""
    archive = zipfile.ZipFile(packaged / "jobq.zip")
    names = set(archive.namelist())
    tag = sys.implementation.cache_tag
    ours_and_the_apis = ("functions/", "shared/", "fastapi/", "pydantic/", "upstash_redis/", "httpx/")
    checked = 0
    for source in sorted(n for n in names if n.endswith(".py")):
        if not source.startswith(ours_and_the_apis):
            continue
        parent, _, module = source.rpartition("/")
        cached = f"{parent}/__pycache__/{module[:-3]}.{tag}.pyc"
        assert cached in names, f"{source} ships without bytecode"
        header = archive.read(cached)[:16]
        flags = int.from_bytes(header[4:8], "little")
        assert flags == 0b11, f"{cached} is not hash-checked (flags {flags:#b})"
        assert header[8:16] == importlib.util.source_hash(archive.read(source)), f"{cached} is stale"
        checked += 1
    assert checked > 200  # our code and the API's main dependencies
