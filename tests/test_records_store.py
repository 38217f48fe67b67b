"""Records from the Lua transitions (docs/records.md), over a real redis-server: every way a
call ends appends exactly one revision-1 call record to the outbox in the same script, the
end of its wrap-up one more; agents' states come out as contiguous stretches; and a
redelivered event appends nothing."""

from __future__ import annotations

import json

import pytest
from redis.asyncio import Redis

from router.domain import AgentConfig, QueueConfig, RelaxStep, SkillRequirement
from router.events import CallerHungUp, CallQueued
from router.records import (
    AgentStateRecord,
    CallRecord,
    Record,
    outbox_envelope,
    record_envelope,
    record_from_outbox,
)
from router.store import NO_POSITION, NewCall, OverflowMove, Position, RedisStateStore
from router.store.admin import AdminStore
from router.store.params import ResyncGap
from tests.support import EngineHarness

T0 = 1_800_000_000.0
SITE = "rec"
BILLING3 = (SkillRequirement(skill="billing", min_level=3),)


@pytest.fixture
async def store(redis: Redis) -> RedisStateStore:
    return RedisStateStore(redis, SITE)


async def outbox(store: RedisStateStore) -> list[Record]:
    """The outbox's records; and every entry is published (``outbox_envelope``) as the
    byte-identical envelope of its record."""
    entries = await store.redis.xrange(store.keys.outbox)
    records = [record_from_outbox(SITE, entry_id, fields) for entry_id, fields in entries]
    for (entry_id, fields), record in zip(entries, records, strict=True):
        _, published = outbox_envelope(SITE, entry_id, fields, "router:rec")
        assert published.encode() == record_envelope(record, "router:rec").encode()
    return records


async def call_records(store: RedisStateStore, call_id: str | None = None) -> list[CallRecord]:
    found = [r for r in await outbox(store) if isinstance(r, CallRecord)]
    return [r for r in found if call_id is None or r.call_id == call_id]


async def agent_records(store: RedisStateStore, agent_id: str) -> list[AgentStateRecord]:
    return [r for r in await outbox(store) if isinstance(r, AgentStateRecord) and r.agent_id == agent_id]


async def login(
    store: RedisStateStore, agent_id: str, at: float, skills: dict[str, int] | None = None
) -> None:
    await store.upsert_agent(AgentConfig(id=agent_id, skills=skills or {"billing": 3}), at)
    await store.agent_presence(agent_id, "available", "", at, NO_POSITION)


async def enqueue(
    store: RedisStateStore,
    call_id: str,
    at: float,
    *,
    queue: str = "q",
    sl: float = 20.0,
    wrapup: float = 0.0,
    pos: Position = NO_POSITION,
) -> None:
    call = NewCall(
        call_id=call_id,
        queue=queue,
        priority=2,
        priority_explicit=False,
        requirements=None,
        channel=f"PJSIP/trunk-{call_id}",
        entered_at=at,
        relax_due=None,
        overflow_due=None,
        sl_threshold=sl,
        wrapup_s=wrapup,
        caller_number="+15550001",
        caller_name="Ann Smith",
        requirements_in_force=BILLING3,
    )
    assert (await store.enqueue(call, pos)).status in ("queued", "requeued")


def decision(agent_id: str) -> str:
    return json.dumps({"requirements": "billing>=3", "reason": f"longest-idle: {agent_id} idle the longest"})


async def answer(
    store: RedisStateStore, call_id: str, agent_id: str, offered: float, answered: float
) -> None:
    offer_id = f"o-{call_id}-{offered}"
    assert (
        await store.reserve(call_id, agent_id, offer_id, offered, offered + 10, decision(agent_id))
    ).status == "ok"
    assert (await store.agent_answered(call_id, agent_id, answered, NO_POSITION)).status == "answered"


