"""Per-day queue statistics (the wallboard's and the API's "today"), over a real redis-server:
the routing scripts count every event under the day it happened on in the site's time zone,
with the day's bounds worked out in Python (router/store/params.py, SiteDays), so a day rolls
over at local midnight, daylight-saving days included, and the all-time counters go on."""

from __future__ import annotations

import asyncio
import json
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from redis.asyncio import Redis

from router.domain import AgentConfig
from router.store import NO_POSITION, NewCall, RedisStateStore
from router.store.admin import AdminStore
from router.store.params import SiteDays

BERLIN = "Europe/Berlin"
SITE = "days"


def local(*fields: int, zone: str = BERLIN) -> float:
    """Epoch seconds of a wall-clock time in ``zone`` (the first of two, in a repeated hour)."""
    return datetime(*fields, tzinfo=ZoneInfo(zone)).timestamp()  # type: ignore[misc]


@pytest.fixture
async def store(redis: Redis) -> RedisStateStore:
    return RedisStateStore(redis, SITE, timezone=BERLIN)


async def login(store: RedisStateStore, agent_id: str, at: float) -> None:
    await store.upsert_agent(AgentConfig(id=agent_id), at)
    await store.agent_presence(agent_id, "available", "", at, NO_POSITION)


async def enqueue(store: RedisStateStore, call_id: str, at: float, *, wrapup: float = 0.0) -> None:
    call = NewCall(call_id, "q", 0, False, None, f"PJSIP/t-{call_id}", at, None, None, 20.0, wrapup)
    assert (await store.enqueue(call, NO_POSITION)).status == "queued"


async def answer(store: RedisStateStore, call_id: str, agent_id: str, at: float) -> None:
    reserved = await store.reserve(call_id, agent_id, f"o-{call_id}", at - 1, at + 10, json.dumps({}))
    assert reserved.status == "ok"
    assert (await store.agent_answered(call_id, agent_id, at, NO_POSITION)).status == "answered"


async def day(store: RedisStateStore, label: str) -> dict[str, float]:
    return (await store.day_stats(["q"], label))["q"]


# -- the calendar ------------------------------------------------------------------------------


def test_a_day_runs_from_local_midnight_to_local_midnight_daylight_saving_days_too() -> None:
    days = SiteDays(BERLIN)
    normal = days.day(local(2026, 3, 27, 12, 0))
    assert (normal.label, normal.start, normal.end) == ("2026-03-27", local(2026, 3, 27), local(2026, 3, 28))
    assert normal.end - normal.start == 24 * 3600
    spring = days.day(local(2026, 3, 29, 12, 0))  # clocks go from 02:00 to 03:00
    assert spring.label == "2026-03-29" and spring.end - spring.start == 23 * 3600
    autumn = days.day(local(2026, 10, 25, 23, 30))  # clocks go from 03:00 back to 02:00
    assert autumn.label == "2026-10-25" and autumn.end - autumn.start == 25 * 3600
    # 23:30 on the long day is 25.5 h after its start: a day of 24 h from midnight would
    # have filed it under the 26th.
    assert autumn.end - local(2026, 10, 25, 23, 30) == 1800


def test_a_day_whose_midnight_does_not_exist_starts_when_the_clocks_jump() -> None:
    # Cuba moves its clocks from 00:00 to 01:00: that day has no midnight.
    days = SiteDays("America/Havana")
    zone = ZoneInfo("America/Havana")
    march = [date(2026, 3, n) for n in range(1, 31)]
    jump = next(d for d in march if days.start_of(d + timedelta(days=1)) - days.start_of(d) == 23 * 3600)
    start = days.start_of(jump)
    assert datetime.fromtimestamp(start, zone).date() == jump
    assert datetime.fromtimestamp(start - 1, zone).date() < jump
    assert datetime.fromtimestamp(start, zone).hour == 1  # 00:00 never showed on the clocks


def test_the_scripts_get_the_day_and_its_neighbours_with_their_bounds() -> None:
    days = SiteDays(BERLIN)
    window = days.window(local(2026, 3, 29, 1, 0)).split()
    assert window[0::3] == ["2026-03-28", "2026-03-29", "2026-03-30"]
    assert [float(x) for x in window[1::3]] == [local(2026, 3, 28), local(2026, 3, 29), local(2026, 3, 30)]
    assert [float(x) for x in window[2::3]] == [local(2026, 3, 29), local(2026, 3, 30), local(2026, 3, 31)]
    assert days.window(local(2026, 3, 29, 20, 0)) == " ".join(window)  # cached for the whole day


def test_an_unknown_time_zone_is_refused_at_start_up() -> None:
    from router.settings import AcdSettings

    with pytest.raises(ValueError, match="not a time zone this machine knows"):
        AcdSettings(timezone="Europe/Berlinn")
    assert AcdSettings().timezone is None  # the stores' days are UTC then
    assert SiteDays().timezone == "UTC"


# -- counting ----------------------------------------------------------------------------------


