"""Supervisors override a queue's business hours through the API, over real Redis: the
override is stored where routing workers read it, shows in GET /api/v1/queues, expires,
and is cleared; bad input and queues without hours get a clear error."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from load_tests.embedded import EmbeddedRedis
from router.schedule import ManualOverride
from router.store.schedule import RedisScheduleStore

from .test_api_support import READ_TOKEN, SITE, ApiHarness, running_api

PATH = "/api/v1/queues/billing/schedule-override"


@pytest.fixture
async def api(redis: Redis, redis_server: EmbeddedRedis) -> AsyncIterator[ApiHarness]:
    async with running_api(redis_server.url) as harness:
        yield harness


async def schedules(api: ApiHarness) -> dict[str, dict[str, object]]:
    status, body = await api.call("GET", "/api/v1/queues")
    assert status == 200, body
    return {queue["name"]: queue["schedule"] for queue in body["queues"]}


async def test_close_a_queue_for_30_minutes_then_clear_it(api: ApiHarness, redis: Redis) -> None:
    before = await schedules(api)
    assert before["billing"] == {"state": "open", "reason": "opening hours", "until": None, "override": None}
    assert before["support"]["reason"] == "no business hours configured"

    status, body = await api.call("POST", PATH, body={"state": "closed", "minutes": 30, "reason": "fire drill"})
    assert status == 200, body
    schedule = body["schedule"]
    assert (schedule["state"], schedule["reason"]) == ("closed", "supervisor override (fire drill)")
    until = schedule["until"]
    assert until == pytest.approx(api.clock.now() + 1800, abs=5)
    assert schedule["override"]["until"] == until and schedule["override"]["reason"] == "fire drill"
    # Stored in Redis, where every routing worker reads it.
    stored = await RedisScheduleStore(redis, SITE).overrides()
    assert stored["billing"].state == "closed" and stored["billing"].until == until
    assert (await schedules(api))["billing"] == schedule

    status, body = await api.call("DELETE", PATH)
    assert status == 200 and body["cleared"] is True and body["schedule"]["state"] == "open"
    assert await RedisScheduleStore(redis, SITE).overrides() == {}
    status, body = await api.call("DELETE", PATH)
    assert status == 200 and body["cleared"] is False


async def test_an_override_without_minutes_holds_until_cleared(api: ApiHarness) -> None:
    status, body = await api.call("POST", PATH, body={"state": "closed"})
    assert status == 200 and body["schedule"]["until"] is None
    assert (await schedules(api))["billing"]["state"] == "closed"


async def test_an_expired_override_no_longer_shows(api: ApiHarness, redis: Redis) -> None:
    now = api.clock.now()
    await RedisScheduleStore(redis, SITE).set_override("billing", ManualOverride("closed", now - 1, "", now - 60))
    assert (await schedules(api))["billing"] == {
        "state": "open",
        "reason": "opening hours",
        "until": None,
        "override": None,
    }


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        (PATH, {"state": "shut"}, 400, "invalid_body"),
        (PATH, {"state": "closed", "minutes": 0}, 400, "invalid_body"),
        (PATH, {"state": "closed", "minutes": "30"}, 400, "invalid_body"),
        (PATH, {"state": "closed", "until": 5}, 400, "invalid_body"),
        ("/api/v1/queues/nope/schedule-override", {"state": "closed"}, 404, "unknown_queue"),
        ("/api/v1/queues/support/schedule-override", {"state": "closed"}, 409, "no_business_hours"),
    ],
)
async def test_bad_overrides_say_what_is_wrong(
    api: ApiHarness, path: str, body: dict[str, object], status: int, code: str
) -> None:
    got, answer = await api.call("POST", path, body=body)
    assert (got, answer["error"]["code"]) == (status, code), answer


async def test_overrides_need_the_full_access_token(api: ApiHarness) -> None:
    got, answer = await api.call("POST", PATH, body={"state": "closed"}, token=READ_TOKEN)
    assert got == 403 and answer["error"]["code"] == "forbidden"
    assert (await api.call("DELETE", PATH, token=None))[0] == 401
