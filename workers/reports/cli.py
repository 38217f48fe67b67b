"""`acd report`: interval reports from the recorder's tables (docs/reports.md).

    acd report --config FILE --from ISO --to ISO [--interval 15m|30m|1h|1d]
               [--by queue|agent|site] [--format table|csv|json] [--timezone TZ]
               [--queue NAME ...] [--agent ID ...]
    acd report --abandoned --config FILE --from ISO --to ISO [--needs-callback]
               [--format table|csv|json] [--timezone TZ] [--queue NAME ...] [--limit N]

The second lists the callers who abandoned, to call back (docs/reports.md).

The parameters are checked before PostgreSQL is asked anything: a wrong one is one line on
stderr and exit 2. PostgreSQL unreachable (after ``postgres.startup_timeout_s``) is exit 75,
as for every command: trying again later can succeed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from router.postgres import close_pool, dsn_target, open_postgres
from router.settings import AcdSettings, load_settings
from workers.reports.intervals import INTERVALS
from workers.reports.render import abandoned_csv, abandoned_table, render
from workers.reports.report import Report
from workers.reports.request import (
    DEFAULT_BY,
    DEFAULT_INTERVAL,
    FORMATS,
    GROUPINGS,
    RawAbandoned,
    RawReport,
    ReportInputError,
    ReportRequest,
    ReportScope,
    abandoned_request,
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
    parser.add_argument(
        "--abandoned",
        action="store_true",
        help="instead of intervals: the callers who abandoned (with a number), newest first, and whether "
        "a later call of theirs was answered (docs/reports.md)",
    )
    parser.add_argument(
        "--needs-callback",
        action="store_true",
        help="with --abandoned: only callers not answered since",
    )
    parser.add_argument("--limit", metavar="N", help="with --abandoned: at most N callers (default all)")


INTERVAL_ONLY = (("interval", "--interval"), ("by", "--by"), ("agent", "--agent"))
ABANDONED_ONLY = (("needs_callback", "--needs-callback"), ("limit", "--limit"))


def run_report_command(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    form = choice(args.output, FORMATS, "table", "format", cli_flag)
    if args.abandoned:
        return run_abandoned(args, settings, form)
    for name, flag in ABANDONED_ONLY:
        if getattr(args, name):
            raise ReportInputError(
                f"{flag} belongs to the list of abandoned callers: expected --abandoned with it"
            )
    raw = RawReport(args.start, args.end, args.interval, args.by, args.timezone, args.queue, args.agent)
    request = report_request(raw, ReportScope.from_settings(settings), cli_flag)
    settings.postgres.require_dsn()
    report = asyncio.run(make_report(settings, request))
    sys.stdout.write(render(report, form))
    return 0


async def make_report(settings: AcdSettings, request: ReportRequest) -> Report:
    """Open PostgreSQL, check its schema is the recorder's, read, add up, close."""
    return await on_service(settings, lambda service: service.interval_report(request))


async def on_service[T](settings: AcdSettings, ask: Callable[[ReportService], Awaitable[T]]) -> T:
    """``ask`` the site's reports, PostgreSQL opened and its schema checked first, then closed."""
    from workers.records.migrate import check_schema  # Alembic: only when a report is made

    where = dsn_target(settings.postgres.require_dsn())
    pool = await open_postgres(settings.postgres, "acd report")
    try:
        await check_schema(pool, where)
        return await ask(ReportService(pool, where, ReportScope.from_settings(settings)))
    finally:
        await close_pool(pool)


def run_abandoned(args: argparse.Namespace, settings: AcdSettings, form: str) -> int:
    """`acd report --abandoned`: the callers to call back, every one unless --limit."""
    for name, flag in INTERVAL_ONLY:
        if getattr(args, name):
            raise ReportInputError(f"{flag} belongs to interval reports: expected no {flag} with --abandoned")
    raw = RawAbandoned(
        args.start,
        args.end,
        args.timezone,
        args.queue,
        "true" if args.needs_callback else None,
        args.limit,
    )
    request = abandoned_request(raw, ReportScope.from_settings(settings), cli_flag, default_limit=None)
    settings.postgres.require_dsn()
    document = asyncio.run(on_service(settings, lambda service: service.abandoned_callers(request)))
    if form == "json":
        sys.stdout.write(json.dumps(document, indent=1) + "\n")
    else:
        sys.stdout.write(abandoned_csv(document) if form == "csv" else abandoned_table(document))
    return 0