async def test_an_answered_call_gives_one_record_at_its_end_and_one_more_after_wrap_up(
    store: RedisStateStore,
) -> None:
    await login(store, "a1", T0 - 100)
    await enqueue(store, "c1", T0, wrapup=30)
    await answer(store, "c1", "a1", T0 + 2, T0 + 5)
    assert await call_records(store) == []  # nothing until the call ends
    await store.caller_hung_up("c1", T0 + 65, Position("ev:0", 7))

    [first] = await call_records(store)
    assert (first.revision, first.outcome, first.call_id, first.site) == (1, "answered", "c1", SITE)
    assert (first.queue, first.first_queue, first.priority) == ("q", "q", 2)
    assert (first.caller_number, first.caller_name) == ("+15550001", "Ann Smith")
    assert (first.entered_at, first.first_offered_at, first.answered_at, first.ended_at) == (
        T0,
        T0 + 2,
        T0 + 5,
        T0 + 65,
    )
    assert (first.wait_s, first.talk_s, first.wrapup_s) == (5.0, 60.0, None)
    assert (first.agent_id, first.offers, first.ring_no_answers) == ("a1", 1, 0)
    assert first.requirements == "billing>=3" and first.decision_reason == "longest-idle: a1 idle the longest"
    assert (first.sl_threshold_s, first.answered_within_threshold, first.abandoned_within_threshold) == (
        20.0,
        True,
        False,
    )
    assert first.record_id.startswith(f"{SITE}:") and (first.recording, first.qa_sampled) == ("", False)

    await store.run_timers(T0 + 100)
    first_again, second = await call_records(store)
    assert first_again == first
    assert (second.revision, second.wrapup_s) == (2, 30.0)
    assert second.record_id != first.record_id
    # Otherwise the same call as at its end.
    assert {k: v for k, v in vars_of(second).items() if k not in ("revision", "wrapup_s", "record_id")} == {
        k: v for k, v in vars_of(first).items() if k not in ("revision", "wrapup_s", "record_id")
    }


def vars_of(record: CallRecord) -> dict[str, object]:
    return {name: getattr(record, name) for name in record.__dataclass_fields__}


async def test_a_redelivered_event_appends_nothing(store: RedisStateStore) -> None:
    await login(store, "a1", T0 - 100)
    await enqueue(store, "c1", T0, wrapup=10, pos=Position("ev:0", 1))
    await answer(store, "c1", "a1", T0 + 1, T0 + 3)
    hangup = Position("ev:0", 9)
    assert (await store.caller_hung_up("c1", T0 + 20, hangup)).status == "completed"
    before = await store.redis.xlen(store.keys.outbox)
    again = NewCall("c1", "q", 2, False, None, "PJSIP/trunk-c1", T0, None, None, 20.0, 10.0)
    assert (await store.enqueue(again, Position("ev:0", 1))).status == "exists"
    assert (await store.caller_hung_up("c1", T0 + 20, hangup)).status == "duplicate"
    assert (await store.agent_answered("c1", "a1", T0 + 3, Position("ev:0", 5))).status != "answered"
    assert await store.redis.xlen(store.keys.outbox) == before
    assert len(await call_records(store, "c1")) == 1


async def test_abandons_say_whether_they_were_short(store: RedisStateStore) -> None:
    await enqueue(store, "short", T0, sl=20)
    await enqueue(store, "long", T0, sl=20)
    await enqueue(store, "edge", T0, sl=20)
    await store.caller_hung_up("short", T0 + 10, NO_POSITION)
    await store.caller_hung_up("long", T0 + 30, NO_POSITION)
    await store.caller_hung_up("edge", T0 + 20, NO_POSITION)
    records = {r.call_id: r for r in await call_records(store)}
    assert {c: (r.outcome, r.wait_s, r.abandoned_within_threshold) for c, r in records.items()} == {
        "short": ("abandoned", 10.0, True),
        "long": ("abandoned", 30.0, False),
        "edge": ("abandoned", 20.0, True),  # within T counts as the queue's statistics count it
    }
    for record in records.values():
        assert (record.agent_id, record.answered_at, record.talk_s, record.wrapup_s) == ("", None, 0.0, None)
        assert not record.answered_within_threshold and record.first_offered_at is None
    stats = await store.queue_stats("q")
    assert stats["abandoned_after"] == sum(not r.abandoned_within_threshold for r in records.values())


async def test_ring_no_answers_and_offers_are_counted_and_the_answering_agent_named(
    store: RedisStateStore,
) -> None:
    await login(store, "a1", T0 - 100)
    await login(store, "a2", T0 - 50)
    await enqueue(store, "c1", T0, sl=20)
    await store.reserve("c1", "a1", "o1", T0 + 1, T0 + 11, decision("a1"))
    await store.agent_declined("c1", "a1", T0 + 16, True, "ring-no-answer", NO_POSITION)
    await answer(store, "c1", "a2", T0 + 17, T0 + 24)
    await store.caller_hung_up("c1", T0 + 40, NO_POSITION)
    [record] = await call_records(store)
    assert (record.offers, record.ring_no_answers, record.agent_id) == (2, 1, "a2")
    assert record.first_offered_at == T0 + 1
    assert (record.wait_s, record.answered_within_threshold) == (24.0, False)
    assert record.decision_reason == "longest-idle: a2 idle the longest"


