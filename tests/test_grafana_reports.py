"""The reports dashboard (deploy/grafana/acd-reports.json) on a real PostgreSQL: every panel's
SQL, and the queue variable's, made into the statement Grafana's PostgreSQL data source
would send, run over the known records of tests/reports_support.py; each returns rows of
its panel's shape, and the figures agree with `acd report`'s over the same range.

Grafana prepares a panel's SQL in two steps, and ``grafana_sql`` does both:

1. Template variables (the front end): a single-value variable becomes its value as it is
   (the SQL quotes it: ``site = '$site'``); a multi-value or include-all variable becomes
   its values quoted and comma-separated (``queue IN ($queue)`` -> ``'billing','support'``).
2. Macros (the PostgreSQL data source, pkg/tsdb/grafana-postgresql-datasource/macros.go),
   for the time range [from, to] in UTC, written as RFC 3339 with nanoseconds (trailing
   zeros dropped): ``$__timeFilter(col)`` -> ``col BETWEEN 'from' AND 'to'``;
   ``$__timeFrom()`` / ``$__timeTo()`` -> ``'from'`` / ``'to'``; ``$__timeGroup(col, 15m)``
   -> ``floor(extract(epoch from col)/900)*900``; ``$__timeGroupAlias(col, 15m)`` -> the
   same ``AS "time"``. Any other macro fails the test, so a panel cannot use one that is
   not checked here.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from router.settings import load_settings
from tests.reports_support import FORMULAS, write_config, write_records
from workers.reports.request import RawReport, ReportScope, cli_flag, report_request
from workers.reports.service import ReportService

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "grafana" / "acd-reports.json"
POSTGRES_TYPE = "grafana-postgresql-datasource"
# The dashboard's range: every call of the day but e1 (23:30Z) and x1 (21:59Z the day before).
FROM = datetime(2026, 10, 24, 22, tzinfo=UTC)
TO = datetime(2026, 10, 25, 5, tzinfo=UTC)
QUEUES = ["billing", "sales", "support"]
MACRO = re.compile(r"\$([_a-zA-Z0-9]+)\(([^)]*)\)")  # as macros.go's sExpr
INTERVAL_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
TIME_SERIES_VALUES = {
    "Service level per queue": "service_level",
    "ASA per queue": "asa_s",
    "Abandoned per queue": "abandoned",
    "Offered per queue": "offered",
}
TABLE_COLUMNS = {
    "Queues": [
        "queue", "offered", "answered", "abandoned", "overflowed", "service_level", "asa_s", "aht_s",
        "abandon_rate", "longest_wait_s",
    ],
    "Agents": [
        "agent", "calls_handled", "talk_s", "wrapup_s", "reserved_s", "available_s", "paused_s", "logged_in_s",
        "occupancy", "qa_reviews", "avg_quality_score",
    ],
}  # fmt: skip


def rfc3339(instant: datetime) -> str:
    """Go's time.RFC3339Nano of a UTC time: 2026-10-25T05:00:00Z, 2026-10-25T05:00:00.5Z."""
    text = instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f"{instant.microsecond:06d}".rstrip("0")
    return f"{text}.{fraction}Z" if fraction else f"{text}Z"


def interval_seconds(text: str) -> int:
    match = re.fullmatch(r"'?(\d+)([smhd])'?", text.strip())
    assert match, f"not an interval Grafana parses here: {text!r}"
    return int(match.group(1)) * INTERVAL_UNITS[match.group(2)]


def _macro(name: str, args: Sequence[str], start: datetime, end: datetime) -> str:
    if name == "__timeFilter":
        return f"{args[0]} BETWEEN '{rfc3339(start)}' AND '{rfc3339(end)}'"
    if name == "__timeFrom":
        return f"'{rfc3339(start)}'"
    if name == "__timeTo":
        return f"'{rfc3339(end)}'"
    if name in ("__timeGroup", "__timeGroupAlias"):
        seconds = interval_seconds(args[1])
        grouped = f"floor(extract(epoch from {args[0]})/{seconds})*{seconds}"
        return grouped + (' AS "time"' if name == "__timeGroupAlias" else "")
    raise AssertionError(f"the dashboard uses ${name}(), which this test does not substitute")


