"""Affinity over a real redis-server: the engine remembers who answered a caller, holds the
caller's next call for that agent (or the one the dialplan names), and lets go in time."""

from __future__ import annotations

import json

import pytest
from redis.asyncio import Redis

from router.domain import AgentConfig, LastAgentRouting, QueueConfig, SkillRequirement
from router.events import AgentAnswered, AgentLegEnded, AgentRang, CallerHungUp, CallQueued, CallTransferred
from router.store import NO_POSITION
from tests.support import EngineHarness

QUEUES = [
    QueueConfig(
        name="support",
        requirements=(SkillRequirement(skill="support"),),
        last_agent=LastAgentRouting(window_s=3600, wait_s=20),
    ),
    QueueConfig(name="sales", requirements=(SkillRequirement(skill="support"),)),
]
AGENTS = [AgentConfig(id=f"a{n}", skills={"support": 1}) for n in (1, 2, 3)]
CALLER = "+15550001111"


@pytest.fixture
async def acd(redis: Redis) -> EngineHarness:
    return await EngineHarness(redis, QUEUES, AGENTS).start()


async def arrive(
    acd: EngineHarness, call_id: str, *, queue: str = "support", caller: str = CALLER, preferred: str = ""
) -> None:
    event = CallQueued(
        call_id,
        f"PJSIP/trunk-{call_id}",
        queue,
        acd.clock.now(),
        caller_number=caller,
        preferred_agent=preferred,
    )
    await acd.engine.handle(event, NO_POSITION, 0)


async def answer(acd: EngineHarness, call_id: str, agent_id: str) -> None:
    assert acd.sink.last() == (call_id, agent_id)
    device = f"PJSIP/{agent_id}"
    await acd.engine.handle(AgentRang(call_id, device, acd.clock.now()), NO_POSITION, 0)
    await acd.engine.handle(AgentAnswered(call_id, device, acd.clock.now()), NO_POSITION, 0)


async def hang_up(acd: EngineHarness, call_id: str) -> None:
    await acd.engine.handle(CallerHungUp(call_id, "16", acd.clock.now()), NO_POSITION, 0)


async def decision(acd: EngineHarness, call_id: str) -> dict[str, object]:
    found: dict[str, object] = json.loads((await acd.store.call(call_id))["decision"])
    return found


async def a2_answered_the_caller_and_is_busy_again(acd: EngineHarness) -> None:
    """a2 answered CALLER's first call; now a2 talks to someone else and a1 is free."""
    await acd.presence("a2")
    await arrive(acd, "first")
    await answer(acd, "first", "a2")
    acd.clock.t += 60
    await hang_up(acd, "first")
    await arrive(acd, "other", caller="+15559990000")
    await answer(acd, "other", "a2")
    await acd.presence("a1")
    acd.clock.t += 600


async def test_a_returning_caller_waits_for_its_last_agent_and_gets_it_when_it_is_free(
    acd: EngineHarness,
) -> None:
    await a2_answered_the_caller_and_is_busy_again(acd)
    offers = len(acd.sink.offers)
    await arrive(acd, "again")
    assert len(acd.sink.offers) == offers and await acd.state("again") == "waiting"  # a1 is free, but not a2
    acd.clock.t += 10
    await acd.engine.tick(0)
    assert len(acd.sink.offers) == offers
    await hang_up(acd, "other")  # a2 is free again within the wait
    assert acd.sink.last() == ("again", "a2")
    found = await decision(acd, "again")
    assert found["path"] == "last_agent"
    assert str(found["reason"]).startswith("last_agent: the caller's last agent a2")


async def test_a_returning_caller_falls_back_to_normal_routing_after_the_wait(acd: EngineHarness) -> None:
    await a2_answered_the_caller_and_is_busy_again(acd)
    await arrive(acd, "again")
    acd.clock.t += 19.9
    await acd.engine.tick(0)
    assert await acd.state("again") == "waiting"
    acd.clock.t += 0.1
    await acd.engine.tick(0)
    assert acd.sink.last() == ("again", "a1")
    assert (await decision(acd, "again"))["path"] == "last_agent_timeout"
    await answer(acd, "again", "a1")
    assert (await acd.store.call("again"))["ans_reason"].startswith("last_agent_timeout:")


async def test_the_last_agent_is_remembered_per_caller_for_the_queue_window(acd: EngineHarness) -> None:
    await a2_answered_the_caller_and_is_busy_again(acd)
    key = acd.store.keys.last_agent(CALLER)
    assert (await acd.store.redis.get(key) or "").startswith("a2 ")
    assert 3500 < await acd.store.redis.ttl(key) <= 3600
    acd.clock.t += 3600  # the window is over: a call like any other
    await arrive(acd, "much-later")
    assert acd.sink.last() == ("much-later", "a1")
    assert "path" not in await decision(acd, "much-later")
    # A queue without last_agent: neither remembers nor waits.
    await arrive(acd, "sales-call", queue="sales", caller="+15557777777")
    assert acd.store.keys.last_agent("+15557777777") not in await acd.store.redis.keys("*last_agent*")


async def test_a_logged_out_preferred_agent_means_normal_routing_at_once(acd: EngineHarness) -> None:
    await acd.presence("a1")
    await arrive(acd, "crm", preferred="a3")  # a3 never logged in
    assert acd.sink.last() == ("crm", "a1")
    found = await decision(acd, "crm")
    assert found["path"] == "preferred_agent_unavailable"
    assert "the preferred agent a3 is logged out or not qualified" in str(found["reason"])


async def test_a_preferred_agent_logging_out_during_the_wait_releases_the_call(acd: EngineHarness) -> None:
    await acd.presence("a3", "paused", "lunch")  # logged in: worth waiting for
    await acd.presence("a1")
    await arrive(acd, "crm", preferred="a3")
    assert await acd.state("crm") == "waiting"
    acd.clock.t += 5
    await acd.presence("a3", "logged_out")
    assert acd.sink.last() == ("crm", "a1")
    assert (await decision(acd, "crm"))["path"] == "preferred_agent_unavailable"


async def test_the_preferred_agent_beats_the_last_one(acd: EngineHarness) -> None:
    await a2_answered_the_caller_and_is_busy_again(acd)
    await acd.presence("a3")
    await arrive(acd, "again", preferred="a3")
    assert acd.sink.last() == ("again", "a3")
    assert (await decision(acd, "again"))["path"] == "preferred_agent"


async def test_a_caller_its_last_agent_transferred_back_into_the_queue_does_not_wait_for_it(
    acd: EngineHarness,
) -> None:
    await acd.presence("a2")
    await arrive(acd, "first")
    await answer(acd, "first", "a2")
    await acd.presence("a1")
    acd.clock.t += 30
    event = CallTransferred("first", "PJSIP/a2", "blind", "acd-inbound,5000", acd.clock.now())
    await acd.engine.handle(event, NO_POSITION, 0)
    await acd.engine.handle(AgentLegEnded("first", "PJSIP/a2", acd.clock.now()), NO_POSITION, 0)
    acd.clock.t += 1
    await arrive(acd, "first")  # [acd-inbound] announces the caller again
    assert acd.sink.last() == ("first", "a1")
    assert "path" not in await decision(acd, "first")
    assert (await acd.store.call("first"))["aff"] == ""
