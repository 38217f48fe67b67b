"""A report's parameters, as the CLI and the API take them, checked in one place.

Each problem is a ``ReportInputError`` naming the parameter as the user wrote it
(``--from`` on the command line, ``from`` in a query string), the value given and what is
expected: `acd report` prints it and exits 2, the API answers 400 (404 for a queue or an
agent that is not configured).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal
from zoneinfo import ZoneInfo

from router.domain import SlFormula
from router.errors import AcdError
from router.records import OUTCOMES
from router.settings import AcdSettings, known_time_zone
from workers.reports.intervals import INTERVALS, MAX_INTERVALS, TimeInputError, parse_time, too_many

GROUPINGS = ("queue", "agent", "site")
FORMATS = ("table", "csv", "json")
DEFAULT_INTERVAL = "15m"
DEFAULT_BY = "queue"
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000

ZoneSource = Literal["requested", "site", "default"]
Flag = Callable[[str], str]  # a parameter's name as its user writes it: "--from" or "from"


class ReportInputError(AcdError):
    """A report parameter is wrong; ``code`` is the API's error code for it."""

    def __init__(self, message: str, code: str = "invalid_query") -> None:
        super().__init__(message)
        self.code = code


def cli_flag(name: str) -> str:
    return f"--{name}"


def query_parameter(name: str) -> str:
    return name


@dataclass(frozen=True, slots=True)
class ReportScope:
    """What a report may name: the site, its configured queues (and their service-level
    formulas), its configured agents, and its time zone."""

    site: str
    formulas: Mapping[str, SlFormula]
    agents: frozenset[str]
    timezone: str | None = None

    @classmethod
    def from_settings(cls, settings: AcdSettings) -> ReportScope:
        return cls(
            site=settings.site,
            formulas={queue.name: queue.service_level.formula for queue in settings.queues},
            agents=frozenset(agent.id for agent in settings.agents),
            timezone=settings.timezone,
        )


@dataclass(frozen=True, slots=True)
class RawReport:
    """The parameters of an interval report as given (strings; lists for the filters)."""

    start: str | None
    end: str | None
    interval: str | None = None
    by: str | None = None
    timezone: str | None = None
    queues: Sequence[str] = ()
    agents: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class ReportRequest:
    """An interval report to make: [start, end) in UTC, intervals on ``zone``'s clock."""

    start: datetime
    end: datetime
    interval: str
    by: str
    zone: ZoneInfo
    zone_source: ZoneSource
    queues: tuple[str, ...] = ()
    agents: tuple[str, ...] = ()

    @property
    def minutes(self) -> int:
        return INTERVALS[self.interval]


def choice(value: str | None, choices: Sequence[str], default: str, name: str, flag: Flag) -> str:
    """``value`` if it is one of ``choices`` (``default`` when absent)."""
    if value is None:
        return default
    if value not in choices:
        raise ReportInputError(f"{flag(name)} {value!r}: expected one of {', '.join(choices)}")
    return value


def zone(name: str | None, scope: ReportScope, flag: Flag) -> tuple[ZoneInfo, ZoneSource]:
    """The report's time zone: as asked, else the site's (``timezone`` setting), else UTC."""
    if name is not None:
        if not known_time_zone(name):
            raise ReportInputError(
                f"{flag('timezone')} {name!r}: not a known time zone; expected an IANA name such as "
                "Europe/Berlin or UTC"
            )
        return ZoneInfo(name), "requested"
    if scope.timezone is not None:
        return ZoneInfo(scope.timezone), "site"
    return ZoneInfo("UTC"), "default"


def instant(text: str | None, name: str, zone: ZoneInfo, flag: Flag) -> datetime:
    if text is None:
        raise ReportInputError(f"{flag(name)} is required: a time in ISO 8601, e.g. 2026-10-25T00:00")
    try:
        return parse_time(text, zone)
    except TimeInputError as exc:
        raise ReportInputError(f"{flag(name)} {text!r}: {exc}") from None


def names(values: Iterable[str]) -> tuple[str, ...]:
    """Repeated and comma-separated values, in order, once each; empty ones dropped."""
    found = [part.strip() for value in values for part in value.split(",")]
    return tuple(dict.fromkeys(part for part in found if part))


def known(values: Iterable[str], allowed: Iterable[str], what: str, flag: Flag) -> tuple[str, ...]:
    wanted = names(values)
    configured = sorted(allowed)
    for name in wanted:
        if name not in configured:
            raise ReportInputError(
                f"{flag(what)} {name!r} is not a configured {what}; configured: {configured}",
                f"unknown_{what}",
            )
    return wanted


def report_request(raw: RawReport, scope: ReportScope, flag: Flag) -> ReportRequest:
    """The report ``raw`` asks for, or the first ``ReportInputError`` found in it."""
    interval = choice(raw.interval, tuple(INTERVALS), DEFAULT_INTERVAL, "interval", flag)
    by = choice(raw.by, GROUPINGS, DEFAULT_BY, "by", flag)
    report_zone, source = zone(raw.timezone, scope, flag)
    start = instant(raw.start, "from", report_zone, flag)
    end = instant(raw.end, "to", report_zone, flag)
    if start >= end:
        raise ReportInputError(
            f"{flag('from')} {raw.start!r} is not before {flag('to')} {raw.end!r}: expected {flag('from')} "
            f"earlier than {flag('to')}"
        )
    if too_many(start, end, INTERVALS[interval]):
        raise ReportInputError(
            f"{flag('from')} {raw.start!r} to {flag('to')} {raw.end!r} holds more than {MAX_INTERVALS} "
            f"{interval} intervals: expected a shorter range or a longer {flag('interval')}"
        )
    if raw.agents and names(raw.agents) and by != "agent":
        raise ReportInputError(f"{flag('agent')} filters agent reports: expected {flag('by')} agent with it")
    if raw.queues and names(raw.queues) and by == "agent":
        raise ReportInputError(
            f"{flag('queue')} filters queue and site reports: expected {flag('by')} queue or site with it"
        )
    return ReportRequest(
        start=start,
        end=end,
        interval=interval,
        by=by,
        zone=report_zone,
        zone_source=source,
        queues=known(raw.queues, scope.formulas, "queue", flag),
        agents=known(raw.agents, scope.agents, "agent", flag),
    )


