"""Reports over one site's records: what `acd report` and the API's /api/v1/reports/ answer."""

from __future__ import annotations

from typing import Any

from router.postgres import Pool
from workers.records.parse import CALL_TABLE, INSTANT
from workers.reports.intervals import iso
from workers.reports.queries import ABANDONED_COLUMNS, ReportQueries
from workers.reports.report import Report, ReportData, build_report
from workers.reports.request import AbandonedRequest, CallsRequest, ReportRequest, ReportScope

TIME_COLUMNS = tuple(column.name for column in CALL_TABLE.columns if column.sql_type == INSTANT)


class ReportService:
    """Interval reports and finished calls for ``scope``'s site, read through ``pool``."""

    def __init__(self, pool: Pool, where: str, scope: ReportScope) -> None:
        self.pool = pool
        self.where = where
        self.scope = scope

    def configure(self, scope: ReportScope) -> None:
        """A configuration reload: the queues, agents and time zone requests are checked against."""
        self.scope = scope

    @property
    def _queries(self) -> ReportQueries:
        return ReportQueries(self.pool, self.where, self.scope.site)

    async def interval_report(self, request: ReportRequest) -> Report:
        queries = self._queries
        start, end = request.start, request.end
        if request.by == "agent":
            data = ReportData(
                calls=await queries.calls(start, end, agents=request.agents),
                states=await queries.states(start, end, request.agents),
                reviews=await queries.reviews(start, end, request.agents),
            )
        else:
            data = ReportData(calls=await queries.calls(start, end, queues=request.queues))
        return build_report(request, self.scope.site, self.scope.formulas, data)

    async def finished_calls(self, request: CallsRequest) -> dict[str, Any]:
        """A page of finished calls (GET /api/v1/reports/calls), times in the request's zone."""
        rows, next_cursor = await self._queries.finished_calls(request)
        for row in rows:
            for name in TIME_COLUMNS:
                if row[name] is not None:
                    row[name] = iso(row[name], request.zone)
        return {
            "timezone": request.zone.key,
            "limit": request.limit,
            "calls": rows,
            "next_cursor": None if next_cursor is None else next_cursor.encode(),
        }

    async def abandoned_callers(self, request: AbandonedRequest) -> dict[str, Any]:
        """Callers to call back (GET /api/v1/reports/abandoned, `acd report --abandoned`):
        a page of them, newest first, times in the request's zone."""
        rows, next_cursor = await self._queries.abandoned(request)
        for row in rows:
            for name in ("entered_at", "abandoned_at", "answered_later_at"):
                if row[name] is not None:
                    row[name] = iso(row[name], request.zone)
        return {
            "site": self.scope.site,
            "from": iso(request.start, request.zone),
            "to": iso(request.end, request.zone),
            "timezone": request.zone.key,
            "timezone_source": request.zone_source,
            "queues": list(request.queues) or None,
            "needs_callback": request.needs_callback,
            "limit": request.limit,
            "columns": list(ABANDONED_COLUMNS),
            "callers": [{name: row[name] for name in ABANDONED_COLUMNS} for row in rows],
            "next_cursor": None if next_cursor is None else next_cursor.encode(),
        }
