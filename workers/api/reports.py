"""The reports endpoints: interval reports, finished calls and the abandoned callers to call
back, from PostgreSQL (docs/reports.md).

The parameters are checked first (400, or 404 for a queue or agent that is not
configured), whether or not PostgreSQL is there; then, without a ``postgres`` DSN in the
configuration, 503 ``postgres_not_configured``; with PostgreSQL away, 503
``postgres_unavailable`` (the error middleware).
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from workers.api.errors import ApiError
from workers.reports.render import abandoned_csv, to_csv
from workers.reports.request import (
    RawAbandoned,
    RawCalls,
    RawReport,
    ReportInputError,
    ReportScope,
    abandoned_request,
    calls_request,
    query_parameter,
    report_request,
)
from workers.reports.service import ReportService

OUTPUT_FORMATS = ("json", "csv")


@dataclass
class ReportsContext:
    """What the reports handlers work with; ``service`` is None without a ``postgres`` DSN."""

    scope: ReportScope
    service: ReportService | None = None


def input_error(exc: ReportInputError) -> ApiError:
    status = 404 if exc.code.startswith("unknown_") else 400
    return ApiError(status, exc.code, str(exc))


def not_configured() -> ApiError:
    return ApiError(
        503,
        "postgres_not_configured",
        "reports read the call and agent-state records in PostgreSQL, and this API has no postgres DSN: "
        "set ACD_POSTGRES__DSN_FILE (or ACD_POSTGRES__DSN) for `acd api` and restart it",
    )


class ReportHandlers:
    """GET /api/v1/reports/intervals, /calls and /abandoned."""

    def __init__(self, context: ReportsContext) -> None:
        self.ctx = context

    def _service(self) -> ReportService:
        if self.ctx.service is None:
            raise not_configured()
        return self.ctx.service

    @staticmethod
    def _format(request: web.Request) -> str:
        asked = request.query.get("format")
        if asked is None:
            return "csv" if "text/csv" in request.headers.get("Accept", "") else "json"
        if asked not in OUTPUT_FORMATS:
            raise ApiError(
                400, "invalid_query", f"format {asked!r}: expected one of {', '.join(OUTPUT_FORMATS)}"
            )
        return asked

    async def intervals(self, request: web.Request) -> web.Response:
        query = request.query
        raw = RawReport(
            start=query.get("from"),
            end=query.get("to"),
            interval=query.get("interval"),
            by=query.get("by"),
            timezone=query.get("timezone"),
            queues=query.getall("queue", []),
            agents=query.getall("agent", []),
        )
        form = self._format(request)
        try:
            asked = report_request(raw, self.ctx.scope, query_parameter)
        except ReportInputError as exc:
            raise input_error(exc) from None
        report = await self._service().interval_report(asked)
        if form == "csv":
            return web.Response(
                text=to_csv(report),
                content_type="text/csv",
                charset="utf-8",
                headers={"Content-Disposition": f'attachment; filename="acd-report-{asked.by}.csv"'},
            )
        return web.json_response(report.document())

    async def calls(self, request: web.Request) -> web.Response:
        query = request.query
        raw = RawCalls(
            start=query.get("from"),
            end=query.get("to"),
            timezone=query.get("timezone"),
            queues=query.getall("queue", []),
            agents=query.getall("agent", []),
            outcomes=query.getall("outcome", []),
            limit=query.get("limit"),
            cursor=query.get("cursor"),
        )
        try:
            asked = calls_request(raw, self.ctx.scope, query_parameter)
        except ReportInputError as exc:
            raise input_error(exc) from None
        return web.json_response(await self._service().finished_calls(asked))

    async def abandoned(self, request: web.Request) -> web.Response:
        query = request.query
        raw = RawAbandoned(
            start=query.get("from"),
            end=query.get("to"),
            timezone=query.get("timezone"),
            queues=query.getall("queue", []),
            needs_callback=query.get("needs_callback"),
            limit=query.get("limit"),
            cursor=query.get("cursor"),
        )
        form = self._format(request)
        try:
            asked = abandoned_request(raw, self.ctx.scope, query_parameter)
        except ReportInputError as exc:
            raise input_error(exc) from None
        document = await self._service().abandoned_callers(asked)
        if form == "json":
            return web.json_response(document)
        # The page's rows; the next page's cursor (none on the last) in a header.
        headers = {"Content-Disposition": 'attachment; filename="acd-abandoned-callers.csv"'}
        if document["next_cursor"] is not None:
            headers["Acd-Next-Cursor"] = document["next_cursor"]
        return web.Response(
            text=abandoned_csv(document), content_type="text/csv", charset="utf-8", headers=headers
        )
