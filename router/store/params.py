"""What the stores take besides plain values: where an event stands, a new call, an
overflow move, what ingest knows of an AMI gap."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from router.domain import Affinity, QaPolicy, Requirements
from router.immutable import immutable


@immutable
class Position:
    """Where an event stands in its stream, for deduplication. Empty for timer work.

    ``part`` names the stream: the producer (envelope source) when the envelope carries a
    producer sequence, else the Kafka ``topic:partition``; ``offset`` is the sequence number
    or Kafka offset, ``session`` the producer session (0 for Kafka offsets).
    """

    part: str = ""
    offset: int = -1
    session: int = 0

    def args(self) -> list[str]:
        return [self.part, f"{self.session}:{self.offset}"]


NO_POSITION = Position()


@dataclass(frozen=True, slots=True)
class NewCall:
    """A call entering its first queue, with the queue's settings resolved."""

    call_id: str
    queue: str
    priority: int
    priority_explicit: bool
    requirements: Requirements | None
    channel: str
    entered_at: float
    relax_due: float | None
    overflow_due: float | None
    sl_threshold: float
    wrapup_s: float
    # For the call's record (docs/records.md): who called ('' unknown) and the requirements
    # in force as it enters (None: its own override, or none).
    caller_number: str = ""
    caller_name: str = ""
    requirements_in_force: Requirements | None = None
    qa: QaPolicy | None = None  # the queue's quality sampling (None: none)
    affinity: Affinity | None = None  # the agent it waits for first (router/affinity.py)
    last_agent_window_s: float | None = None  # its answering agent is remembered this long


@dataclass(frozen=True, slots=True)
class OverflowMove:
    """Where an overflowing call goes when its destination is another queue."""

    queue: str
    priority: int | None  # None: the call keeps the priority it set itself
    sl_threshold: float
    wrapup_s: float
    relax_due: float | None
    overflow_due: float | None
    max_hops: int = 5
    requirements_in_force: Requirements = ()  # the new queue's, as the call enters it
    qa: QaPolicy | None = None  # the new queue's quality sampling


@dataclass(frozen=True, slots=True)
class ResyncGap:
    """What ingest knows of an AMI gap: when it last saw Asterisk, and whether it restarted."""

    link_lost_at: float | None = None
    pbx_restart: bool = False


def qa_arg(policy: QaPolicy | None) -> str:
    """A queue's sampling as the call's hash keeps it: ``share minimum record`` ('' none)."""
    if policy is None or not policy.samples:
        return ""
    return f"{policy.sample_share!r} {policy.min_per_agent_per_day} {int(policy.record)}"


@dataclass(frozen=True, slots=True)
class Day:
    """One calendar day of the site: its label and the epoch seconds it starts and ends at."""

    label: str  # YYYY-MM-DD in the site's time zone
    start: float
    end: float


class SiteDays:
    """The site's calendar days in its time zone, for the per-day statistics.

    The scripts that count a queue's statistics also count them per day, in keys named by
    the day's label; which day a time falls in is worked out here (zoneinfo knows the
    zone's daylight-saving rules) and handed to the scripts as ``window``: the day of the
    event and the days either side, with their exact bounds, so that a script can file any
    time it handles (an event's, a wrap-up's scheduled end) under its own day.
    """

    def __init__(self, timezone: str = "UTC") -> None:
        self.timezone = timezone
        self.zone = ZoneInfo(timezone)
        self._cached: tuple[Day, str] | None = None

    def start_of(self, day: date) -> float:
        """The first instant of ``day``: local midnight, or the end of a clock change that
        skipped it (``fold=0`` takes the offset in force before the change)."""
        return datetime.combine(day, time(0), tzinfo=self.zone).timestamp()

    def day(self, at: float) -> Day:
        local = datetime.fromtimestamp(at, self.zone).date()
        return Day(local.isoformat(), self.start_of(local), self.start_of(local + timedelta(days=1)))

    def window(self, at: float) -> str:
        """The day of ``at`` and its neighbours as the scripts read them (``use_days`` in
        _lib.lua): ``label start end`` three times, earliest first."""
        cached = self._cached
        if cached is not None and cached[0].start <= at < cached[0].end:
            return cached[1]
        today = self.day(at)
        local = date.fromisoformat(today.label)
        days = [
            Day(d.isoformat(), self.start_of(d), self.start_of(d + timedelta(days=1)))
            for d in (local - timedelta(days=1), local, local + timedelta(days=1))
        ]
        text = " ".join(f"{d.label} {_epoch(d.start)} {_epoch(d.end)}" for d in days)
        self._cached = (today, text)
        return text


def _epoch(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)
