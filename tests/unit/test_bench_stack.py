"""The stack benchmark's pure helpers: percentiles, timestamps, the report section."""

from __future__ import annotations

import argparse
import statistics

import pytest

from bench.compare import redis_endpoint
from bench.stack import (
    BEGIN,
    END,
    Sizes,
    add_size_options,
    epoch,
    p50_p99_ms,
    per_job,
    percentile,
    replace_section,
    section_of,
    sizes_from,
    table,
)


def test_percentile_matches_statistics_inclusive_method() -> None:
    samples = [0.5, 0.1, 0.9, 0.3, 0.7, 0.2, 0.8]
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    assert percentile(samples, 50) == pytest.approx(cuts[49])
    assert percentile(samples, 99) == pytest.approx(cuts[98])


def test_percentile_edges() -> None:
    assert percentile([], 50) is None
    assert percentile([4.0], 99) == 4.0
    assert percentile([1.0, 2.0], 0) == 1.0 and percentile([1.0, 2.0], 100) == 2.0
    assert p50_p99_ms([]) is None
    assert p50_p99_ms([0.010, 0.030]) == pytest.approx([20.0, 29.8])


def test_epoch_reads_the_api_timestamps() -> None:
    assert epoch("1970-01-01T00:00:01.250000Z") == pytest.approx(1.25)
    assert epoch("1970-01-01T01:00:00+01:00") == 0.0
    with pytest.raises(ValueError, match="time zone"):
        epoch("2026-12-01T18:42:40")


def test_section_is_replaced_between_markers_or_appended() -> None:
    appended = replace_section("# Title\n", "first")
    assert appended == f"# Title\n\n{BEGIN}\nfirst\n{END}\n"
    assert section_of(appended) == "first"
    replaced = replace_section(appended + "after\n", "second")
    assert section_of(replaced) == "second" and replaced.endswith("after\n") and "first" not in replaced
    assert section_of("# nothing here") is None


def test_per_job_takes_the_bench_polls_out() -> None:
    assert per_job(total=1_100, polls=50, poll_cost=2, jobs=1_000) == 1.0


def test_sizes_from_options_over_quick_or_full_defaults() -> None:
    parser = argparse.ArgumentParser()
    add_size_options(parser, prefix="stack-")
    args = parser.parse_args(["--stack-jobs", "300", "--stack-clients", "4"])
    assert sizes_from(args, quick=True, prefix="stack-") == Sizes(
        jobs=300, batch=500, single_jobs=200, clients=4, timeout=60.0
    )
    assert sizes_from(parser.parse_args([]), quick=False, prefix="stack-") == Sizes()


def test_redis_endpoint() -> None:
    assert redis_endpoint("redis://127.0.0.1:6391/0") == ("127.0.0.1", 6391)
    assert redis_endpoint("redis://localhost") == ("localhost", 6379)
    with pytest.raises(ValueError, match="redis://"):
        redis_endpoint("http://127.0.0.1:6391")


def test_table_shows_both_phases_and_gaps() -> None:
    rows = [
        {"row": "batch", "batch": 500, "jobs": 1000, "e2e_per_s": 91.8, "billed_per_job": 0.21},
        {"row": "single", "clients": 8, "jobs": 200, "submit_ms": [150.0, 240.0], "completion_ms": None},
    ]
    text = table(rows)
    assert "| batch submits (500 per request) | single submits, 8 clients |" in text
    assert "| end-to-end jobs/s | 91.8 | n/a |" in text
    assert "| submit latency p50 / p99 ms | n/a | 150 / 240 |" in text
    assert "| submit-to-completion p50 / p99 ms | n/a | n/a |" in text


def test_a_compare_report_keeps_the_other_suites_sections() -> None:
    from bench.compare import marked_sections

    stack = "<!-- bench stack: begin -->\nS\n<!-- bench stack: end -->"
    startup = "<!-- bench startup: begin -->\nU\n<!-- bench startup: end -->"
    previous = f"# old\n{stack}\n\n{startup}\n"
    assert marked_sections(previous) == [("stack", stack), ("startup", startup)]


def test_the_processing_rate_is_the_median_pass() -> None:
    from bench.compare import process_rate

    assert process_rate({"process_s": 9.0, "process_runs_s": [9.0, 4.0, 5.0]}, 1000) == 200.0
    assert process_rate({"process_s": 4.0}, 1000) == 250.0  # a script that times one pass
