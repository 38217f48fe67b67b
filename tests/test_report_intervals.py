"""Report intervals on the local clock (workers/reports/intervals.py), and the pure figures:
DST in both directions, zones with half- and quarter-hour offsets, times as users type them,
state time split at boundaries, and which call counts as what."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workers.reports.figures import AgentTally, CallFacts, CallTally
from workers.reports.intervals import (
    INTERVALS,
    TimeInputError,
    boundaries,
    instants,
    intervals,
    iso,
    locate,
    overlaps,
    parse_time,
)
from workers.reports.render import HEADINGS
from workers.reports.report import COLUMNS

BERLIN = ZoneInfo("Europe/Berlin")
ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Asia/Kolkata",  # +05:30
    "Asia/Kathmandu",  # +05:45
    "America/St_Johns",  # -03:30, with DST
    "Australia/Lord_Howe",  # DST of 30 minutes
    "Pacific/Chatham",  # +12:45 / +13:45
    "America/Santiago",  # clocks change at midnight
]


def local(text: str, zone: ZoneInfo = BERLIN) -> datetime:
    return parse_time(text, zone)


def span(start: str, end: str, interval: str, zone: ZoneInfo = BERLIN) -> list[tuple[str, str]]:
    found = intervals(local(start, zone), local(end, zone), INTERVALS[interval], zone)
    return [(iso(i.start, zone), iso(i.end, zone)) for i in found]


def test_the_hour_the_clocks_go_back_has_intervals_twice() -> None:
    assert span("2026-10-25T01:00", "2026-10-25T04:00", "1h") == [
        ("2026-10-25T01:00:00+02:00", "2026-10-25T02:00:00+02:00"),
        ("2026-10-25T02:00:00+02:00", "2026-10-25T02:00:00+01:00"),
        ("2026-10-25T02:00:00+01:00", "2026-10-25T03:00:00+01:00"),
        ("2026-10-25T03:00:00+01:00", "2026-10-25T04:00:00+01:00"),
    ]
    assert len(span("2026-10-25", "2026-10-26", "15m")) == 100
    assert len(span("2026-10-25", "2026-10-26", "30m")) == 50
    days = intervals(local("2026-10-24"), local("2026-10-27"), INTERVALS["1d"], BERLIN)
    assert [(i.end - i.start) / timedelta(hours=1) for i in days] == [24, 25, 24]


def test_the_hour_the_clocks_skip_has_none() -> None:
    assert span("2026-03-29T01:00", "2026-03-29T04:00", "1h") == [
        ("2026-03-29T01:00:00+01:00", "2026-03-29T03:00:00+02:00"),  # one hour of real time
        ("2026-03-29T03:00:00+02:00", "2026-03-29T04:00:00+02:00"),
    ]
    assert len(span("2026-03-29", "2026-03-30", "15m")) == 92
    days = intervals(local("2026-03-28"), local("2026-03-30"), INTERVALS["1d"], BERLIN)
    assert [(i.end - i.start) / timedelta(hours=1) for i in days] == [24, 23]


def test_a_day_whose_midnight_does_not_exist_starts_when_the_clocks_resume() -> None:
    santiago = ZoneInfo("America/Santiago")  # 2026-09-06: 00:00 -04 becomes 01:00 -03
    days = span("2026-09-05", "2026-09-08", "1d", santiago)
    assert days[1] == ("2026-09-06T01:00:00-03:00", "2026-09-07T00:00:00-03:00")


def test_half_hour_zones_align_to_their_own_clock() -> None:
    kolkata = ZoneInfo("Asia/Kolkata")
    assert span("2026-10-24T10:10", "2026-10-24T12:00", "1h", kolkata) == [
        ("2026-10-24T10:10:00+05:30", "2026-10-24T11:00:00+05:30"),  # cut at --from
        ("2026-10-24T11:00:00+05:30", "2026-10-24T12:00:00+05:30"),
    ]


def test_times_as_users_write_them() -> None:
    assert local("2026-10-25") == datetime(2026, 10, 24, 22, tzinfo=UTC)
    assert local("2026-10-25T02:30") == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # the first 02:30
    assert local("2026-10-25T02:30+01:00") == datetime(2026, 10, 25, 1, 30, tzinfo=UTC)  # the second
    assert local("2026-10-25T08:00Z") == datetime(2026, 10, 25, 8, tzinfo=UTC)
    assert local("2026-10-25T08:00:01.25") == datetime(2026, 10, 25, 7, 0, 1, 250000, tzinfo=UTC)
    for text, problem in [
        ("25.10.2026", "expected ISO 8601"),
        ("2026-10-25 08:00", "expected ISO 8601"),  # the API's pattern has no space
        ("2026-10-25T08", "expected ISO 8601"),
        ("\uff12\uff10\uff12\uff16-10-25", "expected ISO 8601"),  # fullwidth digits: not [0-9]
        ("2026-10-25\n", "expected ISO 8601"),
        ("2026-02-29", "not a valid date"),
        ("2026-10-25T24:00", "not a valid date"),
        ("2026-03-29T02:15", "Europe/Berlin skips this wall time"),
        ("0001-01-01T00:00+01:00", "expected a time from 1970"),
        ("9999-12-31T23:59-05:00", "expected a time from 1970"),
    ]:
        with pytest.raises(TimeInputError, match=problem):
            local(text)


def test_state_time_is_split_at_the_boundaries_and_clipped_to_the_range() -> None:
    points = boundaries(local("2026-10-25T00:00"), local("2026-10-25T03:00"), 60, BERLIN)
    start, end = datetime(2026, 10, 24, 21, 30, tzinfo=UTC), datetime(2026, 10, 25, 0, 15, tzinfo=UTC)
    assert list(overlaps(points, start, end)) == [(0, 3600.0), (1, 3600.0), (2, 900.0)]
    assert list(overlaps(points, points[-1], points[-1] + timedelta(hours=1))) == []
    assert locate(points, points[1]) == 1 and locate(points, points[1] - timedelta(microseconds=1)) == 0


def facts(outcome: str, wait: float, *, answered: bool = False, flag: bool = False) -> CallFacts:
    return CallFacts(
        queue="q",
        agent_id="a1" if answered else "",
        entered_at=datetime(2026, 10, 25, tzinfo=UTC),
        outcome=outcome,
        answered=answered,
        wait_s=wait,
        talk_s=60.0 if answered else 0.0,
        wrapup_s=None,
        sl_threshold_s=20.0,
        answered_within_threshold=answered and flag,
        abandoned_within_threshold=outcome == "abandoned" and flag,
    )


def test_which_call_counts_as_what() -> None:
    assert facts("abandoned", 5, flag=True).short_abandon
    assert not facts("abandoned", 5, flag=False).short_abandon  # the record's flag decides
    assert facts("closed_by_resync", 12).abandoned and facts("closed_by_resync", 12).short_abandon
    resync_answered = facts("closed_by_resync", 12, answered=True, flag=True)
    assert not resync_answered.abandoned and not resync_answered.short_abandon
    for outcome in ("overflowed", "pbx_restart"):
        assert not facts(outcome, 5).abandoned
    tally = CallTally()
    tally.add(facts("transferred", 10, answered=True, flag=True), "answered_within_over_answered")
    tally.add(facts("closed_by_resync", 30), "answered_within_over_answered")
    figures = tally.figures("answered_within_over_answered")
    assert figures["service_level"] == 1.0 and figures["abandoned"] == 1 and figures["answered"] == 1
    assert figures["aht_s"] == 60.0 and figures["avg_wrapup_s"] is None


def test_callers_turned_away_while_closed_count_only_as_closed() -> None:
    """Business hours: a caller who arrived while its queue was closed was never offered."""
    formula = "answered_within_over_answered_and_abandoned_after_threshold"
    tally = CallTally()
    tally.add(facts("answered", 10, answered=True, flag=True), formula)
    tally.add(facts("abandoned", 30), formula)
    tally.add(facts("closed", 0), formula)
    tally.add(facts("closed", 0), formula)
    figures = tally.figures(formula)
    assert (figures["offered"], figures["closed"], figures["abandoned"]) == (2, 2, 1)
    assert figures["service_level"] == 0.5 and figures["abandon_rate"] == 0.5
    merged = CallTally()
    merged.merge(tally)
    assert merged.figures(formula)["closed"] == 2


def test_a_pause_without_a_reason_and_logged_out_time() -> None:
    tally = AgentTally()
    tally.add_state("paused", "", 30.0)
    tally.add_state("logged_out", "", 3600.0)
    assert tally.figures()["paused_by_reason"] == {"(none)": 30.0} and tally.figures()["logged_in_s"] == 30.0


def test_every_column_has_a_heading_in_the_table() -> None:
    shown = {name for columns in COLUMNS.values() for name in columns} - {"interval_end", "service_level_formula"}
    assert shown <= set(HEADINGS)


@settings(max_examples=60)
@given(
    zone_name=st.sampled_from(ZONES),
    start=st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)),
    hours=st.integers(min_value=1, max_value=72),
    interval=st.sampled_from(list(INTERVALS)),
)
def test_boundaries_are_every_instant_the_local_clock_shows_one(
    zone_name: str, start: datetime, hours: int, interval: str
) -> None:
    zone, minutes = ZoneInfo(zone_name), INTERVALS[interval]
    end = start + timedelta(hours=hours)
    points = boundaries(start, end, minutes, zone)
    assert points[0] == start and points[-1] == end
    assert all(a < b for a, b in itertools.pairwise(points))
    expected = set()
    minute = start.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while minute < end:  # every whole minute in the range, in UTC
        wall = minute.astimezone(zone)
        aligned = (wall.hour * 60 + wall.minute) % minutes == 0
        changed = (minute - timedelta(seconds=1)).astimezone(zone).utcoffset() != wall.utcoffset()
        naive = wall.replace(tzinfo=None)
        first = instants(naive, zone)[0] == minute
        if (aligned and (minutes < 1440 or first)) or (changed and _skipped_boundary(minute, zone, minutes)):
            expected.add(minute)
        minute += timedelta(minutes=1)
    assert set(points[1:-1]) == expected


def _skipped_boundary(instant: datetime, zone: ZoneInfo, minutes: int) -> bool:
    """At a forward jump, whether a boundary's wall time was skipped (it starts here instead)."""
    before = (instant - timedelta(seconds=1)).astimezone(zone).replace(tzinfo=None)
    after = instant.astimezone(zone).replace(tzinfo=None)
    wall = before.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while wall <= after:
        if (wall.hour * 60 + wall.minute) % minutes == 0 and wall != after:
            return True
        wall += timedelta(minutes=1)
    return False
