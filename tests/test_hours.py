"""Business hours through the engine on a real redis-server: callers who arrive while their
queue is closed are never offered, go to the closed target and count as closed; a
supervisor's override in Redis; a queue that closes while calls wait."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from redis.asyncio import Redis

from router.domain import AgentConfig, QueueConfig
from router.events import AgentAnswered, CallQueued
from router.records import CallRecord, record_from_outbox
from router.schedule import BusinessHours, ManualOverride
from router.store import NO_POSITION, Position
from router.store.schedule import RedisScheduleStore
from tests.support import EngineHarness

UTC = ZoneInfo("UTC")
# T0 of tests.support (1_800_000_000) is Friday 2027-01-15 08:00 UTC.
NINE_TO_FIVE = {day: ("09:00-17:00",) for day in ("mon", "tue", "wed", "thu", "fri")}


def hours(**fields: object) -> BusinessHours:
    return BusinessHours.model_validate(
        {"timezone": "UTC", "weekly": NINE_TO_FIVE, "closed_target": "acd-closed,billing,1"} | fields
    )


async def harness(redis: Redis, queue: QueueConfig) -> EngineHarness:
    h = await EngineHarness(redis, [queue, QueueConfig(name="general")], [AgentConfig(id="a1")]).start()
    h.engine.closing.refresh_s = 0.0  # read the overrides for every call
    await h.presence("a1")
    return h


async def call_records(h: EngineHarness) -> list[CallRecord]:
    entries = await h.store.redis.xrange(h.store.keys.outbox)
    found = [record_from_outbox("e", entry_id, fields) for entry_id, fields in entries]
    return [record for record in found if isinstance(record, CallRecord)]


def test_t0_is_before_opening() -> None:
    assert datetime.fromtimestamp(1_800_000_000, UTC).strftime("%a %H:%M") == "Fri 08:00"


async def test_a_caller_arriving_while_closed_is_never_offered_and_goes_to_the_closed_target(redis: Redis) -> None:
    h = await harness(redis, QueueConfig(name="billing", hours=hours()))
    await h.arrive("c1", "billing")
    assert h.sink.offers == []
    assert await h.state("c1") == "closed"
    command = h.sink.overflows[-1]
    assert (command.call_id, command.channel, command.queue, command.context, command.exten, command.priority) == (
        "c1",
        "PJSIP/trunk-c1",
        "billing",
        "acd-closed",
        "billing",
        "1",
    )
    stats = await h.store.queue_stats("billing")
    assert stats["closed"] == 1 and stats.get("offered", 0) == 0
    assert h.metrics.closed.labels("billing")._value.get() == 1
    assert h.metrics.offered.labels("billing")._value.get() == 0
    assert await h.store.open_call_ids() == []
    (record,) = await call_records(h)
    assert (record.outcome, record.queue, record.wait_s, record.answered_at) == ("closed", "billing", 0.0, None)
    # The free agent stays free for calls of open queues.
    await h.arrive("c2", "general")
    assert h.sink.last() == ("c2", "a1")


async def test_at_opening_time_callers_are_routed(redis: Redis) -> None:
    h = await harness(redis, QueueConfig(name="billing", hours=hours()))
    await h.advance(3600)  # 09:00
    await h.arrive("c1", "billing")
    assert h.sink.last() == ("c1", "a1") and h.sink.overflows == []


async def test_a_redelivered_closed_arrival_counts_once_and_redirects_again(redis: Redis) -> None:
    h = await harness(redis, QueueConfig(name="billing", hours=hours()))
    pos = Position("ingest", 7, 1)
    await h.arrive("c1", "billing", pos)
    await h.arrive("c1", "billing", pos)
    assert (await h.store.queue_stats("billing"))["closed"] == 1
    assert h.metrics.closed.labels("billing")._value.get() == 1
    assert len(await call_records(h)) == 1
    # Its Redirect may never have gone out (a worker died before the command): again.
    assert [c.call_id for c in h.sink.overflows] == ["c1", "c1"]
    # A resync listing of the caller (still on the line, in the closed context) changes nothing.
    listed = CallQueued("c1", "PJSIP/trunk-c1", "billing", h.clock.now(), resynced=True)
    await h.engine.handle(listed, NO_POSITION, 0)
    assert len(h.sink.overflows) == 2 and await h.state("c1") == "closed"


async def test_a_supervisor_override_closes_and_opens_now(redis: Redis) -> None:
    h = await harness(redis, QueueConfig(name="billing", hours=hours()))
    overrides = RedisScheduleStore(redis, "e")
    now = h.clock.now()
    await overrides.set_override("billing", ManualOverride("open", now + 1800, "early start", now))
    await h.arrive("c1", "billing")
    assert h.sink.last() == ("c1", "a1")
    await overrides.set_override("billing", ManualOverride("closed", now + 1800, "fire drill", now))
    await h.arrive("c2", "billing")
    assert await h.state("c2") == "closed"
    await h.advance(1800)  # the override expired at 08:30: closed by the hours again
    await h.arrive("c3", "billing")
    assert await h.state("c3") == "closed"
    await overrides.set_override("billing", ManualOverride("open", None, "", now))
    await h.arrive("c4", "billing")
    assert await h.state("c4") == "waiting"  # open: in line (a1 is busy with c1)
    assert await overrides.clear_override("billing") and not await overrides.clear_override("billing")


async def test_calls_waiting_at_closing_are_kept_by_default(redis: Redis) -> None:
    h = await harness(redis, QueueConfig(name="billing", hours=hours()))
    await h.advance(3600 * 8 + 1800)  # 16:30
    await h.arrive("c1", "billing")  # a1 takes it
    await h.arrive("c2", "billing")  # waits
    await h.advance(3600)  # 17:30: closed
    assert await h.state("c2") == "waiting" and len(h.sink.overflows) == 0
    await h.arrive("c3", "billing")
    assert await h.state("c3") == "closed"


async def test_on_close_send_to_closed_sends_waiting_calls_away(redis: Redis) -> None:
    h = await harness(redis, QueueConfig(name="billing", hours=hours(on_close="send_to_closed")))
    await h.advance(3600 * 8 + 1800)  # 16:30
    await h.arrive("c1", "billing")  # a1 takes it
    await h.engine.handle(AgentAnswered("c1", h.engine.agents["a1"].device, h.clock.now()), NO_POSITION, 0)
    await h.arrive("c2", "billing")  # waits
    await h.advance(1200)  # 16:50: still open
    assert await h.state("c2") == "waiting"
    await h.advance(600)  # 17:00
    assert await h.state("c2") == "overflowed"
    assert [(c.call_id, c.context) for c in h.sink.overflows] == [("c2", "acd-closed")]
    stats = await h.store.queue_stats("billing")
    assert (stats["offered"], stats["overflowed"], stats.get("closed", 0)) == (2, 1, 0)
    assert await h.state("c1") == "connected"  # the call with an agent is left alone
