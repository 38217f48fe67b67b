"""A report as CSV (for scripts and spreadsheets), JSON, or a table for people."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

from workers.reports.report import RATIOS, Report, rounded, zone_note

COUNTS = frozenset(
    {
        "offered",
        "answered",
        "abandoned",
        "abandoned_within_threshold",
        "overflowed",
        "closed",
        "answered_within_threshold",
        "calls_handled",
        "qa_reviews",
    }
)
# Column -> heading of the table output (the CSV and JSON use the column names).
HEADINGS = {
    "interval_start": "interval",
    "queue": "queue",
    "site": "site",
    "agent": "agent",
    "offered": "offered",
    "answered": "answered",
    "abandoned": "abandoned",
    "abandoned_within_threshold": "short ab.",
    "overflowed": "overflowed",
    "closed": "closed",
    "answered_within_threshold": "in SL",
    "service_level": "SL",
    "asa_s": "ASA",
    "aht_s": "AHT",
    "avg_talk_s": "talk",
    "avg_wrapup_s": "wrap-up",
    "abandon_rate": "abandon %",
    "longest_wait_s": "longest wait",
    "calls_handled": "calls",
    "talk_s": "talk",
    "wrapup_s": "wrap-up",
    "reserved_s": "reserved",
    "available_s": "available",
    "paused_s": "paused",
    "paused_by_reason": "paused by reason",
    "logged_in_s": "logged in",
    "occupancy": "occupancy",
    "qa_reviews": "reviews",
    "avg_quality_score": "quality",
}


def render(report: Report, form: str) -> str:
    """The report in ``form`` (table, csv or json), ending with a newline."""
    if form == "json":
        return json.dumps(report.document(), indent=1) + "\n"
    if form == "csv":
        return to_csv(report)
    return to_table(report)


def csv_value(value: Any) -> str:
    """None is an empty field; time by pause reason is ``reason=seconds`` joined by ``;``."""
    if value is None:
        return ""
    if isinstance(value, dict):
        return ";".join(f"{reason}={seconds:g}" for reason, seconds in value.items())
    return str(value)


def to_csv(report: Report) -> str:
    """One header row (the column names), then one row per interval and group; no totals."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(report.columns)
    for row in report.rows:
        shown = rounded(row)
        writer.writerow([csv_value(shown[name]) for name in report.columns])
    return out.getvalue()


def duration(seconds: float) -> str:
    """0, 12.3s, 4:05 (m:ss) or 1:02:03 (h:mm:ss)."""
    if seconds == 0:
        return "0"
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def cell(name: str, value: Any) -> str:
    if value is None:
        return "-"
    if name in COUNTS or isinstance(value, str):
        return str(value)
    if name in RATIOS:
        return f"{value:.1%}"
    if isinstance(value, dict):
        return ", ".join(f"{reason} {duration(seconds)}" for reason, seconds in value.items()) or "-"
    if name.endswith("_s"):
        return duration(value)
    return f"{value:.2f}"


def _interval(value: str) -> str:
    """2026-10-25T02:00:00+02:00 -> 2026-10-25 02:00+02:00: the offset tells repeated hours apart."""
    day, _, clock = value.partition("T")
    return f"{day} {clock[:5]}{clock[8:] if clock[8:9] in '+-' else clock[15:]}"


def to_table(report: Report) -> str:
    request = report.request
    shown = [name for name in report.columns if name not in {"interval_end", "service_level_formula"}]
    lines = [
        f"ACD interval report: site {report.site}, by {request.by}, {request.interval} intervals, "
        f"from {report.totals['interval_start']} to {report.totals['interval_end']}",
        zone_note(request) + "; a call counts in the interval it entered the queue in",
    ]
    if "service_level_formula" in report.columns:
        lines.append(f"service level: {_formulas(report.rows, request.by, report.totals)}")
    body = [[_interval(row["interval_start"]), *(cell(n, row[n]) for n in shown[1:])] for row in report.rows]
    body.append(
        ["total", *("" if n in {"queue", "site", "agent"} else cell(n, report.totals[n]) for n in shown[1:])]
    )
    lines += _aligned([HEADINGS[name] for name in shown], body, shown)
    if not report.rows:
        lines.append("(no activity in this range)")
    return "\n".join(lines) + "\n"


def _formulas(rows: Sequence[Mapping[str, Any]], by: str, totals: Mapping[str, Any]) -> str:
    """Each queue's formula, or the site's."""
    if by == "queue":
        per_queue = {row["queue"]: row["service_level_formula"] for row in rows}
        return ", ".join(f"{queue}: {formula}" for queue, formula in per_queue.items()) or "-"
    return str(totals["service_level_formula"]) + " (each queue's own formula, summed)"


def _aligned(header: list[str], body: list[list[str]], names: Sequence[str]) -> list[str]:
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    text = {"interval_start", "queue", "site", "agent", "paused_by_reason", "abandoned_at", "caller_number"}
    text |= {"caller_name", "answered_later_at"}

    def line(values: Sequence[str]) -> str:
        parts = [
            value.ljust(width) if name in text else value.rjust(width)
            for value, width, name in zip(values, widths, names, strict=True)
        ]
        return "  ".join(parts).rstrip()

    return [line(header), *(line(values) for values in body)]


# -- abandoned callers to call back ----------------------------------------------------------


def abandoned_csv(document: Mapping[str, Any]) -> str:
    """One header row (the column names), then one row per caller, newest first."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    columns = document["columns"]
    writer.writerow(columns)
    for row in document["callers"]:
        writer.writerow([_abandoned_csv_value(row[name]) for name in columns])
    return out.getvalue()


def _abandoned_csv_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{round(value, 3):g}"
    return csv_value(value)


ABANDONED_HEADINGS = {
    "abandoned_at": "abandoned at",
    "queue": "queue",
    "caller_number": "number",
    "caller_name": "name",
    "wait_s": "waited",
    "later_calls": "called again",
    "answered_later_at": "answered since",
}


def abandoned_table(document: Mapping[str, Any]) -> str:
    """The callers for people: newest first, when each was answered since ("-": call back)."""
    shown = list(ABANDONED_HEADINGS)
    zone = f"times in {document['timezone']}"
    lines = [
        f"Abandoned callers to call back: site {document['site']}, calls that entered from "
        f"{document['from']} to {document['to']}, newest first",
        zone + '; "answered since" is the first answer of a later call from the same number ("-": call back)',
    ]
    body = [[_abandoned_cell(name, row[name]) for name in shown] for row in document["callers"]]
    lines += _aligned([ABANDONED_HEADINGS[name] for name in shown], body, shown)
    if not body:
        lines.append("(no abandoned caller with a number in this range)")
    return "\n".join(lines) + "\n"


def _abandoned_cell(name: str, value: Any) -> str:
    if value is None or value == "":
        return "-"
    if name.endswith("_at"):  # 2026-10-25T02:13:45.5+01:00 -> 2026-10-25 02:13:45+01:00
        day, _, clock = str(value).partition("T")
        return f"{day} {clock[:8]}{clock[-6:]}"
    if name == "wait_s":
        return duration(value)
    return str(value)