def grafana_sql(sql: str, variables: Mapping[str, str | list[str]], start: datetime, end: datetime) -> str:
    """The statement Grafana's PostgreSQL data source sends for ``sql`` (module docstring)."""
    for name in sorted(variables, key=len, reverse=True):  # $queue before $q
        value = variables[name]
        shown = ",".join("'" + v.replace("'", "''") + "'" for v in value) if isinstance(value, list) else value
        sql = sql.replace("${" + name + "}", shown).replace("$" + name, shown)
    sql = MACRO.sub(lambda m: _macro(m.group(1), [a.strip() for a in m.group(2).split(",")], start, end), sql)
    leftover = re.search(r"\$[A-Za-z_{]", sql)
    assert leftover is None, f"a variable or macro is left in {sql[leftover.start() :][:40]!r}"
    return sql


def test_the_substitution_is_grafanas() -> None:
    """The expansions macros_test.go expects, for its time range."""
    start = datetime(2018, 4, 12, 18, tzinfo=UTC)
    end = datetime(2018, 4, 12, 18, 5, tzinfo=UTC)
    assert grafana_sql("WHERE $__timeFilter(time_column)", {}, start, end) == (
        "WHERE time_column BETWEEN '2018-04-12T18:00:00Z' AND '2018-04-12T18:05:00Z'"
    )
    assert grafana_sql("SELECT $__timeGroupAlias(time_column,'5m')", {}, start, end) == (
        'SELECT floor(extract(epoch from time_column)/300)*300 AS "time"'
    )
    assert grafana_sql("$__timeGroup(time_column , '5m')", {}, start, end) == (
        "floor(extract(epoch from time_column)/300)*300"
    )
    assert grafana_sql("select $__timeFrom(), $__timeTo()", {}, start, end) == (
        "select '2018-04-12T18:00:00Z', '2018-04-12T18:05:00Z'"
    )
    assert rfc3339(datetime(1960, 2, 1, 7, 0, 0, 500000, tzinfo=UTC)) == "1960-02-01T07:00:00.5Z"
    assert grafana_sql("q IN ($queue) AND s = '$site'", {"queue": ["a", "b'c"], "site": "main"}, start, end) == (
        "q IN ('a','b''c') AND s = 'main'"
    )
    with pytest.raises(AssertionError, match="does not substitute"):
        grafana_sql("$__unixEpochFilter(t)", {}, start, end)


def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def panels() -> list[dict[str, Any]]:
    return [panel for panel in dashboard()["panels"] if panel["type"] != "row"]


def variables(formula: str) -> dict[str, str | list[str]]:
    return {"site": "main", "queue": QUEUES, "interval": "1h", "formula": formula}


