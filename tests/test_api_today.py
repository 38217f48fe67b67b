"""The API's queue figures are today's, since midnight in the site's time zone, and say so:
calls of the day before are not in them (they are in Prometheus' all-time counters)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from load_tests.embedded import EmbeddedRedis
from router.store import NO_POSITION, RedisStateStore
from router.store.params import SiteDays

from .test_api_support import SITE, ApiHarness, auth, enqueue, offer, present, running_api

pytestmark = pytest.mark.redis

# Fourteen hours ahead of UTC: the site's day is rarely UTC's (a UTC day would be wrong here
# for most of the day).
ZONE = "Pacific/Kiritimati"


@pytest.fixture
async def api(redis: Redis, redis_server: EmbeddedRedis) -> AsyncIterator[ApiHarness]:
    async with running_api(redis_server.url, acd={"timezone": ZONE}) as harness:
        yield harness


async def test_queue_figures_count_today_in_the_sites_time_zone_and_say_so(api: ApiHarness) -> None:
    store = RedisStateStore(api.store.redis, SITE, timezone=ZONE)  # as the routing workers write
    now = api.clock.now()
    today = SiteDays(ZONE).day(now)
    yesterday = today.start - 3600
    await present(store, "a1", yesterday - 100)
    await enqueue(store, "old", "billing", yesterday - 60)
    await offer(store, "old", "a1", yesterday - 55)
    assert (await store.agent_answered("old", "a1", yesterday - 50, NO_POSITION)).status == "answered"
    await store.caller_hung_up("old", yesterday - 10, NO_POSITION)
    await enqueue(store, "gone", "billing", yesterday)
    await store.caller_hung_up("gone", yesterday + 30, NO_POSITION)
    # Today (a minute ago, or at the day's very start if it began less than a minute ago).
    at = max(today.start + 1, now - 60)
    await enqueue(store, "new", "billing", at)
    await offer(store, "new", "a1", at + 1)
    assert (await store.agent_answered("new", "a1", at + 2, NO_POSITION)).status == "answered"

    status, body = await api.call("GET", "/api/v1/queues")
    assert status == 200
    assert (body["day"], body["since"], body["timezone"]) == (today.label, today.start, ZONE)
    billing = next(q for q in body["queues"] if q["name"] == "billing")
    assert (billing["offered"], billing["answered"], billing["abandoned"]) == (1, 1, 0)
    assert billing["service_level"] == 1.0 and billing["asa_s"] == 2.0

    status, one = await api.call("GET", "/api/v1/queues/billing")
    assert status == 200 and (one["day"], one["timezone"], one["queue"]) == (today.label, ZONE, billing)
    status, board = await api.call("GET", "/api/v1/wallboard")
    assert status == 200 and (board["day"], board["since"], board["timezone"]) == (
        today.label,
        today.start,
        ZONE,
    )
    assert next(q for q in board["queues"] if q["name"] == "billing") == billing
    # All time, the calls of both days.
    all_time = await store.queue_stats("billing")
    assert (all_time["offered"], all_time["answered"], all_time["abandoned"]) == (3, 2, 1)


async def test_the_live_wallboard_event_says_which_day_too(api: ApiHarness) -> None:
    async with api.http.get(api.base + "/api/v1/events?topics=wallboard", headers=auth()) as response:
        assert response.status == 200
        data = b""
        while b"event: wallboard" not in data or b"\n\n" not in data.split(b"event: wallboard", 1)[1]:
            data += await response.content.readany()
    frame = data.split(b"event: wallboard", 1)[1]
    payload = json.loads(next(line for line in frame.split(b"\n") if line.startswith(b"data: "))[6:])
    assert (payload["day"], payload["timezone"]) == (SiteDays(ZONE).day(api.clock.now()).label, ZONE)
