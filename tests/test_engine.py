"""The routing engine over a real redis-server, with commands captured in memory."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from router.clock import ScaledClock
from router.domain import AgentConfig, QueueConfig, RelaxStep, SkillRequirement
from router.engine import RoutingEngine
from router.events import (
    AgentAnswered,
    AgentDeclined,
    AgentPresenceChanged,
    AgentRang,
    CallerHeld,
    CallerHungUp,
    CallerLeftHold,
    CallQueued,
    OfferFailed,
)
from router.settings import RingNoAnswer, RoutingSettings
from router.store import NO_POSITION, Position
from tests.support import EngineHarness, FakeClock, RecordingSink

QUEUES = {
    "billing": QueueConfig(
        name="billing",
        requirements=(SkillRequirement(skill="billing", min_level=3),),
        relax=(RelaxStep(after_s=30, requirements=(SkillRequirement(skill="billing", min_level=1),)),),
        wrapup_s=10,
    ),
    "vip": QueueConfig(name="vip", priority=5),
}
AGENTS = {
    "senior": AgentConfig(id="senior", skills={"billing": 5}),
    "junior": AgentConfig(id="junior", skills={"billing": 1}),
}


@pytest.fixture
async def engine(redis: Redis) -> RoutingEngine:
    harness = await EngineHarness(redis, list(QUEUES.values()), list(AGENTS.values())).start()
    return harness.engine


def sink(engine: RoutingEngine) -> RecordingSink:
    assert isinstance(engine.sink, RecordingSink)
    return engine.sink


def clock(engine: RoutingEngine) -> FakeClock:
    assert isinstance(engine.clock, FakeClock)
    return engine.clock


async def login(engine: RoutingEngine, agent_id: str) -> None:
    device = AGENTS[agent_id].device
    await engine.handle(
        AgentPresenceChanged(device, agent_id, "available", "", clock(engine).now()), NO_POSITION, 0
    )


async def state(engine: RoutingEngine, call_id: str) -> str:
    return (await engine.store.call(call_id)).get("state", "")


async def arrive(
    engine: RoutingEngine, call_id: str, queue: str = "billing", pos: Position = NO_POSITION
) -> None:
    event = CallQueued(call_id, f"PJSIP/trunk-{call_id}", queue, clock(engine).now())
    await engine.handle(event, pos, 0)


async def test_call_goes_to_a_qualified_available_agent(engine: RoutingEngine) -> None:
    await login(engine, "junior")
    await login(engine, "senior")
    await arrive(engine, "c1")
    offer = sink(engine).offers[-1]
    assert (offer.call_id, offer.agent_id, offer.device, offer.exten) == (
        "c1",
        "senior",
        "PJSIP/senior",
        "senior",
    )
    assert (offer.context, offer.channel) == ("acd-connect", "PJSIP/trunk-c1")


async def test_agent_becoming_available_takes_the_call_first_in_line(engine: RoutingEngine) -> None:
    await arrive(engine, "old")
    clock(engine).t += 5
    await arrive(engine, "vip-call", queue="vip")
    clock(engine).t += 5
    await arrive(engine, "new")
    assert sink(engine).offers == []
    await login(engine, "senior")
    assert sink(engine).last() == ("vip-call", "senior")


async def test_requirements_relax_while_waiting(engine: RoutingEngine) -> None:
    await login(engine, "junior")
    await arrive(engine, "c1")
    assert sink(engine).offers == []
    clock(engine).t += 29
    await engine.tick(0)
    assert sink(engine).offers == []
    clock(engine).t += 1
    await engine.tick(0)
    assert sink(engine).last() == ("c1", "junior")


async def test_full_call_then_wrap_up_then_next_call(engine: RoutingEngine) -> None:
    await login(engine, "senior")
    await arrive(engine, "c1")
    await arrive(engine, "c2")
    assert [o.call_id for o in sink(engine).offers] == ["c1"]
    await engine.handle(AgentRang("c1", "PJSIP/senior", clock(engine).now()), NO_POSITION, 0)
    clock(engine).t += 3
    await engine.handle(AgentAnswered("c1", "PJSIP/senior", clock(engine).now()), NO_POSITION, 0)
    clock(engine).t += 60
    await engine.handle(CallerHungUp("c1", "16", clock(engine).now()), NO_POSITION, 0)
    assert (await engine.store.agent("senior"))["state"] == "wrap_up"
    clock(engine).t += 10
    await engine.tick(0)
    assert sink(engine).last() == ("c2", "senior")


async def test_ring_no_answer_pauses_the_agent_and_offers_the_call_to_someone_else(
    engine: RoutingEngine,
) -> None:
    await login(engine, "senior")
    await arrive(engine, "c1")
    clock(engine).t += 31  # relaxed: junior qualifies too
    await login(engine, "junior")
    await engine.handle(AgentDeclined("c1", "PJSIP/senior", "NOANSWER", clock(engine).now()), NO_POSITION, 0)
    assert sink(engine).pauses[-1].agent_id == "senior"
    assert sink(engine).pauses[-1].reason == "ring-no-answer"
    assert sink(engine).last() == ("c1", "junior")


async def test_caller_back_on_hold_without_a_dial_counts_as_declined(engine: RoutingEngine) -> None:
    # Asterisk sends no DialBegin/DialEnd when the agent's phone is unavailable (CHANUNAVAIL):
    # the caller just goes back on hold after the Redirect.
    await login(engine, "senior")
    clock(engine).t += 1
    await engine.handle(CallerHeld("c1", clock(engine).now()), NO_POSITION, 0)  # unknown call: ignored
    await arrive(engine, "c1")
    await engine.handle(
        CallerHeld("c1", clock(engine).now()), NO_POSITION, 0
    )  # the first hold: no offer failed
    assert (await engine.store.call("c1"))["state"] == "offered"
    clock(engine).t += 2
    await engine.handle(CallerHeld("c1", clock(engine).now()), NO_POSITION, 0)  # still not after a Redirect
    assert (await engine.store.call("c1"))["state"] == "offered"
    await engine.handle(CallerLeftHold("c1", clock(engine).now()), NO_POSITION, 0)  # the Redirect moved it
    await engine.handle(CallerHeld("c1", clock(engine).now()), NO_POSITION, 0)
    assert (await engine.store.call("c1"))["state"] == "waiting"
    assert sink(engine).pauses[-1].agent_id == "senior"
    assert (await engine.store.agent("senior"))["state"] == "paused"


async def test_redelivered_call_queued_does_not_offer_twice(engine: RoutingEngine) -> None:
    await login(engine, "senior")
    pos = Position("acd.ami.events.v1:0", 7)
    await arrive(engine, "c1", pos=pos)
    await arrive(engine, "c1", pos=pos)
    assert len(sink(engine).offers) == 1


async def test_failed_offer_for_gone_caller_frees_the_agent_for_the_next_call(engine: RoutingEngine) -> None:
    await login(engine, "senior")
    await arrive(engine, "c1")
    await arrive(engine, "c2")
    offer = sink(engine).offers[-1]
    failure = OfferFailed("c1", offer.offer_id, "senior", "Channel does not exist", True, clock(engine).now())
    await engine.handle(failure, NO_POSITION, 0)
    assert (await engine.store.call("c1"))["state"] == "abandoned"
    assert sink(engine).last() == ("c2", "senior")


async def test_unknown_queue_routes_via_the_fallback_and_is_not_lost(engine: RoutingEngine) -> None:
    await login(engine, "senior")
    await arrive(engine, "c1", queue="no-such-queue")
    assert (await engine.store.call("c1"))["queue"] == "billing"
    assert sink(engine).last() == ("c1", "senior")


async def test_scaled_clock_runs_faster() -> None:
    clock = ScaledClock(time_scale=10.0, epoch=0.0)
    assert clock.real_seconds(20.0) == 2.0
    with pytest.raises(ValueError, match="time_scale must be > 0"):
        ScaledClock(time_scale=0)


async def test_wrap_up_finished_through_the_api_gets_the_next_call_at_the_next_tick(
    engine: RoutingEngine,
) -> None:
    from router.store.admin import AdminStore

    await login(engine, "senior")
    await arrive(engine, "c1")
    await engine.handle(AgentAnswered("c1", "PJSIP/senior", clock(engine).now()), NO_POSITION, 0)
    await engine.handle(CallerHungUp("c1", "16", clock(engine).now()), NO_POSITION, 0)
    await arrive(engine, "c2")
    assert sink(engine).last() == ("c1", "senior")  # senior is in wrap-up: c2 waits
    clock(engine).t += 2
    admin = AdminStore(engine.store.redis, engine.store.keys.site)
    assert (await admin.finish_wrapup("senior", clock(engine).now())).status == "ok"
    await engine.tick(0)
    assert sink(engine).last() == ("c2", "senior")
    assert engine.metrics.wrapup.labels("billing")._sum.get() == 2.0


async def test_resync_closes_missing_calls_after_a_grace_period(engine: RoutingEngine) -> None:
    from router.events import ResyncFinished

    await arrive(engine, "gone")
    await arrive(engine, "alive")
    clock(engine).t += 10
    await engine.handle(ResyncFinished(frozenset({"alive"}), clock(engine).now()), NO_POSITION, 0)
    assert (await engine.store.call("gone"))["state"] == "waiting"  # its events may still be on the way
    clock(engine).t += engine.settings.resync_grace_s
    await engine.tick(0)
    assert (await engine.store.call("gone"))["state"] == "abandoned"
    assert (await engine.store.call("alive"))["state"] == "waiting"


class LaggingGroup:
    """Partition p1 of the routing group is behind the listing until ``caught_up``."""

    def __init__(self) -> None:
        self.caught_up = False
        self.asked: list[dict[str, int]] = []

    async def behind(self, marks: dict[str, int]) -> list[str]:
        self.asked.append(marks)
        return [] if self.caught_up else ["events:1"]


async def test_resync_waits_for_the_group_to_apply_what_was_sent_before_it(engine: RoutingEngine) -> None:
    """An answered call whose answer and hang-up wait on a lagging partition: closing it after
    the grace period alone made it abandoned, and its answer, applied later, was ignored."""
    from router.events import ResyncFinished

    group = engine.progress = LaggingGroup()
    await login(engine, "senior")
    await arrive(engine, "answered-unseen")
    await engine.handle(AgentRang("answered-unseen", "PJSIP/senior", clock(engine).now()), NO_POSITION, 0)
    clock(engine).t += 10
    marks = {"events:0": 40, "events:1": 7}
    await engine.handle(ResyncFinished(frozenset(), clock(engine).now(), marks=marks), NO_POSITION, 0)
    clock(engine).t += engine.settings.resync_grace_s
    await engine.tick(0)
    clock(engine).t += 20
    await engine.tick(0)
    assert group.asked and group.asked[-1] == {"events:0": 40, "events:1": 7}
    assert await state(engine, "answered-unseen") == "ringing"  # not closed: the group is behind
    # The lagging partition delivers the call's answer and hang-up; the group catches up.
    await engine.handle(AgentAnswered("answered-unseen", "PJSIP/senior", clock(engine).now()), NO_POSITION, 0)
    await engine.handle(CallerHungUp("answered-unseen", "16", clock(engine).now()), NO_POSITION, 0)
    group.caught_up = True
    clock(engine).t += 1
    await engine.tick(0)
    assert await state(engine, "answered-unseen") == "completed"
    assert engine.metrics.calls_closed_by_resync._value.get() == 0
    assert await engine.timers.due_resyncs(clock(engine).now() + 1e9) == []  # the listing is done


async def test_resync_closes_anyway_when_the_group_does_not_catch_up_in_time(engine: RoutingEngine) -> None:
    from router.events import ResyncFinished

    engine.progress = LaggingGroup()
    await arrive(engine, "gone")
    clock(engine).t += 10
    listing = ResyncFinished(frozenset(), clock(engine).now(), marks={"events:1": 7})
    await engine.handle(listing, NO_POSITION, 0)
    clock(engine).t += engine.settings.resync_catchup_max_s - 1
    await engine.tick(0)
    assert await state(engine, "gone") == "waiting"
    clock(engine).t += 1
    await engine.tick(0)
    assert await state(engine, "gone") == "abandoned"


async def test_a_call_abandoned_during_an_ami_gap_waited_until_the_link_was_lost(
    engine: RoutingEngine,
) -> None:
    """Waiting 10 s when the link dropped, listing 10 s later: the wait is 10 s, not 20."""
    from router.events import ResyncFinished

    await arrive(engine, "gone")
    clock(engine).t += 10
    lost_at = clock(engine).now()
    clock(engine).t += 10
    await engine.handle(
        ResyncFinished(frozenset(), clock(engine).now(), link_lost_at=lost_at), NO_POSITION, 0
    )
    clock(engine).t += engine.settings.resync_grace_s
    await engine.tick(0)
    call = await engine.store.call("gone")
    assert call["state"] == "abandoned" and float(call["ended_at"]) == lost_at
    assert engine.metrics.abandon_wait.labels("billing")._sum.get() == 10.0
    assert (await engine.store.queue_stats("billing"))["abandon_wait_sum"] == 10.0


async def test_calls_a_pbx_restart_ended_are_not_abandons(engine: RoutingEngine) -> None:
    """Cut by Asterisk shutting down: live (Hangup sent while shutting down) or found
    missing by the resync after a gap that began with Event: Shutdown."""
    from router.events import ResyncFinished

    await arrive(engine, "hung-up-live")
    await arrive(engine, "missing")
    clock(engine).t += 5
    await engine.handle(
        CallerHungUp("hung-up-live", "0", clock(engine).now(), by_pbx_shutdown=True), NO_POSITION, 0
    )
    lost_at = clock(engine).now()
    clock(engine).t += 30
    await engine.handle(
        ResyncFinished(frozenset(), clock(engine).now(), link_lost_at=lost_at, pbx_restart=True),
        NO_POSITION,
        0,
    )
    clock(engine).t += engine.settings.resync_grace_s
    await engine.tick(0)
    for call_id in ("hung-up-live", "missing"):
        assert (await engine.store.call(call_id))["state"] == "pbx_restart"
    assert engine.metrics.abandoned.labels("billing")._value.get() == 0
    assert engine.metrics.ended_by_pbx_restart.labels("billing")._value.get() == 2
    assert engine.metrics.calls_closed_by_resync._value.get() == 1
    stats = await engine.store.queue_stats("billing")
    assert stats.get("abandoned", 0) == 0 and stats["ended_by_pbx_restart"] == 2


async def test_an_agent_gets_the_call_first_in_line_behind_calls_it_declined(redis: Redis) -> None:
    """Queue A's first calls were declined by the agent; A's next call is older than queue
    B's head, so it comes first (the line is read deeper than its declined heads)."""
    settings = RoutingSettings(ring_no_answer=RingNoAnswer(auto_pause=False))
    harness = EngineHarness(
        redis, [QueueConfig(name="A"), QueueConfig(name="B")], [AgentConfig(id="x")], settings
    )
    await harness.start()
    await harness.presence("x")
    for n in range(1, 10):
        await harness.arrive(f"a{n}", "A")
        harness.clock.t += 1
    await harness.arrive("b1", "B")  # later than every call of A
    for n in range(1, 9):
        assert harness.sink.last() == (f"a{n}", "x")
        event = AgentDeclined(f"a{n}", "PJSIP/x", "NOANSWER", harness.clock.now())
        await harness.engine.handle(event, NO_POSITION, 0)
    assert harness.sink.last() == ("a9", "x")