async def test_a_call_abandoned_while_ringing_names_no_agent(store: RedisStateStore) -> None:
    await login(store, "a1", T0 - 100)
    await enqueue(store, "c1", T0)
    await store.reserve("c1", "a1", "o1", T0 + 1, T0 + 11, decision("a1"))
    await store.agent_rang("c1", "a1", T0 + 2, NO_POSITION)
    await store.caller_hung_up("c1", T0 + 4, NO_POSITION)
    [record] = await call_records(store)
    assert (record.outcome, record.agent_id, record.offers, record.decision_reason) == (
        "abandoned",
        "",
        1,
        "",
    )


async def test_overflow_to_another_queue_keeps_the_first_queue(store: RedisStateStore) -> None:
    await login(store, "a1", T0 - 100)
    await enqueue(store, "c1", T0, queue="first", sl=20)
    move = OverflowMove("second", None, 30.0, 0.0, None, None, requirements_in_force=())
    assert (await store.overflow("c1", T0 + 60, "first", move)).status == "queued"
    await answer(store, "c1", "a1", T0 + 61, T0 + 70)
    await store.caller_hung_up("c1", T0 + 100, NO_POSITION)
    [record] = await call_records(store)
    assert (record.queue, record.first_queue, record.outcome) == ("second", "first", "answered")
    # The caller's first entry, and the wait in the queue that answered (as its statistics count it).
    assert (record.entered_at, record.queue_entered_at, record.wait_s) == (T0, T0 + 60, 10.0)
    assert (record.sl_threshold_s, record.answered_within_threshold) == (30.0, True)


async def test_overflow_out_of_the_acd_ends_the_call_overflowed(store: RedisStateStore) -> None:
    await enqueue(store, "c1", T0)
    assert (await store.overflow("c1", T0 + 45, "q", None)).status == "target"
    [record] = await call_records(store)
    assert (record.outcome, record.wait_s, record.ended_at, record.requirements) == (
        "overflowed",
        45.0,
        T0 + 45,
        "billing>=3",
    )


async def test_a_failed_offer_with_the_caller_gone_is_an_abandon(store: RedisStateStore) -> None:
    await login(store, "a1", T0 - 100)
    await enqueue(store, "c1", T0)
    await store.reserve("c1", "a1", "o1", T0 + 1, T0 + 11, decision("a1"))
    await store.claim_offer("c1", "o1", T0 + 11)
    assert (
        await store.offer_failed("c1", "o1", T0 + 3, channel_gone=True, pos=NO_POSITION)
    ).status == "abandoned"
    [record] = await call_records(store)
    assert (record.outcome, record.wait_s, record.offers, record.agent_id) == ("abandoned", 3.0, 1, "")


async def test_a_pbx_shutdown_cuts_a_waiting_call_off(store: RedisStateStore) -> None:
    await enqueue(store, "c1", T0)
    await store.caller_hung_up("c1", T0 + 7, NO_POSITION, by_pbx_shutdown=True)
    [record] = await call_records(store)
    assert (record.outcome, record.abandoned_within_threshold) == ("pbx_restart", False)


async def test_a_resync_closes_calls_as_closed_by_resync(store: RedisStateStore) -> None:
    await login(store, "a1", T0 - 100)
    await enqueue(store, "talking", T0)
    await answer(store, "talking", "a1", T0 + 1, T0 + 2)
    await enqueue(store, "waiting", T0 + 1)
    await enqueue(store, "cut", T0 + 1)
    await store.resync_close(T0 + 50, ["cut"], gap=ResyncGap(link_lost_at=T0 + 40))
    await store.resync_close(T0 + 60, [], gap=ResyncGap(link_lost_at=T0 + 55, pbx_restart=True))
    records = {r.call_id: r for r in await call_records(store)}
    assert {c: (r.outcome, r.ended_at) for c, r in records.items()} == {
        "talking": ("closed_by_resync", T0 + 40),
        "waiting": ("closed_by_resync", T0 + 40),
        "cut": ("pbx_restart", T0 + 55),
    }
    assert (records["talking"].agent_id, records["talking"].talk_s, records["talking"].wrapup_s) == (
        "a1",
        38.0,
        0.0,
    )


