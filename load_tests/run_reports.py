"""A run's reports, read back from PostgreSQL at its end (`acd demo --report-out DIR`):
``calls.csv`` (one row per call), ``intervals_by_queue.csv`` and ``intervals_by_agent.csv``
(the interval report's CSV, docs/reports.md), on the run's own clock (simulated time).

``intervals_by_queue.csv`` also has ``asa_seconds`` (the same figure as ``asa_s``): the
name the demo's files were specified with.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from router.postgres import close_pool, open_postgres
from router.settings import AcdSettings, PostgresSettings
from workers.records.parse import CALL_TABLE, INSTANT
from workers.reports.intervals import INTERVALS, iso
from workers.reports.render import csv_value, render, to_csv
from workers.reports.report import Report
from workers.reports.request import RawReport, ReportScope, cli_flag, report_request
from workers.reports.service import ReportService

CALLS_SQL = (
    f"SELECT {', '.join(column.name for column in CALL_TABLE.columns)} FROM call_records"
    " WHERE site = $1 ORDER BY entered_at, call_id"
)


@dataclass(frozen=True, slots=True)
class RunReports:
    by_queue: Report
    by_agent: Report
    calls: list[dict[str, Any]]  # call_records' rows


def _edges(start: float, end: float, interval: str) -> tuple[str, str]:
    """The run's span, widened to whole intervals (UTC: the demo's site has no time zone)."""
    step = INTERVALS[interval] * 60
    first = math.floor(start / step) * step
    last = max(math.ceil(end / step) * step, first + step)
    return (datetime.fromtimestamp(first, UTC).isoformat(), datetime.fromtimestamp(last, UTC).isoformat())


async def read_run_reports(
    settings: AcdSettings, dsn: str, span: tuple[float, float], interval: str
) -> RunReports:
    """The reports of the run that lasted ``span`` (epoch seconds), from its PostgreSQL."""
    scope = ReportScope.from_settings(settings)
    start, end = _edges(*span, interval)
    pool = await open_postgres(PostgresSettings(dsn=dsn), "acd demo")
    try:
        service = ReportService(pool, "the run's PostgreSQL", scope)
        by_queue = await service.interval_report(
            report_request(RawReport(start, end, interval, "queue"), scope, cli_flag)
        )
        by_agent = await service.interval_report(
            report_request(RawReport(start, end, interval, "agent"), scope, cli_flag)
        )
        rows = await pool.fetch(CALLS_SQL, scope.site)
    finally:
        await close_pool(pool)
    return RunReports(by_queue, by_agent, [dict(row) for row in rows])


def write_run_reports(out: Path, reports: RunReports) -> None:
    """calls.csv, intervals_by_queue.csv and intervals_by_agent.csv into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "intervals_by_queue.csv").write_text(_with_asa_seconds(to_csv(reports.by_queue)))
    (out / "intervals_by_agent.csv").write_text(to_csv(reports.by_agent))
    _write_calls(out / "calls.csv", reports.calls, reports.by_queue)


def _with_asa_seconds(text: str) -> str:
    lines = list(csv.reader(text.splitlines()))
    header, body = lines[0], lines[1:]
    at = header.index("asa_s")
    out = [[*header, "asa_seconds"], *([*row, row[at]] for row in body)]
    return _csv_text(out)


def _write_calls(path: Path, rows: list[dict[str, Any]], report: Report) -> None:
    instants = [column.name for column in CALL_TABLE.columns if column.sql_type == INSTANT]
    names = [column.name for column in CALL_TABLE.columns]
    table: list[list[Any]] = [names]
    for row in rows:
        for name in instants:
            if row[name] is not None:
                row[name] = iso(row[name], report.request.zone)
        table.append([csv_value(row[name]) for name in names])
    path.write_text(_csv_text(table))


def _csv_text(rows: list[list[Any]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def table(reports: RunReports) -> str:
    """The by-queue interval table, as `acd report` prints it."""
    return render(reports.by_queue, "table")