@pytest.fixture
async def connection(postgres_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    await write_records(postgres_dsn)
    conn = await asyncpg.connect(postgres_dsn)
    yield conn
    await conn.close()


@pytest.fixture
async def service(connection: asyncpg.Connection, postgres_dsn: str, tmp_path: Path) -> AsyncIterator[ReportService]:
    import asyncpg as pg

    pool = await pg.create_pool(postgres_dsn, min_size=1, max_size=2)
    scope = ReportScope.from_settings(load_settings(write_config(tmp_path / "acd.yaml")))
    yield ReportService(pool, "test", scope)
    await pool.close()


async def run(connection: asyncpg.Connection, panel: dict[str, Any], formula: str) -> list[dict[str, Any]]:
    (target,) = panel["targets"]
    rows = await connection.fetch(grafana_sql(target["rawSql"], variables(formula), FROM, TO))
    return [{name: plain(value) for name, value in row.items()} for row in rows]


def plain(value: Any) -> Any:
    """numeric (extract(epoch ...) since PostgreSQL 14) as the float Grafana makes of it."""
    return float(value) if isinstance(value, Decimal) else value


async def cli_totals(service: ReportService, **raw: Any) -> dict[str, Any]:
    values = {"start": rfc3339(FROM), "end": rfc3339(TO), "interval": "1d", "timezone": "UTC"} | raw
    report = await service.interval_report(report_request(RawReport(**values), service.scope, cli_flag))
    return report.totals


async def test_every_panel_runs_and_returns_rows_of_its_shape(connection: asyncpg.Connection) -> None:
    found = panels()
    assert {panel["title"] for panel in found} == set(TIME_SERIES_VALUES) | set(TABLE_COLUMNS)
    for panel in found:
        assert panel["datasource"] == {"type": POSTGRES_TYPE, "uid": "${datasource}"}, panel["title"]
        rows = await run(connection, panel, FORMULAS["billing"])
        assert rows, panel["title"]
        (target,) = panel["targets"]
        if panel["title"] in TIME_SERIES_VALUES:
            assert target["format"] == "time_series"
            assert list(rows[0].keys()) == ["time", "metric", TIME_SERIES_VALUES[panel["title"]]], panel["title"]
            times = [row["time"] for row in rows]
            # Epoch seconds, in time order as Grafana needs them.
            assert times == sorted(times) and all(isinstance(t, float) for t in times)
            assert {row["metric"] for row in rows} <= set(QUEUES)
        else:
            assert target["format"] == "table"
            assert list(rows[0].keys()) == TABLE_COLUMNS[panel["title"]], panel["title"]


async def test_the_queue_variable_lists_the_queues_with_calls(connection: asyncpg.Connection) -> None:
    (queue,) = [v for v in dashboard()["templating"]["list"] if v["name"] == "queue"]
    rows = await connection.fetch(grafana_sql(queue["query"], variables(""), FROM, TO))
    assert [row[0] for row in rows] == ["billing", "support"]


async def test_per_interval_panels_agree_with_acd_report_hour_by_hour(
    connection: asyncpg.Connection, service: ReportService
) -> None:
    """UTC hours: Grafana's buckets start at multiples of the interval since the epoch."""
    by_title = {panel["title"]: panel for panel in panels()}
    for queue in ("billing", "support"):
        report = await service.interval_report(
            report_request(
                RawReport(rfc3339(FROM), rfc3339(TO), "1h", "queue", "UTC", [queue]), service.scope, cli_flag
            )
        )
        expected = {datetime.fromisoformat(row["interval_start"]).timestamp(): row for row in report.rows}
        for title, column in TIME_SERIES_VALUES.items():
            rows = await run(connection, by_title[title], FORMULAS[queue])
            got = {row["time"]: row[column] for row in rows if row["metric"] == queue}
            assert got, (title, queue)
            for at, value in got.items():
                assert value == pytest.approx(expected[at][column]), (title, queue, at)
            assert all(expected[at]["offered"] == 0 for at in set(expected) - set(got)), (title, queue)


async def test_the_queue_table_agrees_with_acd_report(connection: asyncpg.Connection, service: ReportService) -> None:
    (panel,) = [p for p in panels() if p["title"] == "Queues"]
    for queue in ("billing", "support"):
        rows = {row["queue"]: row for row in await run(connection, panel, FORMULAS[queue])}
        totals = await cli_totals(service, queues=[queue])
        for column in TABLE_COLUMNS["Queues"][1:]:
            assert rows[queue][column] == pytest.approx(totals[column]), (queue, column)


async def test_the_agent_table_agrees_with_acd_report(connection: asyncpg.Connection, service: ReportService) -> None:
    (panel,) = [p for p in panels() if p["title"] == "Agents"]
    rows = {row["agent"]: row for row in await run(connection, panel, FORMULAS["billing"])}
    assert sorted(rows) == ["a1", "a2", "a3"]
    for agent, row in rows.items():
        totals = await cli_totals(service, by="agent", agents=[agent])
        for column in TABLE_COLUMNS["Agents"][1:]:
            assert row[column] == pytest.approx(totals[column]), (agent, column)
