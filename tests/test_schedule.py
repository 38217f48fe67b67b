"""Business hours (router/schedule.py): open or closed at an instant, why, and until when."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from router.schedule import BusinessHours, ManualOverride, is_open, next_change, queue_status, scheduled
from router.settings import AcdSettings

BERLIN = ZoneInfo("Europe/Berlin")
TARGET = "acd-closed,billing,1"


def at(text: str, zone: ZoneInfo = BERLIN, fold: int = 0) -> float:
    """Local wall time ``YYYY-MM-DD HH:MM`` (first occurrence unless ``fold``) as Unix seconds."""
    return datetime.fromisoformat(text).replace(tzinfo=zone, fold=fold).timestamp()


def local(t: float | None, zone: ZoneInfo = BERLIN) -> str:
    assert t is not None
    return datetime.fromtimestamp(t, zone).strftime("%Y-%m-%d %H:%M %Z")


def hours(**fields: Any) -> BusinessHours:
    return BusinessHours(timezone="Europe/Berlin", closed_target=TARGET, **fields)


OFFICE = hours(
    weekly={day: ("08:00-18:00",) for day in ("mon", "tue", "wed", "thu", "fri")} | {"sat": ("09:00-12:00",)}
)


# 2026-03-02 is a Monday.
@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ("2026-03-02 07:59", (False, "outside opening hours")),
        ("2026-03-02 08:00", (True, "opening hours")),
        ("2026-03-02 17:59", (True, "opening hours")),
        ("2026-03-02 18:00", (False, "outside opening hours")),
        ("2026-03-07 11:00", (True, "opening hours")),  # Saturday
        ("2026-03-08 11:00", (False, "outside opening hours")),  # Sunday: not listed, closed
    ],
)
def test_weekly_hours_open_from_start_up_to_end(when: str, expected: tuple[bool, str]) -> None:
    assert scheduled(OFFICE, at(when)) == expected


def test_next_change_is_the_next_opening_or_closing() -> None:
    assert local(next_change(OFFICE, at("2026-03-02 09:00"))) == "2026-03-02 18:00 CET"
    assert local(next_change(OFFICE, at("2026-03-02 18:00"))) == "2026-03-03 08:00 CET"
    # Saturday noon to Monday morning: Sunday's midnight changes nothing.
    assert local(next_change(OFFICE, at("2026-03-07 12:30"))) == "2026-03-09 08:00 CET"


def test_split_day_closes_for_lunch() -> None:
    split = hours(weekly={"mon": ("08:00-12:00", "13:00-17:00")})
    assert not is_open(split, at("2026-03-02 12:30"))
    assert local(next_change(split, at("2026-03-02 12:30"))) == "2026-03-02 13:00 CET"


NIGHTS = hours(weekly={"fri": ("22:00-06:00",), "sat": ("22:00-06:00",)})


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ("2026-03-06 21:59", False),  # Friday
        ("2026-03-06 22:00", True),
        ("2026-03-07 03:00", True),  # Friday's night, after midnight
        ("2026-03-07 06:00", False),
        ("2026-03-07 23:00", True),  # Saturday's night
        ("2026-03-08 05:59", True),  # ... into Sunday
        ("2026-03-08 23:00", False),  # no Sunday night
        ("2026-03-09 03:00", False),
    ],
)
def test_overnight_hours_run_into_the_next_day(when: str, expected: bool) -> None:
    assert is_open(NIGHTS, at(when)) is expected


def test_overnight_next_change_crosses_midnight() -> None:
    assert local(next_change(NIGHTS, at("2026-03-06 23:00"))) == "2026-03-07 06:00 CET"
    # Closed from Saturday 06:00 until Saturday's own night begins.
    assert local(next_change(NIGHTS, at("2026-03-07 07:00"))) == "2026-03-07 22:00 CET"


def test_whole_days_and_24_00() -> None:
    always = hours(weekly={day: ("00:00-24:00",) for day in ("mon", "tue")})
    assert is_open(always, at("2026-03-02 23:59"))
    assert is_open(always, at("2026-03-03 00:00"))
    # Monday and Tuesday back to back: the next change is Wednesday's midnight.
    assert local(next_change(always, at("2026-03-02 10:00"))) == "2026-03-04 00:00 CET"


def test_holidays_cancel_the_ranges_that_start_on_them() -> None:
    h = hours(weekly=OFFICE.weekly, holidays=["2026-12-24", "2026-12-25"])
    assert scheduled(h, at("2026-12-24 10:00")) == (False, "holiday")
    assert local(next_change(h, at("2026-12-24 10:00"))) == "2026-12-26 09:00 CET"  # Saturday's hours
    nights = hours(weekly={"thu": ("22:00-06:00",), "fri": ("22:00-06:00",)}, holidays=["2026-12-25"])
    # Thursday 24th's night began before the holiday: it runs to its end on the 25th ...
    assert is_open(nights, at("2026-12-25 05:00"))
    # ... and the holiday's own night (Friday 25th 22:00) does not happen.
    assert not is_open(nights, at("2026-12-25 23:00"))


def test_no_weekly_hours_means_open_all_week_except_holidays() -> None:
    h = hours(holidays=["2026-01-01"])
    assert is_open(h, at("2026-03-08 03:00"))
    assert scheduled(h, at("2026-01-01 12:00")) == (False, "holiday")
    assert local(next_change(h, at("2025-12-31 12:00"))) == "2026-01-01 00:00 CET"
    assert next_change(hours(), at("2026-03-08 03:00")) is None  # never changes


# Europe/Berlin: clocks go forward 2026-03-29 02:00 -> 03:00, back 2026-10-25 03:00 -> 02:00.


def test_spring_forward_day_is_an_hour_shorter() -> None:
    h = hours(weekly={"sun": ("01:00-05:00",)})
    opens, closes = at("2026-03-29 01:00"), next_change(h, at("2026-03-29 01:30"))
    assert local(closes) == "2026-03-29 05:00 CEST"
    assert closes is not None and closes - opens == 3 * 3600
    assert is_open(h, at("2026-03-29 03:30"))


def test_a_range_inside_the_skipped_hour_never_opens() -> None:
    h = hours(weekly={"sun": ("02:00-03:00",)})
    assert not any(is_open(h, at("2026-03-29 00:00") + minutes * 60) for minutes in range(0, 300, 5))


def test_fall_back_day_ends_at_the_first_occurrence_and_does_not_reopen() -> None:
    h = hours(weekly={"sat": ("22:00-02:30",)})
    first_0215 = at("2026-10-25 02:15", fold=0)
    second_0215 = at("2026-10-25 02:15", fold=1)
    assert second_0215 - first_0215 == 3600
    assert is_open(h, first_0215)
    assert not is_open(h, second_0215)  # the repeated hour: closed
    assert local(next_change(h, first_0215)) == "2026-10-25 02:30 CEST"


def test_office_hours_on_dst_days_keep_their_wall_clock() -> None:
    h = hours(weekly={"sun": ("08:00-18:00",)})
    for day in ("2026-03-29", "2026-10-25"):
        assert not is_open(h, at(f"{day} 07:59"))
        assert is_open(h, at(f"{day} 08:00"))
        assert not is_open(h, at(f"{day} 18:00"))
    assert local(next_change(h, at("2026-03-29 07:00"))) == "2026-03-29 08:00 CEST"


def test_overrides_win_over_hours_and_the_later_one_listed_wins() -> None:
    h = hours(
        weekly=OFFICE.weekly,
        holidays=["2026-12-24"],
        overrides=[
            {"start": "2026-12-24T09:00", "end": "2026-12-24T12:00", "state": "open", "reason": "last orders"},
            {"start": "2026-12-28", "end": "2026-12-30", "state": "closed", "reason": "inventory"},
            {"start": "2026-12-29T10:00", "end": "2026-12-29T11:00", "state": "open"},
        ],
    )
    assert scheduled(h, at("2026-12-24 10:00")) == (True, "override (last orders)")
    assert local(next_change(h, at("2026-12-24 10:00"))) == "2026-12-24 12:00 CET"
    assert scheduled(h, at("2026-12-28 10:00")) == (False, "override (inventory)")
    assert scheduled(h, at("2026-12-29 10:30")) == (True, "override")
    assert scheduled(h, at("2026-12-30 17:00")) == (False, "override (inventory)")  # the end date is included
    assert is_open(h, at("2026-12-31 09:00"))


def test_time_zone_decides_the_wall_clock() -> None:
    tokyo = BusinessHours(timezone="Asia/Tokyo", weekly={"mon": ("09:00-17:00",)}, closed_target=TARGET)
    assert is_open(tokyo, at("2026-03-02 09:30", ZoneInfo("Asia/Tokyo")))
    assert not is_open(tokyo, at("2026-03-02 09:30"))  # 09:30 in Berlin is 17:30 in Tokyo


def test_manual_override_wins_until_it_expires() -> None:
    t = at("2026-03-02 10:00")
    manual = ManualOverride("closed", t + 1800, "fire drill", t)
    assert not is_open(OFFICE, t, manual)
    assert is_open(OFFICE, t + 1800, manual)  # expired: the hours decide again
    status = queue_status(OFFICE, t, manual)
    assert status.as_json() == {"state": "closed", "reason": "supervisor override (fire drill)", "until": t + 1800}
    forever = ManualOverride("open", None, "", t)
    assert queue_status(OFFICE, at("2026-03-08 10:00"), forever).as_json() == {
        "state": "open",
        "reason": "supervisor override",
        "until": None,
    }
    assert queue_status(None, t).as_json() == {"state": "open", "reason": "no business hours configured", "until": None}
    assert queue_status(OFFICE, t).until == at("2026-03-02 18:00")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"weekly": {"mon": ("8:00-18:00",)}}, "should match pattern"),
        ({"weekly": {"mon": ("08:00-08:00",)}}, "is empty; for a whole day write 00:00-24:00"),
        ({"weekly": {"monday": ("08:00-18:00",)}}, "Input should be 'mon'"),
        ({"timezone": "Mars/Olympus"}, "not a time zone this machine knows"),
        ({"closed_target": "acd-closed"}, "should match pattern"),
        ({"overrides": [{"start": "2026-01-02", "end": "2026-01-01", "state": "closed"}]}, "is not after its start"),
        ({"overrides": [{"start": "2026-01-02T10:00+01:00", "end": "2026-01-03", "state": "closed"}]}, "without a UTC"),
        ({"on_close": "drop"}, "'keep' or 'send_to_closed'"),
    ],
)
def test_bad_hours_say_what_is_wrong(fields: dict[str, Any], message: str) -> None:
    base: dict[str, Any] = {"closed_target": TARGET} | fields
    with pytest.raises(ValidationError, match=message):
        BusinessHours(**base)


def test_hours_without_a_time_zone_take_the_sites() -> None:
    queues = [
        {"name": "billing", "hours": {"closed_target": TARGET}},
        {"name": "tokyo", "hours": {"closed_target": TARGET, "timezone": "Asia/Tokyo"}},
        {"name": "plain"},
    ]
    settings = AcdSettings(timezone="America/New_York", queues=queues)
    zones = {q.name: q.hours.timezone if q.hours else None for q in settings.queues}
    assert zones == {"billing": "America/New_York", "tokyo": "Asia/Tokyo", "plain": None}
    assert AcdSettings(queues=queues[:1]).queues[0].hours.zone.key == "UTC"  # type: ignore[union-attr]
