"""Report intervals on the local clock: times as users write them, and the boundaries of
15-minute, 30-minute, hourly and daily intervals in a time zone, across DST changes.

An interval starts where the wall clock of the report's time zone shows a multiple of its
length (hh:00, hh:15, ... for 15m; midnight for 1d), so on a day the clocks go back the
repeated hour has intervals twice (02:00+02:00 and 02:00+01:00 in Europe/Berlin), and on a
day they go forward the skipped wall times have none (the interval before the gap ends
where the gap ends). Every instant here is an aware datetime in UTC.
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

# Interval name -> minutes; the names are the CLI's and the API's contract.
INTERVALS: dict[str, int] = {"15m": 15, "30m": 30, "1h": 60, "1d": 1440}
DAY_MINUTES = 1440
MAX_INTERVALS = 10_000  # a year of hourly intervals; more is one report too many
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 1, 1, tzinfo=UTC)
# What `--from` / `--to` (and the API's from / to) accept: a date, or a date and a time of
# day, with an optional UTC offset (Z or +hh:mm). openapi.yaml gives the same pattern.
TIME_PATTERN = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?(Z|[+-][0-9]{2}:[0-9]{2})?)?"
)
TIME_FORMS = "YYYY-MM-DD, YYYY-MM-DDThh:mm[:ss[.ffffff]] or either with Z or +hh:mm"


class TimeInputError(ValueError):
    """A time a user gave that cannot be read; the message says what is expected."""


@dataclass(frozen=True, slots=True)
class Interval:
    """[start, end) in UTC."""

    start: datetime
    end: datetime


def parse_time(text: str, zone: ZoneInfo) -> datetime:
    """A user's time as an instant in UTC; one without an offset is a wall time in ``zone``
    (a repeated wall time is its first occurrence, a skipped one is refused)."""
    if not TIME_PATTERN.fullmatch(text):
        raise TimeInputError(f"expected ISO 8601: {TIME_FORMS}")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise TimeInputError(f"not a valid date or time ({exc})") from None
    out_of_range = TimeInputError("expected a time from 1970-01-01T00:00Z, before 9999-01-01T00:00Z")
    if not EARLIEST.year <= parsed.year < LATEST.year:  # before converting: year 1 - 1 h overflows
        raise out_of_range
    if parsed.tzinfo is None:
        local = parsed.replace(tzinfo=zone)
        if _wall(local.astimezone(UTC), zone) != parsed:
            raise TimeInputError(f"{zone.key} skips this wall time (clocks go forward): give a UTC offset")
        parsed = local
    instant = parsed.astimezone(UTC)
    if not EARLIEST <= instant < LATEST:
        raise out_of_range
    return instant


def intervals(start: datetime, end: datetime, minutes: int, zone: ZoneInfo) -> list[Interval]:
    """The intervals of ``minutes`` on ``zone``'s clock that cover [start, end); the first and
    the last are cut at ``start`` and ``end`` when those are not on a boundary."""
    points = boundaries(start, end, minutes, zone)
    return [Interval(a, b) for a, b in itertools.pairwise(points)]


def too_many(start: datetime, end: datetime, minutes: int) -> bool:
    """Whether [start, end) holds more than ``MAX_INTERVALS`` (told before any is computed:
    a DST change moves the count by one or two at most)."""
    return (end - start) / timedelta(minutes=minutes) > MAX_INTERVALS - 2


def boundaries(start: datetime, end: datetime, minutes: int, zone: ZoneInfo) -> list[datetime]:
    """``start``, every instant strictly between where ``zone``'s clock shows an interval
    boundary, and ``end``, in order."""
    points = {start, end}
    day = _wall(start, zone).date() - timedelta(days=1)
    last = _wall(end, zone).date() + timedelta(days=1)
    while day <= last:
        for wall in _walls(day, minutes):
            found = instants(wall, zone)
            for instant in found[:1] if minutes == DAY_MINUTES else found:
                if start < instant < end:
                    points.add(instant)
        day += timedelta(days=1)
    return sorted(points)


def _walls(day: date, minutes: int) -> Iterator[datetime]:
    midnight = datetime.combine(day, time())
    for offset in range(0, DAY_MINUTES, minutes):
        yield midnight + timedelta(minutes=offset)


def instants(wall: datetime, zone: ZoneInfo) -> list[datetime]:
    """The instants (UTC) at which ``zone``'s clock shows the naive ``wall``: one; two in the
    hour the clocks go back; none in the hour they skip, where the gap's end stands in."""
    found = sorted(
        {
            candidate
            for fold in (0, 1)
            if _wall(candidate := wall.replace(tzinfo=zone, fold=fold).astimezone(UTC), zone) == wall
        }
    )
    return found or [_gap_end(wall, zone)]


def _gap_end(wall: datetime, zone: ZoneInfo) -> datetime:
    """The first instant after the clocks skipped ``wall`` (the transition, to the second)."""
    # PEP 495: in a gap, fold=1 reads the wall time with the offset after the change (an
    # instant before it), fold=0 with the offset before (an instant after it).
    low = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    high = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    after = high.astimezone(zone).utcoffset()
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        middle = middle.replace(microsecond=0)
        if middle.astimezone(zone).utcoffset() == after:
            high = middle
        else:
            low = middle
    return high


def _wall(instant: datetime, zone: ZoneInfo) -> datetime:
    return instant.astimezone(zone).replace(tzinfo=None)


def locate(points: Sequence[datetime], instant: datetime) -> int:
    """The index of the interval (between ``points[i]`` and ``points[i + 1]``) holding ``instant``."""
    return bisect.bisect_right(points, instant) - 1


def overlaps(points: Sequence[datetime], start: datetime, end: datetime) -> Iterator[tuple[int, float]]:
    """(interval index, seconds) of [start, end) in each interval it overlaps, clipped to the
    report's range: how a state's time is split across interval boundaries."""
    first = max(locate(points, start), 0)
    for index in range(first, len(points) - 1):
        low, high = points[index], points[index + 1]
        if low >= end:
            break
        seconds = (min(end, high) - max(start, low)).total_seconds()
        if seconds > 0:
            yield index, seconds


def iso(instant: datetime, zone: ZoneInfo) -> str:
    """ISO 8601 with the offset ``zone`` has at that instant."""
    return instant.astimezone(zone).isoformat()
