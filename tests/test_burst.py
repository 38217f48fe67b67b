"""Calls that arrive together are applied side by side, as a routing worker applies the keys
of one poll (real redis-server): each must find its own agent at once."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from router.domain import AgentCandidate, AgentConfig, QueueConfig, SkillRequirement
from router.matching import Reserving
from tests.support import EngineHarness

BURST = 12
QUEUE = QueueConfig(name="sales", requirements=(SkillRequirement(skill="sales"),))  # longest idle


async def test_a_burst_of_calls_is_offered_to_as_many_agents_in_longest_idle_order(redis: Redis) -> None:
    agents = [AgentConfig(id=f"a{n:02d}", skills={"sales": 1}) for n in range(BURST + 3)]
    harness = await EngineHarness(redis, [QUEUE], agents).start()
    for agent in agents:  # one second apart: a00 has been idle longest
        await harness.presence(agent.id)
        harness.clock.t += 1.0
    await asyncio.gather(*(harness.arrive(f"c{n:02d}", "sales") for n in range(BURST)))
    offered = {offer.call_id: offer.agent_id for offer in harness.sink.offers}
    assert sorted(offered) == [f"c{n:02d}" for n in range(BURST)]  # nobody left waiting for the sweep
    assert sorted(offered.values()) == [agent.id for agent in agents[:BURST]]  # the longest idle, once each
    # Every reservation succeeded the first time: no call was handed an agent another took.
    assert harness.metrics.conflicts._value.get() == 0


async def test_agents_freed_together_take_the_calls_in_line_one_each(redis: Redis) -> None:
    agents = [AgentConfig(id=f"a{n:02d}", skills={"sales": 1}) for n in range(BURST)]
    harness = await EngineHarness(redis, [QUEUE], agents).start()
    for n in range(BURST + 3):  # one second apart: c00 has waited longest
        await harness.arrive(f"c{n:02d}", "sales")
        harness.clock.t += 1.0
    await asyncio.gather(*(harness.presence(agent.id) for agent in agents))
    offered = {offer.call_id: offer.agent_id for offer in harness.sink.offers}
    assert sorted(offered) == [f"c{n:02d}" for n in range(BURST)]  # the first in line, none left idle
    assert sorted(offered.values()) == [agent.id for agent in agents]


async def test_an_agent_with_two_free_places_takes_two_calls_of_a_burst(redis: Redis) -> None:
    agents = [AgentConfig(id="chat", skills={"sales": 1}, capacity=2)]
    harness = await EngineHarness(redis, [QUEUE], agents).start()
    await harness.presence("chat")
    await asyncio.gather(*(harness.arrive(f"c{n}", "sales") for n in range(3)))
    offered = sorted((offer.call_id, offer.agent_id) for offer in harness.sink.offers)
    assert offered == [("c0", "chat"), ("c1", "chat")]  # c2 waits: no place left
    assert harness.metrics.conflicts._value.get() == 0


@pytest.mark.unit
def test_a_search_skips_an_agent_only_once_reservations_in_flight_take_all_its_free_places() -> None:
    reserving = Reserving()
    chat = AgentCandidate(agent_id="chat", idle_since=0.0, skills={}, capacity=3, active=1)
    reserving.take("c1", "phone", places=1)
    reserving.take("c2", "chat", places=2)
    assert reserving.full() == {"phone"}
    assert reserving.has_room(chat)  # a second place free
    reserving.take("c3", "chat", places=2)
    assert reserving.full() == {"phone", "chat"}
    assert not reserving.has_room(chat)
    for call_id, agent_id in (("c3", "chat"), ("c2", "chat"), ("c1", "phone")):
        reserving.give_back(call_id, agent_id)
    assert reserving.full() == set() and not reserving.calls and not reserving.agents
