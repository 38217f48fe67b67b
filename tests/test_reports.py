"""Interval reports over a real PostgreSQL: known records written as the recorder writes them
(tests/reports_support.py), every figure checked against the hand-computed one, per queue,
per agent and for the site, across interval boundaries and the night Europe/Berlin's clocks
go back; the CSV, JSON and table outputs."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from router.postgres import Pool, open_postgres
from router.settings import PostgresSettings, load_settings
from tests.reports_support import (
    AGENT_FIGURES,
    AGENT_TOTALS,
    BERLIN_HOURS,
    CALL_TOTALS,
    FORMULAS,
    QUEUE_FIGURES,
    SITE_FIGURES,
    ZERO_AGENT,
    ZERO_CALLS,
    write_config,
    write_records,
)
from workers.reports.render import render
from workers.reports.report import COLUMNS, Report
from workers.reports.request import RawReport, ReportScope, cli_flag, report_request
from workers.reports.service import ReportService


@pytest.fixture
async def pool(postgres_dsn: str) -> AsyncIterator[Pool]:
    await write_records(postgres_dsn)
    pool = await open_postgres(PostgresSettings(dsn=postgres_dsn), "acd reports test")
    yield pool
    await pool.close()


@pytest.fixture
def scope(tmp_path: Path) -> ReportScope:
    return ReportScope.from_settings(load_settings(write_config(tmp_path / "acd.yaml")))


async def make(pool: Pool, scope: ReportScope, **raw: Any) -> Report:
    values = {"start": "2026-10-25T00:00", "end": "2026-10-25T05:00", "interval": "1h"} | raw
    request = report_request(RawReport(**values), scope, cli_flag)
    return await ReportService(pool, "test", scope).interval_report(request)


def approx(expected: dict[str, Any]) -> dict[str, Any]:
    return {name: pytest.approx(value) if isinstance(value, float) else value for name, value in expected.items()}


def figures(row: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    return {name: row[name] for name in names}


CALL_NAMES = tuple(ZERO_CALLS)
AGENT_NAMES = tuple(ZERO_AGENT)


async def test_per_queue_every_figure_per_interval_across_the_night_the_clocks_go_back(
    pool: Pool, scope: ReportScope
) -> None:
    report = await make(pool, scope, by="queue")
    assert report.request.zone.key == "Europe/Berlin" and report.request.zone_source == "site"
    assert [row["interval_start"] for row in report.rows[::3]] == BERLIN_HOURS[:-1]
    assert [row["interval_end"] for row in report.rows[2::3]] == BERLIN_HOURS[1:]
    assert [row["queue"] for row in report.rows[:3]] == ["billing", "sales", "support"]  # every queue, every hour
    for index, row in enumerate(report.rows):
        key = (index // 3, row["queue"])
        expected = ZERO_CALLS | QUEUE_FIGURES.get(key, {})
        assert figures(row, CALL_NAMES) == approx(expected), key
        assert row["service_level_formula"] == FORMULAS[row["queue"]]
    assert figures(report.totals, CALL_NAMES) == approx({n: CALL_TOTALS[n] for n in CALL_NAMES})
    assert report.totals["service_level_formula"] == "per_queue"


async def test_for_the_site_service_level_sums_each_queues_numerator_and_denominator(
    pool: Pool, scope: ReportScope
) -> None:
    report = await make(pool, scope, by="site")
    assert [row["site"] for row in report.rows] == ["main"] * 6
    for index, row in enumerate(report.rows):
        assert figures(row, CALL_NAMES) == approx(ZERO_CALLS | SITE_FIGURES.get(index, {})), index
        assert row["service_level_formula"] == "per_queue"
    assert report.totals == approx(report.totals | {n: CALL_TOTALS[n] for n in CALL_NAMES})
    only_billing = await make(pool, scope, by="site", queues=["billing"])
    assert only_billing.rows[2]["service_level"] == pytest.approx(0.5)
    assert only_billing.rows[2]["service_level_formula"] == FORMULAS["billing"]


async def test_per_agent_state_time_is_split_at_the_boundaries(pool: Pool, scope: ReportScope) -> None:
    report = await make(pool, scope, by="agent")
    assert [(BERLIN_HOURS.index(row["interval_start"]), row["agent"]) for row in report.rows] == list(AGENT_FIGURES)
    for row in report.rows:
        key = (BERLIN_HOURS.index(row["interval_start"]), row["agent"])
        assert figures(row, AGENT_NAMES) == approx(ZERO_AGENT | AGENT_FIGURES[key]), key
    assert figures(report.totals, AGENT_NAMES) == approx(AGENT_TOTALS)
    one = await make(pool, scope, by="agent", agents=["a1"])
    assert {row["agent"] for row in one.rows} == {"a1"} and one.totals["calls_handled"] == 2


async def test_days_follow_the_local_calendar_and_the_day_the_clocks_go_back_has_25_hours(
    pool: Pool, scope: ReportScope
) -> None:
    berlin = await make(pool, scope, start="2026-10-24", end="2026-10-27", interval="1d", queues=["billing"])
    assert [(row["interval_start"], row["interval_end"], row["offered"]) for row in berlin.rows] == [
        ("2026-10-24T00:00:00+02:00", "2026-10-25T00:00:00+02:00", 1),  # x1: 21:59Z is 23:59 in Berlin
        ("2026-10-25T00:00:00+02:00", "2026-10-26T00:00:00+01:00", 10),  # c1-c9 and x2
        ("2026-10-26T00:00:00+01:00", "2026-10-27T00:00:00+01:00", 1),  # e1: 23:30Z is 00:30 on the 26th
    ]
    utc = await make(
        pool, scope, start="2026-10-24", end="2026-10-27", interval="1d", queues=["billing"], timezone="UTC"
    )
    assert utc.request.zone_source == "requested"
    assert [(row["interval_start"], row["offered"]) for row in utc.rows] == [
        ("2026-10-24T00:00:00+00:00", 1),
        ("2026-10-25T00:00:00+00:00", 11),
        ("2026-10-26T00:00:00+00:00", 0),
    ]
    quarter_hours = await make(pool, scope, start="2026-10-25", end="2026-10-26", interval="15m", queues=["billing"])
    assert len(quarter_hours.rows) == 25 * 4
    assert quarter_hours.totals["offered"] == 10


async def test_a_call_belongs_to_the_interval_it_entered_in(pool: Pool, scope: ReportScope) -> None:
    """c8 entered half a second before 01:00Z and c9 at 01:00Z: each in its own interval."""
    report = await make(pool, scope, start="2026-10-25T00:59:59.5Z", end="2026-10-25T01:00:00.5Z", queues=["billing"])
    assert [(row["interval_start"], row["interval_end"], row["offered"]) for row in report.rows] == [
        ("2026-10-25T02:59:59.500000+02:00", "2026-10-25T02:00:00+01:00", 1),
        ("2026-10-25T02:00:00+01:00", "2026-10-25T02:00:00.500000+01:00", 1),
    ]


async def test_csv_has_one_header_row_of_the_documented_columns(pool: Pool, scope: ReportScope) -> None:
    for by in ("queue", "site", "agent"):
        report = await make(pool, scope, by=by)
        rows = list(csv.reader(io.StringIO(render(report, "csv"))))
        assert tuple(rows[0]) == COLUMNS[by]
        assert len(rows) == 1 + len(report.rows)  # no totals row
    report = await make(pool, scope, by="queue")
    table = list(csv.DictReader(io.StringIO(render(report, "csv"))))
    billing = table[2 * 3]
    assert billing["interval_start"] == "2026-10-25T02:00:00+02:00" and billing["queue"] == "billing"
    assert billing["service_level"] == "0.5" and billing["asa_s"] == "18.333" and billing["avg_wrapup_s"] == "23.333"
    assert table[3 * 3]["avg_wrapup_s"] == ""  # nothing to average: an empty field
    agents = list(csv.DictReader(io.StringIO(render(await make(pool, scope, by="agent"), "csv"))))
    assert agents[5]["paused_by_reason"] == "(none)=600;lunch=730"


async def test_json_is_one_document_with_the_range_rows_and_totals(pool: Pool, scope: ReportScope) -> None:
    import json

    document = json.loads(render(await make(pool, scope, by="site"), "json"))
    assert {k: document[k] for k in ("from", "to", "interval", "by", "timezone", "timezone_source", "site")} == {
        "from": "2026-10-25T00:00:00+02:00",
        "to": "2026-10-25T05:00:00+01:00",
        "interval": "1h",
        "by": "site",
        "timezone": "Europe/Berlin",
        "timezone_source": "site",
        "site": "main",
    }
    assert document["columns"] == list(COLUMNS["site"]) and len(document["rows"]) == 6
    assert document["rows"][2]["asa_s"] == 23.75 and document["totals"]["service_level"] == round(4 / 7, 6)
    datetime.fromisoformat(document["rows"][0]["interval_start"])


async def test_table_is_for_people(pool: Pool, scope: ReportScope) -> None:
    text = render(await make(pool, scope, by="queue"), "table")
    lines = text.splitlines()
    assert "site main, by queue, 1h intervals" in lines[0]
    assert "times in Europe/Berlin: the site's time zone (setting timezone)" in lines[1]
    assert "billing: answered_within_over_answered_and_abandoned_after_threshold" in lines[2]
    header = lines[3].split()
    assert header[:4] == ["interval", "queue", "offered", "answered"]
    repeated = [line for line in lines if line.startswith("2026-10-25 02:00")]
    assert [line.split()[1] for line in repeated] == ["02:00+02:00"] * 3 + ["02:00+01:00"] * 3
    billing = next(line for line in repeated if " billing " in line).split()
    assert billing[3:6] == ["5", "3", "2"] and "50.0%" in billing and "18.3s" in billing and "2:20" in billing
    assert lines[-1].startswith("total") and "57.1%" in lines[-1]
    agents = render(await make(pool, scope, by="agent"), "table")
    assert "lunch 47:50" in agents and "(none) 10:00, lunch 12:10" in agents


async def test_an_empty_range_reports_zeros_and_says_so(pool: Pool, scope: ReportScope) -> None:
    report = await make(pool, scope, start="2026-11-01", end="2026-11-01T01:00", by="agent")
    assert report.rows == [] and report.totals["logged_in_s"] == 0
    assert "(no activity in this range)" in render(report, "table")
    queues = await make(pool, scope, start="2026-11-01", end="2026-11-01T01:00")
    assert [row["offered"] for row in queues.rows] == [0, 0, 0] and queues.totals["service_level"] is None