async def test_a_transfer_ends_the_call_transferred_and_wrap_up_follows(store: RedisStateStore) -> None:
    await login(store, "a1", T0 - 100)
    await enqueue(store, "c1", T0, wrapup=20)
    await answer(store, "c1", "a1", T0 + 1, T0 + 4)
    assert (
        await store.call_transferred("c1", "a1", "blind", "ext,100", T0 + 30, NO_POSITION)
    ).status == "marked"
    assert await call_records(store) == []  # the agent is still on the line
    assert (await store.agent_leg_ended("c1", "a1", T0 + 31, NO_POSITION)).status == "transferred"
    [record] = await call_records(store)
    assert (record.outcome, record.talk_s, record.agent_id, record.wrapup_s) == (
        "transferred",
        27.0,
        "a1",
        None,
    )
    await store.run_timers(T0 + 60)
    assert [(r.revision, r.wrapup_s) for r in await call_records(store)] == [(1, None), (2, 20.0)]


async def test_a_caller_transferred_back_into_a_queue_is_a_second_visit(store: RedisStateStore) -> None:
    await login(store, "a1", T0 - 100)
    await login(store, "a2", T0 - 50)
    await enqueue(store, "c1", T0, wrapup=0)
    await answer(store, "c1", "a1", T0 + 1, T0 + 4)
    await store.call_transferred("c1", "a1", "blind", "acd-inbound,5000", T0 + 30, NO_POSITION)
    await store.agent_leg_ended("c1", "a1", T0 + 30, NO_POSITION)
    await enqueue(store, "c1", T0 + 31, queue="second")  # the caller announced again
    await answer(store, "c1", "a2", T0 + 32, T0 + 35)
    await store.caller_hung_up("c1", T0 + 95, NO_POSITION)
    first, second = await call_records(store, "c1")
    assert (first.segment, first.revision, first.outcome, first.agent_id, first.wrapup_s) == (
        1,
        1,
        "transferred",
        "a1",
        0.0,
    )
    assert (second.segment, second.revision, second.outcome, second.agent_id) == (2, 2, "answered", "a2")
    assert (second.first_queue, second.queue, second.entered_at, second.queue_entered_at) == (
        "q",
        "second",
        T0,
        T0 + 31,
    )
    assert (second.offers, second.first_offered_at, second.wait_s, second.talk_s) == (1, T0 + 32, 4.0, 60.0)


async def test_the_api_finishing_wrap_up_completes_the_record(store: RedisStateStore, redis: Redis) -> None:
    await login(store, "a1", T0 - 100)
    await enqueue(store, "c1", T0, wrapup=60)
    await answer(store, "c1", "a1", T0 + 1, T0 + 2)
    await store.caller_hung_up("c1", T0 + 12, NO_POSITION)
    finished = await AdminStore(redis, SITE).finish_wrapup("a1", T0 + 20)
    assert finished.status == "ok"
    assert [(r.revision, r.wrapup_s) for r in await call_records(store)] == [(1, None), (2, 8.0)]
    await store.run_timers(T0 + 100)  # nothing left to end
    assert len(await call_records(store)) == 2


async def test_requirements_are_those_in_force_when_the_call_ended(store: RedisStateStore) -> None:
    await enqueue(store, "c1", T0)
    relaxed = (SkillRequirement(skill="billing", min_level=1),)
    await store.set_relax_due("c1", None, requirements=relaxed)
    await store.caller_hung_up("c1", T0 + 40, NO_POSITION)
    [record] = await call_records(store)
    assert record.requirements == "billing>=1"