async def test_counts_roll_over_at_local_midnight_not_at_utc_midnight(store: RedisStateStore) -> None:
    await login(store, "a1", local(2026, 3, 28, 20, 0))
    # Answered a minute before midnight, hung up a minute after: answered on the 28th,
    # completed (with its talk) on the 29th.
    await enqueue(store, "c1", local(2026, 3, 28, 23, 58, 30))
    await answer(store, "c1", "a1", local(2026, 3, 28, 23, 59, 0))
    assert (await store.caller_hung_up("c1", local(2026, 3, 29, 0, 1, 0), NO_POSITION)).status == "completed"
    # 00:30 Berlin is still 23:30 UTC on the 28th: a UTC day would count it there.
    await enqueue(store, "c2", local(2026, 3, 29, 0, 30))
    assert (
        await store.caller_hung_up("c2", local(2026, 3, 29, 0, 30, 25), NO_POSITION)
    ).status == "abandoned"

    assert await day(store, "2026-03-28") == {
        "offered": 1,
        "answered": 1,
        "answer_wait_sum": 30,  # 30 s: not within the 20 s threshold
    }
    assert await day(store, "2026-03-29") == {
        "completed": 1,
        "talk_sum": 120,
        "offered": 1,
        "abandoned": 1,
        "abandon_wait_sum": 25,
        "abandoned_after": 1,
    }
    # The all-time counters (Prometheus' and staffing's view) count both days.
    all_time = await store.queue_stats("q")
    assert (all_time["offered"], all_time["answered"], all_time["abandoned"]) == (2, 1, 1)


async def test_the_last_hour_of_the_long_autumn_day_is_still_that_day(store: RedisStateStore) -> None:
    await login(store, "a1", local(2026, 10, 25, 20, 0))
    await enqueue(store, "c1", local(2026, 10, 25, 23, 30))
    await answer(store, "c1", "a1", local(2026, 10, 25, 23, 30, 10))
    await store.caller_hung_up("c1", local(2026, 10, 26, 0, 0, 10), NO_POSITION)
    assert (await day(store, "2026-10-25"))["answered"] == 1
    assert (await day(store, "2026-10-26"))["completed"] == 1
    assert await day(store, "2026-10-24") == {}


async def test_a_wrap_up_ended_before_midnight_counts_on_its_own_day_when_handled_after(
    store: RedisStateStore, redis: Redis
) -> None:
    await login(store, "a1", local(2026, 3, 28, 23, 0))
    await enqueue(store, "c1", local(2026, 3, 28, 23, 58), wrapup=60)
    await answer(store, "c1", "a1", local(2026, 3, 28, 23, 58, 20))
    await store.caller_hung_up("c1", local(2026, 3, 28, 23, 58, 50), NO_POSITION)
    # The timer runs a few seconds after midnight; the wrap-up ended at 23:59:50.
    wrapups, _ = await store.run_timers(local(2026, 3, 29, 0, 0, 3))
    assert [w.agent_id for w in wrapups] == ["a1"]
    assert (await day(store, "2026-03-28"))["wrapups"] == 1
    assert "wrapups" not in await day(store, "2026-03-29")
    # An operator finishing after-call work counts on the day it ends, too.
    await enqueue(store, "c2", local(2026, 3, 29, 9, 0), wrapup=600)
    await answer(store, "c2", "a1", local(2026, 3, 29, 9, 0, 5))
    await store.caller_hung_up("c2", local(2026, 3, 29, 9, 1), NO_POSITION)
    admin = AdminStore(redis, SITE, timezone=BERLIN)
    assert (await admin.finish_wrapup("a1", local(2026, 3, 29, 9, 2))).status == "ok"
    assert (await day(store, "2026-03-29"))["wrapups"] == 1


async def test_per_day_keys_expire_three_days_after_their_day_ends(
    store: RedisStateStore, redis: Redis
) -> None:
    at = local(2026, 3, 29, 12, 0)
    await enqueue(store, "c1", at)
    key = store.keys.day_stats("2026-03-29", "q")
    # Counted from the event's time (the router's clock), not Redis' own.
    left = local(2026, 3, 30) - at + 3 * 86400
    assert left - 2 <= await redis.ttl(key) <= left
    assert await redis.ttl(store.keys.stats("q")) == -1  # the all-time hash never expires


async def test_a_batch_sets_a_day_keys_expiry_once_and_as_late_as_its_oldest_event_asks(
    store: RedisStateStore, redis: Redis
) -> None:
    """Each count into a per-day key used to set its expiry again: one EXPIRE per count.
    Within one round trip it is set once, and again only for an older event (more time left)."""
    older, newer = local(2026, 3, 29, 9, 0), local(2026, 3, 29, 12, 0)
    expires_before = await _expire_calls(redis)
    await asyncio.gather(
        enqueue(store, "c1", older), enqueue(store, "c2", newer), enqueue(store, "c3", newer + 60)
    )
    assert store.scripts.round_trips == 1
    assert await day(store, "2026-03-29") == {"offered": 3}
    assert await _expire_calls(redis) - expires_before == 1
    left = local(2026, 3, 30) - older + 3 * 86400
    assert left - 2 <= await redis.ttl(store.keys.day_stats("2026-03-29", "q")) <= left


async def _expire_calls(redis: Redis) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_expire", {}).get("calls", 0))


async def test_a_redelivered_event_counts_once_per_day_too(store: RedisStateStore) -> None:
    from router.store import Position

    await login(store, "a1", local(2026, 3, 29, 8, 0))
    pos = Position("ev:0", 5)
    call = NewCall("c1", "q", 0, False, None, "PJSIP/t-c1", local(2026, 3, 29, 9, 0), None, None, 20.0, 0.0)
    assert (await store.enqueue(call, pos)).status == "queued"
    assert (await store.enqueue(call, pos)).status == "exists"
    assert await day(store, "2026-03-29") == {"offered": 1}


async def test_scripts_batched_together_each_count_under_their_own_day(store: RedisStateStore) -> None:
    # Two enqueues in one round trip (router.store.scripts batches concurrent calls): the
    # first's days must not leak into the second's.
    await asyncio.gather(
        enqueue(store, "c1", local(2026, 3, 28, 10, 0)),
        enqueue(store, "c2", local(2026, 6, 1, 10, 0)),
    )
    assert store.scripts.round_trips == 1
    assert await day(store, "2026-03-28") == {"offered": 1}
    assert await day(store, "2026-06-01") == {"offered": 1}
