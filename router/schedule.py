"""Business hours: whether a queue is open at an instant, why, and until when. Pure: no I/O.

A queue's ``hours`` (docs/routing.md, Business hours) give weekly opening hours in its time
zone, holidays, one-off overrides and the dialplan target for callers who arrive while it
is closed. A supervisor may override all of that for a while (the API's schedule override,
kept in Redis); ``queue_status`` takes that too.

How wall-clock times become instants, which is what makes DST days and overnight hours
come out right:

- a range such as ``08:00-18:00`` belongs to the local date it starts on; ``22:00-06:00``
  (end at or before start) runs into the next date; ``24:00`` is the end of the date;
- each range on each date is turned into an interval of instants, both ends at their
  first occurrence: on the day clocks go back, ``22:00-02:30`` ends at the first 02:30 and
  does not reopen in the repeated hour; on the day they go forward, a wall time that does
  not exist (02:30 in Europe/Berlin) is read with the offset before the change (03:30);
- a holiday cancels the ranges that start on it (a night that began the evening before
  runs to its end);
- overrides (dates: whole local days, inclusive; date-times: from start, up to end) win
  over holidays and weekly hours; of two that cover an instant, the later one listed wins.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import cache
from typing import Annotated, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
RANGE_PATTERN = r"^([01]\d|2[0-3]):[0-5]\d-(([01]\d|2[0-3]):[0-5]\d|24:00)$"
TimeRange = Annotated[str, Field(pattern=RANGE_PATTERN, description="HH:MM-HH:MM, local time")]
TARGET_PATTERN = r"^[\w.-]+,[\w*#+.-]+,\d+$"
HORIZON_DAYS = 400  # how far ahead "until when" looks for the next change
State = Literal["open", "closed"]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _seconds(text: str) -> int:
    hours, minutes = text.split(":")
    return int(hours) * 3600 + int(minutes) * 60


class ScheduleOverride(_Frozen):
    """Open or closed from ``start`` to ``end``: dates cover whole local days (both
    included), date-times run from start up to end (local time, no UTC offset)."""

    start: date | datetime
    end: date | datetime
    state: State
    reason: str = Field(default="", max_length=200)

    @field_validator("start", "end")
    @classmethod
    def _local(cls, value: date | datetime) -> date | datetime:
        if isinstance(value, datetime) and value.tzinfo is not None:
            raise ValueError("give the local time without a UTC offset: the schedule's timezone applies")
        return value

    @model_validator(mode="after")
    def _in_order(self) -> Self:
        if self.ends <= self.begins:
            raise ValueError(f"override end {self.end} is not after its start {self.start}")
        return self

    @property
    def begins(self) -> datetime:
        return _wall(self.start, end=False)

    @property
    def ends(self) -> datetime:
        return _wall(self.end, end=True)


def _wall(value: date | datetime, *, end: bool) -> datetime:
    """A date as a local wall time: its midnight, or the next one for an end."""
    if isinstance(value, datetime):
        return value
    return datetime.combine(value + timedelta(days=1 if end else 0), time())


class BusinessHours(_Frozen):
    """When a queue takes calls, and where callers go while it does not."""

    timezone: str | None = Field(
        default=None, description="IANA time zone of the hours (default: the site's `timezone`, else UTC)"
    )
    weekly: dict[Day, tuple[TimeRange, ...]] | None = Field(
        default=None,
        description="opening hours per weekday (mon..sun: list of HH:MM-HH:MM); a day not listed is closed; "
        "unset: open all week",
    )
    holidays: tuple[date, ...] = Field(default=(), description="dates (YYYY-MM-DD) closed all day")
    overrides: tuple[ScheduleOverride, ...] = Field(
        default=(), description="one-off open or closed periods: {start, end, state: open|closed, reason}"
    )
    closed_target: str = Field(
        pattern=TARGET_PATTERN,
        description="dialplan context,exten,priority for callers who arrive while closed",
    )
    on_close: Literal["keep", "send_to_closed"] = Field(
        default="keep",
        description="calls waiting when the queue closes: keep serving them, or send them to closed_target",
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str | None) -> str | None:
        if name is not None:
            zone(name)
        return name

    @field_validator("weekly")
    @classmethod
    def _ranges_not_empty(cls, weekly: dict[Day, tuple[str, ...]] | None) -> dict[Day, tuple[str, ...]] | None:
        for day, ranges in (weekly or {}).items():
            for text in ranges:
                start, end = text.split("-")
                if start == end:
                    raise ValueError(f"{day}: {text} is empty; for a whole day write 00:00-24:00")
        return weekly

    # Weekday (0 = Monday) -> (start, end) seconds of the day; end <= start runs overnight.
    _ranges: dict[int, tuple[tuple[int, int], ...]] = PrivateAttr(default_factory=dict)

    def model_post_init(self, context: object) -> None:
        if self.weekly is None:
            self._ranges.update({weekday: ((0, 86400),) for weekday in range(7)})
            return
        for day, ranges in self.weekly.items():
            pairs = (text.split("-") for text in ranges)
            self._ranges[DAYS.index(day)] = tuple((_seconds(a), _seconds(b)) for a, b in pairs)

    @property
    def zone(self) -> ZoneInfo:
        return zone(self.timezone or "UTC")

    def with_default_zone(self, name: str | None) -> BusinessHours:
        """These hours, in ``name`` unless they name their own time zone."""
        if self.timezone is not None or name is None:
            return self
        return BusinessHours.model_validate(self.model_dump() | {"timezone": name})

    def intervals_of(self, day: date) -> Iterator[tuple[float, float]]:
        """The opening intervals (instants) of the ranges that start on local ``day``."""
        if day in self.holidays:
            return
        midnight = datetime.combine(day, time())
        for start, end in self._ranges.get(day.weekday(), ()):
            length = end - start if end > start else end + 86400 - start
            begins = midnight + timedelta(seconds=start)
            yield self.instant(begins), self.instant(begins + timedelta(seconds=length))

    def instant(self, wall: datetime) -> float:
        """A local wall time as Unix seconds, at its first occurrence (fold 0)."""
        return wall.replace(tzinfo=self.zone, fold=0).timestamp()

    def local_date(self, at: float) -> date:
        return datetime.fromtimestamp(at, self.zone).date()


@cache
def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``; ValueError (for a configuration message) if unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a directory such as "Europe"
        raise ValueError(
            f"{name!r} is not a time zone this machine knows: expected an IANA name such as Europe/Berlin or UTC"
        ) from None


@dataclass(frozen=True, slots=True)
class ManualOverride:
    """A supervisor's override (the API's, kept in Redis): ``state`` until ``until`` (None:
    until cleared)."""

    state: State
    until: float | None
    reason: str
    set_at: float

    def active(self, at: float) -> bool:
        return self.until is None or at < self.until


@dataclass(frozen=True, slots=True)
class QueueStatus:
    """Open or closed now; why (``reason``); until when (None: no change ahead)."""

    open: bool
    reason: str
    until: float | None

    def as_json(self) -> dict[str, object]:
        return {"state": "open" if self.open else "closed", "reason": self.reason, "until": self.until}


def scheduled(hours: BusinessHours, at: float) -> tuple[bool, str]:
    """Whether ``hours`` has the queue open at ``at`` (Unix seconds), and why."""
    for override in reversed(hours.overrides):
        if hours.instant(override.begins) <= at < hours.instant(override.ends):
            why = f"override ({override.reason})" if override.reason else "override"
            return override.state == "open", why
    today = hours.local_date(at)
    for day in (today - timedelta(days=1), today):
        if any(begins <= at < ends for begins, ends in hours.intervals_of(day)):
            return True, "opening hours"
    return False, "holiday" if today in hours.holidays else "outside opening hours"


def is_open(hours: BusinessHours | None, at: float, manual: ManualOverride | None = None) -> bool:
    """Whether the queue takes calls at ``at``: a supervisor's active override, else its hours
    (a queue without hours is always open)."""
    if manual is not None and manual.active(at):
        return manual.state == "open"
    return hours is None or scheduled(hours, at)[0]


def next_change(hours: BusinessHours, at: float, horizon_days: int = HORIZON_DAYS) -> float | None:
    """The first instant after ``at`` at which ``hours`` opens or closes the queue (None:
    none within ``horizon_days``)."""
    now_open = scheduled(hours, at)[0]
    today = hours.local_date(at)
    bounds = {
        hours.instant(wall) for override in hours.overrides for wall in (override.begins, override.ends)
    }
    for offset in range(-1, horizon_days + 1):
        day = today + timedelta(days=offset)
        bounds.add(hours.instant(datetime.combine(day, time())))
        for interval in hours.intervals_of(day):
            bounds.update(interval)
    for bound in sorted(b for b in bounds if b > at):
        if scheduled(hours, bound)[0] != now_open:
            return bound
    return None


def queue_status(hours: BusinessHours | None, at: float, manual: ManualOverride | None = None) -> QueueStatus:
    """Open or closed at ``at``, why and until when, as the API shows it."""
    if manual is not None and manual.active(at):
        why = "supervisor override" + (f" ({manual.reason})" if manual.reason else "")
        return QueueStatus(manual.state == "open", why, manual.until)
    if hours is None:
        return QueueStatus(True, "no business hours configured", None)
    now_open, why = scheduled(hours, at)
    return QueueStatus(now_open, why, next_change(hours, at))
