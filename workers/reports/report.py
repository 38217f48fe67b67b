"""An interval report: its rows and totals from the records read, as one document (pure).

The columns are a contract (docs/reports.md, Columns): other people's scripts read the
CSV and the JSON by these names; add columns, never rename or reorder one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from router.domain import DEFAULT_SL_FORMULA, SlFormula
from workers.reports.figures import (
    AgentTally,
    CallFacts,
    CallTally,
    Review,
    StateSpan,
    site_formula,
    tally_agents,
    tally_calls,
)
from workers.reports.intervals import boundaries, iso
from workers.reports.request import ReportRequest

CALL_FIGURES = (
    "offered",
    "answered",
    "abandoned",
    "abandoned_within_threshold",
    "overflowed",
    "answered_within_threshold",
    "service_level",
    "service_level_formula",
    "asa_s",
    "aht_s",
    "avg_talk_s",
    "avg_wrapup_s",
    "abandon_rate",
    "longest_wait_s",
    "closed",  # added later: columns only ever grow at the end
)
AGENT_FIGURES = (
    "calls_handled",
    "talk_s",
    "wrapup_s",
    "reserved_s",
    "available_s",
    "paused_s",
    "paused_by_reason",
    "logged_in_s",
    "occupancy",
    "qa_reviews",
    "avg_quality_score",
)
COLUMNS: dict[str, tuple[str, ...]] = {
    "queue": ("interval_start", "interval_end", "queue", *CALL_FIGURES),
    "site": ("interval_start", "interval_end", "site", *CALL_FIGURES),
    "agent": ("interval_start", "interval_end", "agent", *AGENT_FIGURES),
}
RATIOS = frozenset({"service_level", "abandon_rate", "occupancy"})
ZONE_SOURCES = {
    "requested": "as requested",
    "site": "the site's time zone (setting timezone)",
    "default": "no site time zone is set (setting timezone), so UTC",
}


@dataclass(frozen=True, slots=True)
class ReportData:
    """The records a report adds up."""

    calls: Sequence[CallFacts] = ()
    states: Sequence[StateSpan] = ()
    reviews: Sequence[Review] = ()


@dataclass(frozen=True, slots=True)
class Report:
    """Rows per interval and group, and the totals over all of them."""

    request: ReportRequest
    site: str
    rows: list[dict[str, Any]]
    totals: dict[str, Any]
    columns: tuple[str, ...] = field(default=())

    def document(self) -> dict[str, Any]:
        """The JSON output (`acd report --format json`, GET /api/v1/reports/intervals)."""
        request = self.request
        return {
            "from": iso(request.start, request.zone),
            "to": iso(request.end, request.zone),
            "interval": request.interval,
            "by": request.by,
            "timezone": request.zone.key,
            "timezone_source": request.zone_source,
            "site": self.site,
            "queues": list(request.queues) or None,
            "agents": list(request.agents) or None,
            "columns": list(self.columns),
            "rows": [rounded(row) for row in self.rows],
            "totals": rounded(self.totals),
        }


def rounded(row: Mapping[str, Any]) -> dict[str, Any]:
    """Seconds to the millisecond, ratios to 6 places; counts and names as they are."""
    return {name: _round(name, value) for name, value in row.items()}


def _round(name: str, value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _round(name, inner) for key, inner in value.items()}
    if isinstance(value, float):
        return round(value, 6 if name in RATIOS else 3)
    return value


def build_report(
    request: ReportRequest, site: str, formulas: Mapping[str, SlFormula], data: ReportData
) -> Report:
    """The report ``request`` asks for over ``data`` (already limited to its range and filters)."""
    points = boundaries(request.start, request.end, request.minutes, request.zone)
    if request.by == "agent":
        agent_cells = tally_agents(points, data.states, data.calls, data.reviews)
        rows, totals = _agent_rows(request, points, agent_cells)
    else:
        call_cells = tally_calls(points, data.calls, formulas)
        queues = request.queues or tuple(sorted(set(formulas) | {queue for _, queue in call_cells}))
        rows, totals = _call_rows(request, site, points, call_cells, queues, formulas)
    return Report(request, site, rows, totals, COLUMNS[request.by])


def _when(request: ReportRequest, points: Sequence[datetime], index: int) -> dict[str, Any]:
    return {
        "interval_start": iso(points[index], request.zone),
        "interval_end": iso(points[index + 1], request.zone),
    }


def _call_rows(
    request: ReportRequest,
    site: str,
    points: Sequence[datetime],
    cells: Mapping[tuple[int, str], CallTally],
    queues: Sequence[str],
    formulas: Mapping[str, SlFormula],
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    def formula(queue: str) -> str:
        return formulas.get(queue, DEFAULT_SL_FORMULA)

    overall = site_formula(formula(queue) for queue in queues)
    rows: list[dict[str, Any]] = []
    total = CallTally()
    for index in range(len(points) - 1):
        in_interval = CallTally()
        for queue in queues:
            tally = cells.get((index, queue), CallTally())
            in_interval.merge(tally)
            if request.by == "queue":
                rows.append(_when(request, points, index) | {"queue": queue} | tally.figures(formula(queue)))
        if request.by == "site":
            rows.append(_when(request, points, index) | {"site": site} | in_interval.figures(overall))
        total.merge(in_interval)
    return rows, _span(request) | total.figures(overall)


def _agent_rows(
    request: ReportRequest, points: Sequence[datetime], cells: Mapping[tuple[int, str], AgentTally]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    agents = request.agents or tuple(sorted({agent for _, agent in cells}))
    rows: list[dict[str, Any]] = []
    total = AgentTally()
    for index in range(len(points) - 1):
        for agent in agents:
            tally = cells.get((index, agent))
            if tally is not None and tally.active:
                rows.append(_when(request, points, index) | {"agent": agent} | tally.figures())
                total.merge(tally)
    return rows, _span(request) | total.figures()


def _span(request: ReportRequest) -> dict[str, Any]:
    return {
        "interval_start": iso(request.start, request.zone),
        "interval_end": iso(request.end, request.zone),
    }


def zone_note(request: ReportRequest) -> str:
    """Which time zone the times are in, and why (the table output's header says it)."""
    return f"times in {request.zone.key}: {ZONE_SOURCES[request.zone_source]}"