async def test_agent_states_are_contiguous_stretches(store: RedisStateStore) -> None:
    await store.upsert_agent(AgentConfig(id="a1", skills={"billing": 3}), T0)
    await store.agent_presence("a1", "available", "", T0 + 10, NO_POSITION)
    await enqueue(store, "c1", T0 + 11, wrapup=15)
    await store.reserve("c1", "a1", "o1", T0 + 12, T0 + 22, decision("a1"))
    await store.agent_answered("c1", "a1", T0 + 14, NO_POSITION)
    await store.caller_hung_up("c1", T0 + 74, NO_POSITION)
    await store.run_timers(T0 + 90)
    await store.agent_presence("a1", "paused", "lunch", T0 + 100, NO_POSITION)
    await store.agent_presence("a1", "paused", "training", T0 + 130, NO_POSITION)
    await store.agent_presence("a1", "logged_out", "", T0 + 160, NO_POSITION)
    stretches = [(r.state, r.reason, r.start, r.end, r.duration_s) for r in await agent_records(store, "a1")]
    assert stretches == [
        ("logged_out", "", T0, T0 + 10, 10.0),
        ("available", "", T0 + 10, T0 + 12, 2.0),
        ("reserved", "", T0 + 12, T0 + 14, 2.0),
        ("on_call", "", T0 + 14, T0 + 74, 60.0),
        ("wrap_up", "", T0 + 74, T0 + 89, 15.0),  # ended when it was due, not at the tick
        ("available", "", T0 + 89, T0 + 100, 11.0),
        ("paused", "lunch", T0 + 100, T0 + 130, 30.0),
        ("paused", "training", T0 + 130, T0 + 160, 30.0),
    ]


async def test_changes_that_keep_the_state_append_no_agent_record(store: RedisStateStore) -> None:
    await login(store, "a1", T0)
    before = await store.redis.xlen(store.keys.outbox)
    await store.agent_device("a1", "INUSE", T0 + 1, NO_POSITION)
    await store.agent_device("a1", "NOT_INUSE", T0 + 2, NO_POSITION)
    await store.agent_presence("a1", "available", "", T0 + 3, NO_POSITION)
    await store.upsert_agent(AgentConfig(id="a1", skills={"billing": 4}), T0 + 4)
    assert await store.redis.xlen(store.keys.outbox) == before


async def test_a_declined_offer_with_auto_pause_records_reserved_then_paused(store: RedisStateStore) -> None:
    await login(store, "a1", T0)
    await enqueue(store, "c1", T0 + 1)
    await store.reserve("c1", "a1", "o1", T0 + 2, T0 + 12, decision("a1"))
    await store.agent_declined("c1", "a1", T0 + 17, True, "ring-no-answer", NO_POSITION)
    await store.agent_presence("a1", "available", "", T0 + 40, NO_POSITION)
    stretches = [(r.state, r.reason, r.start, r.end) for r in await agent_records(store, "a1")][1:]
    assert stretches == [
        ("available", "", T0, T0 + 2),
        ("reserved", "", T0 + 2, T0 + 17),
        ("paused", "ring-no-answer", T0 + 17, T0 + 40),
    ]


async def test_a_pause_during_wrap_up_ends_it_and_completes_the_call_record(store: RedisStateStore) -> None:
    await login(store, "a1", T0)
    await enqueue(store, "c1", T0, wrapup=60)
    await answer(store, "c1", "a1", T0 + 1, T0 + 2)
    await store.caller_hung_up("c1", T0 + 10, NO_POSITION)
    await store.agent_presence("a1", "paused", "break", T0 + 25, NO_POSITION)
    assert [(r.revision, r.wrapup_s) for r in await call_records(store)] == [(1, None), (2, 15.0)]
    assert [(r.state, r.end) for r in await agent_records(store, "a1")][-1] == ("wrap_up", T0 + 25)


async def test_the_engine_gives_the_record_its_caller_and_the_relaxed_requirements(redis: Redis) -> None:
    queue = QueueConfig(
        name="billing",
        requirements=BILLING3,
        relax=(RelaxStep(after_s=30, requirements=(SkillRequirement(skill="billing", min_level=1),)),),
    )
    harness = await EngineHarness(redis, [queue], [AgentConfig(id="a1", skills={"support": 5})]).start()
    at = harness.clock.now()
    event = CallQueued(
        "c1", "PJSIP/trunk-1", "billing", at, caller_number="+15551234", caller_name="Ann Smith"
    )
    await harness.engine.handle(event, NO_POSITION, 0)
    await harness.advance(31)  # nobody qualifies; the requirements relax
    await harness.engine.handle(CallerHungUp("c1", "16", harness.clock.now()), NO_POSITION, 0)
    entries = await redis.xrange(harness.store.keys.outbox)
    [record] = [r for r in (record_from_outbox("e", i, f) for i, f in entries) if isinstance(r, CallRecord)]
    assert (record.caller_number, record.caller_name, record.outcome) == (
        "+15551234",
        "Ann Smith",
        "abandoned",
    )
    assert record.requirements == "billing>=1" and record.wait_s == 31.0