# -- finished calls (the API's /api/v1/reports/calls) -------------------------------------


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page of finished calls ends: the last call's (entered_at, call_id)."""

    entered_at: datetime
    call_id: str

    def encode(self) -> str:
        data = json.dumps([self.entered_at.isoformat(), self.call_id]).encode()
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str, flag: Flag) -> Cursor:
        problem = ReportInputError(
            f"{flag('cursor')} {text[:40]!r}: not a cursor of this API; expected the next_cursor of the "
            "previous page, unchanged"
        )
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            entered, call_id = json.loads(raw)
            at = datetime.fromisoformat(entered)
        except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
            raise problem from None
        if not isinstance(call_id, str) or at.tzinfo is None:
            raise problem
        return cls(at.astimezone(UTC), call_id)


@dataclass(frozen=True, slots=True)
class RawCalls:
    """The parameters of a page of finished calls as given."""

    start: str | None = None
    end: str | None = None
    timezone: str | None = None
    queues: Sequence[str] = ()
    agents: Sequence[str] = ()
    outcomes: Sequence[str] = ()
    limit: str | None = None
    cursor: str | None = None


@dataclass(frozen=True, slots=True)
class CallsRequest:
    """Finished calls that entered in [start, end), filtered, after ``cursor``."""

    zone: ZoneInfo
    start: datetime | None = None
    end: datetime | None = None
    queues: tuple[str, ...] = ()
    agents: tuple[str, ...] = ()
    outcomes: tuple[str, ...] = ()
    limit: int = DEFAULT_LIMIT
    after: Cursor | None = field(default=None)


def _limit(text: str | None, flag: Flag) -> int:
    if text is None:
        return DEFAULT_LIMIT
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise ReportInputError(f"{flag('limit')} {text!r}: expected a whole number from 1 to {MAX_LIMIT}")
    return int(text)


def calls_request(raw: RawCalls, scope: ReportScope, flag: Flag) -> CallsRequest:
    call_zone, _ = zone(raw.timezone, scope, flag)
    start = None if raw.start is None else instant(raw.start, "from", call_zone, flag)
    end = None if raw.end is None else instant(raw.end, "to", call_zone, flag)
    if start is not None and end is not None and start >= end:
        raise ReportInputError(
            f"{flag('from')} {raw.start!r} is not before {flag('to')} {raw.end!r}: expected {flag('from')} "
            f"earlier than {flag('to')}"
        )
    outcomes = names(raw.outcomes)
    for outcome in outcomes:
        if outcome not in OUTCOMES:
            raise ReportInputError(
                f"{flag('outcome')} {outcome!r}: expected one of {', '.join(sorted(OUTCOMES))}"
            )
    return CallsRequest(
        zone=call_zone,
        start=start,
        end=end,
        queues=known(raw.queues, scope.formulas, "queue", flag),
        agents=known(raw.agents, scope.agents, "agent", flag),
        outcomes=outcomes,
        limit=_limit(raw.limit, flag),
        after=None if raw.cursor is None else Cursor.decode(raw.cursor, flag),
    )


# -- abandoned callers to call back (`acd report --abandoned`, /api/v1/reports/abandoned) --

NEEDS_CALLBACK = ("true", "false")


@dataclass(frozen=True, slots=True)
class RawAbandoned:
    """The parameters of the list of abandoned callers as given."""

    start: str | None
    end: str | None
    timezone: str | None = None
    queues: Sequence[str] = ()
    needs_callback: str | None = None
    limit: str | None = None
    cursor: str | None = None


@dataclass(frozen=True, slots=True)
class AbandonedRequest:
    """Callers who abandoned a call that entered in [start, end), newest first, after ``after``;
    ``needs_callback`` None for all, True for those not answered since, False for those answered;
    ``limit`` None for every one (the command line)."""

    start: datetime
    end: datetime
    zone: ZoneInfo
    zone_source: ZoneSource
    queues: tuple[str, ...] = ()
    needs_callback: bool | None = None
    limit: int | None = DEFAULT_LIMIT
    after: Cursor | None = None


def abandoned_request(
    raw: RawAbandoned, scope: ReportScope, flag: Flag, *, default_limit: int | None = DEFAULT_LIMIT
) -> AbandonedRequest:
    """The list ``raw`` asks for, or the first ``ReportInputError`` found in it."""
    list_zone, source = zone(raw.timezone, scope, flag)
    start = instant(raw.start, "from", list_zone, flag)
    end = instant(raw.end, "to", list_zone, flag)
    if start >= end:
        raise ReportInputError(
            f"{flag('from')} {raw.start!r} is not before {flag('to')} {raw.end!r}: expected {flag('from')} "
            f"earlier than {flag('to')}"
        )
    needs = choice(raw.needs_callback, NEEDS_CALLBACK, "", "needs_callback", flag)
    return AbandonedRequest(
        start=start,
        end=end,
        zone=list_zone,
        zone_source=source,
        queues=known(raw.queues, scope.formulas, "queue", flag),
        needs_callback=None if not needs else needs == "true",
        limit=default_limit if raw.limit is None else _limit(raw.limit, flag),
        after=None if raw.cursor is None else Cursor.decode(raw.cursor, flag),
    )
