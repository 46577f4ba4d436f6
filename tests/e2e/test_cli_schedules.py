"""End to end: `jobq schedules` against a real API (uvicorn) on the gateway and real Redis."""

from __future__ import annotations

import pytest

from tests.e2e import test_cli as base
from tests.e2e.test_cli import Cli, assert_clean_error, table_rows

pytestmark = pytest.mark.realredis

# The CLI tests' fixtures: the API served on real Redis, with the consumer tests' job types.
gateway, api_settings, api_registry, cli = base.gateway, base.api_settings, base.api_registry, base.cli


def test_create_list_show_delete(cli: Cli) -> None:
    alice = cli.user("alice")
    made = cli(
        "schedules",
        "create",
        "echo",
        "--payload",
        '{"value": 1}',
        "--cron",
        "0 3 * * *",
        "--tz",
        "Europe/Berlin",
        "--limit",
        "5",
        key=alice,
    )
    assert made.exit_code == 0, (made.stdout, made.stderr)
    schedule_id = made.stdout.split()[0]
    assert "next run" in made.stdout

    every = cli.json("schedules", "create", "echo", "--every", "5m", "--catch-up", "all", key=alice)
    assert (every["every_seconds"], every["catch_up"], every["owner"]) == (300, "all", "alice")

    listed = cli("schedules", "list", key=alice)
    assert listed.exit_code == 0
    rows = table_rows(listed.stdout)
    assert [row[0] for row in rows] == [schedule_id, every["id"]]
    assert rows[0][2:4] == ["0 3 * * * (Europe/Berlin)", "0/5"]
    assert cli("schedules", "list", key=cli.user("bob")).stdout.strip() == "no schedules"

    shown = cli("schedules", "show", schedule_id, key=alice)
    assert shown.exit_code == 0 and "Europe/Berlin" in shown.stdout and '"value":1' in shown.stdout

    paused = cli("schedules", "pause", schedule_id, key=alice)
    assert paused.exit_code == 0 and f"paused {schedule_id}" in paused.stdout
    assert table_rows(cli("schedules", "list", key=alice).stdout)[0][4] == "paused"
    resumed = cli.json("schedules", "resume", schedule_id, key=alice)
    assert resumed["paused"] is False and resumed["next_run_at"] is not None

    deleted = cli("schedules", "delete", schedule_id, "--yes", key=alice)
    assert deleted.exit_code == 0 and schedule_id in deleted.stdout
    assert [s["id"] for s in cli.json("schedules", "list", key=alice)["schedules"]] == [every["id"]]
    # Admins act for any owner.
    assert [s["id"] for s in cli.json("schedules", "list", "--owner", "alice")["schedules"]] == [every["id"]]


def test_bad_input_is_a_clean_error(cli: Cli) -> None:
    alice = cli.user("alice")
    assert_clean_error(cli("schedules", "create", "echo", "--cron", "99 * * * *", key=alice), 1, "cron")
    assert_clean_error(
        cli("schedules", "create", "echo", "--every", "10m", "--tz", "Nowhere", key=alice), 1, "timezone"
    )
    assert_clean_error(cli("schedules", "show", "nope", key=alice), 1, "not found")
