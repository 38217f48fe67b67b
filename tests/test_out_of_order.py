"""Events of calls and agents in any order (and repeated): the state machine never breaks its
own books — no negative counts, no agent over capacity, every reservation explained."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from router.domain import AgentConfig, QueueConfig
from router.events import (
    AgentAnswered,
    AgentDeclined,
    AgentPresenceChanged,
    AgentRang,
    CallerHungUp,
    CallQueued,
    DomainEvent,
)
from router.store import NO_POSITION
from tests.support import T0, EngineHarness

CALLS = ["c1", "c2", "c3"]
AGENTS = ["a1", "a2"]


def event_for(kind: str, call: str, agent: str, at: float) -> DomainEvent:
    device = f"PJSIP/{agent}"
    return {
        "queued": CallQueued(call, f"PJSIP/t-{call}", "q", at),
        "rang": AgentRang(call, device, at),
        "answered": AgentAnswered(call, device, at),
        "declined": AgentDeclined(call, device, "NOANSWER", at),
        "hungup": CallerHungUp(call, "16", at),
        "login": AgentPresenceChanged(device, agent, "available", "", at),
        "pause": AgentPresenceChanged(device, agent, "paused", "break", at),
        "logout": AgentPresenceChanged(device, agent, "logged_out", "", at),
    }[kind]


events = st.lists(
    st.tuples(
        st.sampled_from(["queued", "rang", "answered", "declined", "hungup", "login", "pause", "logout"]),
        st.sampled_from(CALLS),
        st.sampled_from(AGENTS),
    ),
    min_size=1,
    max_size=30,
)


async def books_balance(harness: EngineHarness) -> None:
    store = harness.store
    calls = {call_id: await store.call(call_id) for call_id in CALLS}
    for agent_id in AGENTS:
        agent = await store.agent(agent_id)
        reserved, connected = int(agent.get("reserved", 0)), int(agent.get("connected", 0))
        offering = sum(
            1
            for c in calls.values()
            if c.get("agent") == agent_id and c.get("state") in ("offered", "ringing")
        )
        talking = sum(
            1 for c in calls.values() if c.get("agent") == agent_id and c.get("state") == "connected"
        )
        assert reserved >= 0 and connected >= 0 and reserved + connected <= int(agent["capacity"]), agent
        assert (reserved, connected) == (offering, talking), (agent_id, agent, calls)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events)
async def test_any_order_of_events_keeps_the_books(
    redis: Redis, sequence: list[tuple[str, str, str]]
) -> None:
    await redis.flushdb()
    harness = await EngineHarness(
        redis, [QueueConfig(name="q", wrapup_s=5)], [AgentConfig(id=a) for a in AGENTS]
    ).start()
    for step, (kind, call, agent) in enumerate(sequence):
        harness.clock.t = T0 + step
        await harness.engine.handle(event_for(kind, call, agent, harness.clock.t), NO_POSITION, 0)
        await books_balance(harness)
    await harness.advance(3600)  # every timer due: wrap-ups end, stale offers go back in line
    await books_balance(harness)
