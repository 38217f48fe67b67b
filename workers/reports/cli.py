"""`acd report`: interval reports from the recorder's tables (docs/reports.md).

    acd report --config FILE --from ISO --to ISO [--interval 15m|30m|1h|1d]
               [--by queue|agent|site] [--format table|csv|json] [--timezone TZ]
               [--queue NAME ...] [--agent ID ...]

The parameters are checked before PostgreSQL is asked anything: a wrong one is one line on
stderr and exit 2. PostgreSQL unreachable (after ``postgres.startup_timeout_s``) is exit 75,
as for every command: trying again later can succeed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from router.postgres import close_pool, dsn_target, open_postgres
from router.settings import AcdSettings, load_settings
from workers.reports.intervals import INTERVALS
from workers.reports.render import render
from workers.reports.report import Report
from workers.reports.request import (
    DEFAULT_BY,
    DEFAULT_INTERVAL,
    FORMATS,
    GROUPINGS,
    RawReport,
    ReportRequest,
    ReportScope,
    choice,
    cli_flag,
    report_request,
)
from workers.reports.service import ReportService


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `acd report`; their values are checked by ``report_request`` (one message each)."""
    parser.add_argument(
        "--config", type=Path, help="YAML configuration file (its site, queues, agents, postgres)"
    )
    parser.add_argument(
        "--from", dest="start", metavar="ISO", help="start, e.g. 2026-10-25 or 2026-10-25T08:00"
    )
    parser.add_argument("--to", dest="end", metavar="ISO", help="end (not included), e.g. 2026-10-26")
    parser.add_argument("--interval", metavar="|".join(INTERVALS), help=f"default {DEFAULT_INTERVAL}")
    parser.add_argument(
        "--by", metavar="|".join(GROUPINGS), help=f"rows per queue, agent or the site (default {DEFAULT_BY})"
    )
    parser.add_argument("--format", dest="output", metavar="|".join(FORMATS), help="default table")
    parser.add_argument(
        "--timezone",
        metavar="TZ",
        help="IANA time zone of the intervals (default: the site's `timezone`, else UTC)",
    )
    parser.add_argument(
        "--queue",
        action="append",
        default=[],
        metavar="NAME",
        help="only these queues (repeat, or comma-separated)",
    )
    parser.add_argument(
        "--agent",
        action="append",
        default=[],
        metavar="ID",
        help="only these agents, with --by agent (repeat, or comma-separated)",
    )


def run_report_command(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    form = choice(args.output, FORMATS, "table", "format", cli_flag)
    raw = RawReport(args.start, args.end, args.interval, args.by, args.timezone, args.queue, args.agent)
    request = report_request(raw, ReportScope.from_settings(settings), cli_flag)
    settings.postgres.require_dsn()
    report = asyncio.run(make_report(settings, request))
    sys.stdout.write(render(report, form))
    return 0


async def make_report(settings: AcdSettings, request: ReportRequest) -> Report:
    """Open PostgreSQL, check its schema is the recorder's, read, add up, close."""
    from workers.records.migrate import check_schema  # Alembic: only when a report is made

    where = dsn_target(settings.postgres.require_dsn())
    pool = await open_postgres(settings.postgres, "acd report")
    try:
        await check_schema(pool, where)
        return await ReportService(pool, where, ReportScope.from_settings(settings)).interval_report(request)
    finally:
        await close_pool(pool)
