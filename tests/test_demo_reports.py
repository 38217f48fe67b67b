"""`acd demo --report-out DIR`: the run's reports read back from PostgreSQL agree with the
run's own summary (the router's statistics) and with its assignments (issue 12's
accuracy check), over the real pipeline, broker, Redis and PostgreSQL."""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
from collections import defaultdict
from pathlib import Path

import pytest

from load_tests.demo import Demo
from load_tests.scenario import default_scenario_path, load_scenario

pytestmark = pytest.mark.slow


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def _number(text: str) -> float:
    return float(text) if text else 0.0


async def test_the_runs_reports_equal_its_summary_and_its_assignments(tmp_path: Path) -> None:
    out, assignments = tmp_path / "reports", tmp_path / "assignments.jsonl"
    args = argparse.Namespace(
        duration=12.0,
        json=True,
        assignments=assignments,
        workers=2,
        metrics_port=0,
        keep=False,
        records=False,
        report_out=out,
        report_interval="15m",
    )
    summary = await Demo(load_scenario(default_scenario_path()), args).run(asyncio.Event())
    assert summary["lost_calls"] == 0 and summary["double_assignments"] == 0, summary
    assert summary["waiting_at_end"] == 0  # the run hung up whoever was still on the line
    assert summary["records"]["missing_count"] == 0, summary["records"]
    assert summary["answered"] > 10

    by_queue = _rows(out / "intervals_by_queue.csv")
    assert {
        "interval_start",
        "queue",
        "offered",
        "answered",
        "abandoned",
        "service_level",
        "asa_seconds",
    } <= set(by_queue[0])
    totals: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for row in by_queue:
        figures = totals[row["queue"]]
        for name in ("offered", "answered", "abandoned", "answered_within_threshold"):
            figures[name] += _number(row[name])
        figures["wait_sum"] += _number(row["asa_seconds"]) * _number(row["answered"])
    for queue, expected in summary["queues"].items():
        got = totals[queue]
        assert (got["offered"], got["answered"], got["abandoned"]) == (
            expected["offered"],
            expected["answered"],
            expected["abandoned"],
        ), queue
        if expected["answered"]:
            assert got["wait_sum"] / got["answered"] == pytest.approx(expected["asa_seconds"], abs=0.001), (
                queue
            )
        # Service level, the default formula: within / (answered + abandoned after the threshold).
        abandoned_after = sum(
            _number(r["abandoned"]) - _number(r["abandoned_within_threshold"])
            for r in by_queue
            if r["queue"] == queue
        )
        if expected["service_level"] is not None:
            level = got["answered_within_threshold"] / (got["answered"] + abandoned_after)
            assert level == pytest.approx(expected["service_level"], abs=0.001), queue

    calls = {row["call_id"]: row for row in _rows(out / "calls.csv")}
    assert {"call_id", "queue", "outcome", "agent_id", "wait_s", "talk_s", "qa_sampled"} <= set(
        next(iter(calls.values()))
    )
    assert len(calls) == summary["offered"]
    lines = [json.loads(line) for line in assignments.read_text().splitlines()]
    assert len(lines) == summary["answered"]
    for line in lines:
        assert calls[line["call_id"]]["agent_id"] == line["agent_id"], line
    assert _rows(out / "intervals_by_agent.csv"), "an agent report with rows"
