"""Overflow rules and the agents' phones, through the engine on a real redis-server."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from router.domain import AgentConfig, Overflow, QueueConfig, SkillRequirement
from router.events import AgentDeclined, AgentDeviceChanged, CallerHungUp
from router.settings import RoutingSettings
from router.store import NO_POSITION
from tests.support import EngineHarness

BILLING = SkillRequirement(skill="billing", min_level=3)
FRENCH = SkillRequirement(skill="french")


async def harness(redis: Redis, queues: list[QueueConfig], agents: list[AgentConfig]) -> EngineHarness:
    return await EngineHarness(redis, queues, agents).start()


async def test_wait_limit_moves_the_call_to_the_overflow_queue(redis: Redis) -> None:
    queues = [
        QueueConfig(
            name="expert", requirements=(BILLING,), overflow=Overflow(after_s=60, to_queue="general")
        ),
        QueueConfig(name="general", priority=2),
    ]
    h = await harness(redis, queues, [AgentConfig(id="novice", skills={"billing": 1})])
    await h.presence("novice")
    await h.arrive("c1", "expert")
    assert h.sink.offers == []
    await h.advance(59)
    assert h.sink.offers == []
    await h.advance(1)
    assert h.sink.last() == ("c1", "novice")
    call = await h.store.call("c1")
    assert (call["queue"], call["priority"], float(call["entered_at"])) == ("general", "2", h.clock.t)
    assert float(call["first_entered_at"]) == h.clock.t - 60
    assert (await h.store.queue_stats("expert"))["overflowed"] == 1
    assert (await h.store.queue_stats("general"))["offered"] == 1


async def test_no_qualified_agent_logged_in_sends_the_call_to_the_target(redis: Redis) -> None:
    queues = [
        QueueConfig(
            name="french",
            requirements=(FRENCH,),
            overflow=Overflow(when_no_agents=True, to_target="acd-overflow,5555,1"),
        )
    ]
    h = await harness(redis, queues, [AgentConfig(id="anglo", skills={"billing": 4})])
    await h.presence("anglo")
    await h.arrive("c1", "french")
    assert await h.state("c1") == "overflowed"
    command = h.sink.overflows[-1]
    assert (command.call_id, command.channel, command.context, command.exten, command.priority) == (
        "c1",
        "PJSIP/trunk-c1",
        "acd-overflow",
        "5555",
        "1",
    )
    await h.engine.handle(CallerHungUp("c1", "16", h.clock.now()), NO_POSITION, 0)
    assert await h.state("c1") == "overflowed"  # the hangup after overflow changes nothing
    assert await h.store.open_call_ids() == []


async def test_a_paused_qualified_agent_counts_as_logged_in(redis: Redis) -> None:
    queues = [
        QueueConfig(
            name="french", requirements=(FRENCH,), overflow=Overflow(when_no_agents=True, to_target="x,1,1")
        )
    ]
    h = await harness(redis, queues, [AgentConfig(id="pierre", skills={"french": 2})])
    await h.presence("pierre", "paused", "lunch")
    await h.arrive("c1", "french")
    assert await h.state("c1") == "waiting"
    await h.presence("pierre", "logged_out")
    await h.advance(3)
    assert await h.state("c1") == "overflowed"  # the last qualified agent left


async def test_overflow_loops_stop(redis: Redis) -> None:
    queues = [
        QueueConfig(name="a", requirements=(FRENCH,), overflow=Overflow(after_s=10, to_queue="b")),
        QueueConfig(name="b", requirements=(FRENCH,), overflow=Overflow(after_s=10, to_queue="a")),
    ]
    h = await harness(redis, queues, [AgentConfig(id="x")])
    await h.arrive("c1", "a")
    for _ in range(8):
        await h.advance(10)
    call = await h.store.call("c1")
    assert call["state"] == "waiting" and call["hops"] == "5"


async def test_an_offered_call_overflows_only_if_the_offer_comes_to_nothing(redis: Redis) -> None:
    queues = [
        QueueConfig(name="a", overflow=Overflow(after_s=10, to_queue="b")),
        QueueConfig(name="b"),
    ]
    agents = [AgentConfig(id="x"), AgentConfig(id="y")]
    h = await EngineHarness(redis, queues, agents, RoutingSettings(offer_timeout_s=60)).start()
    await h.presence("x")
    await h.arrive("c1", "a")
    assert await h.state("c1") == "offered"
    await h.advance(11)
    call = await h.store.call("c1")
    assert (call["state"], call["queue"]) == ("offered", "a")
    await h.presence("y")
    await h.engine.handle(AgentDeclined("c1", "PJSIP/x", "NOANSWER", h.clock.now()), NO_POSITION, 0)
    assert h.sink.last() == ("c1", "y")  # re-offered at once, still in queue a
    await h.engine.handle(AgentDeclined("c1", "PJSIP/y", "NOANSWER", h.clock.now()), NO_POSITION, 0)
    await h.advance(1)
    call = await h.store.call("c1")
    assert (call["state"], call["queue"]) == ("waiting", "b")


@pytest.mark.parametrize(
    ("phone", "blocked"),
    [("UNAVAILABLE", True), ("INVALID", True), ("INUSE", True), ("RINGING", True), ("NOT_INUSE", False)],
)
async def test_the_agents_phone_state_gates_offers(redis: Redis, phone: str, blocked: bool) -> None:
    h = await harness(redis, [QueueConfig(name="q")], [AgentConfig(id="a1")])
    await h.presence("a1")
    await h.engine.handle(AgentDeviceChanged("PJSIP/a1", phone, h.clock.now()), NO_POSITION, 0)
    await h.arrive("c1", "q")
    assert (h.sink.offers == []) is blocked
    if blocked:
        await h.engine.handle(AgentDeviceChanged("PJSIP/a1", "NOT_INUSE", h.clock.now()), NO_POSITION, 0)
        assert h.sink.last() == ("c1", "a1")


async def test_busy_phone_during_an_acd_call_is_not_a_private_call(redis: Redis) -> None:
    h = await harness(redis, [QueueConfig(name="q")], [AgentConfig(id="a1")])
    await h.presence("a1")
    await h.arrive("c1", "q")
    await h.engine.handle(AgentDeviceChanged("PJSIP/a1", "RINGING", h.clock.now()), NO_POSITION, 0)
    agent = await h.store.agent("a1")
    assert agent["dev_busy"] == "0"
