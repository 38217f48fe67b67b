"""The Lua state machine, over a real redis-server."""

from __future__ import annotations

import json

import pytest
from redis.asyncio import Redis

from router.domain import AgentConfig, AnyOf, SkillRequirement
from router.store import NO_POSITION, NewCall, Position, RedisStateStore
from router.store.replies import Enqueued

T0 = 1_800_000_000.0


@pytest.fixture
async def store(redis: Redis) -> RedisStateStore:
    return RedisStateStore(redis, "t1")


async def login(
    store: RedisStateStore, agent_id: str, skills: dict[str, int], at: float, capacity: int = 1
) -> None:
    await store.upsert_agent(AgentConfig(id=agent_id, skills=skills, capacity=capacity), at)
    await store.agent_presence(agent_id, "available", "", at, NO_POSITION)


async def enqueue(
    store: RedisStateStore,
    call_id: str,
    at: float,
    *,
    priority: int = 0,
    pos: Position = NO_POSITION,
    sl: float = 20.0,
    wrapup: float = 0.0,
) -> Enqueued:
    call = NewCall(
        call_id=call_id,
        queue="q",
        priority=priority,
        priority_explicit=False,
        requirements=None,
        channel=f"PJSIP/trunk-{call_id}",
        entered_at=at,
        relax_due=None,
        overflow_due=None,
        sl_threshold=sl,
        wrapup_s=wrapup,
    )
    return await store.enqueue(call, pos)


async def offer(store: RedisStateStore, call_id: str, agent_id: str, at: float, offer_id: str = "o1"):
    return await store.reserve(call_id, agent_id, offer_id, at, at + 10, json.dumps({"call_id": call_id}))


async def test_available_agents_are_indexed_by_skill_and_level(store: RedisStateStore) -> None:
    await login(store, "a1", {"billing": 3, "spanish": 1}, T0)
    await login(store, "a2", {"billing": 5}, T0 + 1)
    await login(store, "a3", {"spanish": 4}, T0 + 2)
    billing3 = await store.candidates((SkillRequirement(skill="billing", min_level=3),))
    assert [c.agent_id for c in billing3] == ["a1", "a2"]  # longest idle first
    billing4 = await store.candidates((SkillRequirement(skill="billing", min_level=4),))
    assert [c.agent_id for c in billing4] == ["a2"]
    both = await store.candidates((SkillRequirement(skill="billing"), SkillRequirement(skill="spanish")))
    assert [c.agent_id for c in both] == ["a1"]
    either = await store.candidates(
        (
            AnyOf(
                any=(
                    SkillRequirement(skill="billing", min_level=5),
                    SkillRequirement(skill="spanish", min_level=4),
                )
            ),
        )
    )
    assert [c.agent_id for c in either] == ["a2", "a3"]
    anyone = await store.candidates((), exclude=["a2"])
    assert [c.agent_id for c in anyone] == ["a1", "a3"]
    assert anyone[0].skills == {"billing": 3, "spanish": 1}


async def test_the_longest_idle_comes_first_whichever_level_key_holds_it(store: RedisStateStore) -> None:
    # Each level's key is read in level order without scores; agents found in several keys
    # are merged by their idle time, one key's own order is kept as Redis gives it.
    await login(store, "a-low", {"billing": 2}, T0 + 5)
    await login(store, "a-top", {"billing": 5}, T0)
    await login(store, "a-mid", {"billing": 3}, T0 + 2)
    await login(store, "b-mid", {"billing": 3}, T0 + 1)
    billing = (SkillRequirement(skill="billing", min_level=2),)
    assert [c.agent_id for c in await store.candidates(billing, limit=1)] == ["a-top"]
    ordered = await store.candidates(billing, limit=4)
    assert [c.agent_id for c in ordered] == ["a-top", "b-mid", "a-mid", "a-low"]
    assert [c.idle_since for c in ordered] == [T0, T0 + 1, T0 + 2, T0 + 5]
    # Within one key, equal idle times go by id.
    await login(store, "z3", {"support": 3}, T0)
    await login(store, "y3", {"support": 3}, T0)
    assert [c.agent_id for c in await store.candidates((SkillRequirement(skill="support"),), limit=2)] == [
        "y3",
        "z3",
    ]


async def test_times_are_stored_as_the_text_they_came_in_and_idle_scores_in_whole_ms(
    store: RedisStateStore, redis: Redis
) -> None:
    # Redis formats a Lua number with 17 digits at a cost of microseconds: a time passed in
    # is written back as its own (shortest) text, and the idle indexes hold integers.
    await login(store, "a1", {"billing": 2}, T0 + 0.1)
    assert (await enqueue(store, "c1", T0 + 0.3)).status == "queued"
    call = await redis.hgetall(store.keys.call("c1"))
    assert (call["entered_at"], call["first_entered_at"]) == ("1800000000.3", "1800000000.3")
    assert float(call["entered_at"]) == T0 + 0.3
    assert await redis.zscore(store.keys.skill_index("billing", 2), "a1") == 1_800_000_000_100
    assert (await redis.hgetall(store.keys.agent("a1")))["av_idx"] == "1800000000100"


async def test_paused_agent_leaves_the_indexes(store: RedisStateStore) -> None:
    await login(store, "a1", {"billing": 2}, T0)
    outcome = await store.agent_presence("a1", "paused", "lunch", T0 + 60, NO_POSITION)
    assert outcome.status == "changed"
    assert outcome.available_s == pytest.approx(60.0)  # seconds it was available, for occupancy
    assert await store.candidates(()) == []
    assert (await store.agent("a1"))["reason"] == "lunch"


async def test_a_phone_status_report_never_pauses_or_unpauses_a_logged_in_agent(store: RedisStateStore) -> None:
    """QueueMemberStatus (pause_known=False): on Asterisk 22 its Paused: 0 came a few ms
    before the QueueMemberPause of the router's own ring-no-answer pause; applied, it made
    the agent available (and offerable) again in between."""
    await login(store, "a1", {"billing": 2}, T0)
    await store.agent_presence("a1", "paused", "ring-no-answer", T0 + 1, NO_POSITION)
    stale = await store.agent_presence("a1", "available", "", T0 + 2, NO_POSITION, "NOT_INUSE", pause_known=False)
    assert stale.status == "unchanged"
    assert ((await store.agent("a1"))["state"], await store.candidates(())) == ("paused", [])
    unpaused = await store.agent_presence("a1", "available", "", T0 + 3, NO_POSITION)  # QueueMemberPause 0
    assert unpaused.status == "changed" and (await store.agent("a1"))["state"] == "available"
    status = await store.agent_presence("a1", "paused", "x", T0 + 4, NO_POSITION, "NOT_INUSE", pause_known=False)
    assert status.status == "unchanged" and (await store.agent("a1"))["state"] == "available"
    # A member the router missed the login of: the report logs it in, as app_queue lists it.
    await store.agent_presence("a1", "logged_out", "", T0 + 5, NO_POSITION)
    missed = await store.agent_presence("a1", "paused", "lunch", T0 + 6, NO_POSITION, "NOT_INUSE", pause_known=False)
    assert missed.status == "changed" and (await store.agent("a1"))["state"] == "paused"


async def test_enqueue_can_return_the_candidates_in_the_same_round_trip(store: RedisStateStore) -> None:
    await login(store, "a1", {"billing": 3}, T0)
    await login(store, "a2", {"billing": 1}, T0 - 5)
    call = NewCall("c1", "q", 0, False, None, "PJSIP/t-1", T0, None, None, 20.0, 0.0)
    outcome = await store.enqueue(
        call, NO_POSITION, candidates_for=(SkillRequirement(skill="billing", min_level=2),), limit=5
    )
    assert outcome.status == "queued"
    assert [c.agent_id for c in outcome.candidates] == ["a1"]


async def test_enqueue_is_idempotent(store: RedisStateStore) -> None:
    assert (await enqueue(store, "c1", T0)).status == "queued"
    assert (await enqueue(store, "c1", T0)).status == "exists"
    assert (await store.queue_stats("q"))["offered"] == 1
    assert [c.call_id for c in await store.waiting_calls()] == ["c1"]


async def test_waiting_line_orders_priority_then_wait(store: RedisStateStore) -> None:
    await enqueue(store, "old", T0)
    await enqueue(store, "new", T0 + 5)
    await enqueue(store, "vip", T0 + 9, priority=5)
    assert [c.call_id for c in await store.waiting_calls()] == ["vip", "old", "new"]


async def test_an_agent_at_capacity_cannot_be_reserved_again(store: RedisStateStore) -> None:
    await login(store, "a1", {}, T0)
    await enqueue(store, "c1", T0)
    await enqueue(store, "c2", T0)
    assert (await offer(store, "c1", "a1", T0 + 1)).status == "ok"
    assert (await offer(store, "c2", "a1", T0 + 1)).status == "agent_taken"
    assert (await offer(store, "c1", "a1", T0 + 1)).status == "call_taken"
    assert await store.candidates(()) == []


async def test_capacity_two_takes_two_calls(store: RedisStateStore) -> None:
    await login(store, "chat", {}, T0, capacity=2)
    for call_id in ("c1", "c2", "c3"):
        await enqueue(store, call_id, T0)
    assert (await offer(store, "c1", "chat", T0)).status == "ok"
    assert (await offer(store, "c2", "chat", T0)).status == "ok"
    assert (await offer(store, "c3", "chat", T0)).status == "agent_taken"


async def test_answer_then_hangup_runs_wrap_up_then_available(store: RedisStateStore) -> None:
    await login(store, "a1", {}, T0)
    await enqueue(store, "c1", T0, wrapup=30)
    await offer(store, "c1", "a1", T0 + 1)
    assert (await store.agent_rang("c1", "a1", T0 + 2, Position("ev:0", 1))).status == "ringing"
    answered = await store.agent_answered("c1", "a1", T0 + 25, Position("ev:0", 2))
    assert (answered.status, answered.waited_s, answered.queue) == ("answered", 25.0, "q")
    completed = await store.caller_hung_up("c1", T0 + 125, Position("ev:0", 3))
    assert (completed.status, completed.seconds, completed.agent_id) == ("completed", 100.0, "a1")
    agent = await store.agent("a1")
    assert agent["state"] == "wrap_up" and float(agent["handled_s"]) == 100.0
    assert await store.run_timers(T0 + 150) == ([], [])
    ended, requeued = await store.run_timers(T0 + 156)
    assert ([(w.agent_id, w.seconds, w.queue) for w in ended], requeued) == ([("a1", 30.0, "q")], [])
    agent = await store.agent("a1")
    assert agent["state"] == "available" and float(agent["handled_s"]) == 130.0
    assert float(agent["idle_since"]) == T0 + 155
    stats = await store.queue_stats("q")
    assert (stats["answered"], stats.get("answered_within", 0), stats["completed"]) == (1, 0, 1)


async def test_redelivered_events_change_nothing(store: RedisStateStore) -> None:
    await login(store, "a1", {}, T0)
    await enqueue(store, "c1", T0, pos=Position("ev:3", 10))
    await offer(store, "c1", "a1", T0 + 1)
    pos = Position("ev:3", 11)
    assert (await store.agent_answered("c1", "a1", T0 + 5, pos)).status == "answered"
    assert (await store.agent_answered("c1", "a1", T0 + 5, pos)).status == "duplicate"
    assert (await store.caller_hung_up("c1", T0 + 9, Position("ev:3", 12))).status == "completed"
    assert (await store.caller_hung_up("c1", T0 + 9, Position("ev:3", 12))).status == "duplicate"
    assert (await store.caller_hung_up("c1", T0 + 9, Position("ev:3", 11))).status == "duplicate"
    stats = await store.queue_stats("q")
    assert (stats["answered"], stats["completed"]) == (1, 1)
    assert (await store.agent("a1"))["connected"] == "0"


async def test_ring_no_answer_requeues_at_the_head_and_pauses_the_agent(store: RedisStateStore) -> None:
    await login(store, "a1", {}, T0)
    await login(store, "a2", {}, T0 + 1)
    await enqueue(store, "c1", T0)
    await enqueue(store, "c2", T0 + 3)
    await offer(store, "c1", "a1", T0 + 4)
    outcome = await store.agent_declined("c1", "a1", T0 + 20, True, "ring-no-answer", NO_POSITION)
    assert outcome.status == "declined" and outcome.paused
    line = await store.waiting_calls()
    assert [c.call_id for c in line] == ["c1", "c2"]
    assert line[0].declined_by == frozenset({"a1"})
    assert (await store.agent("a1"))["state"] == "paused"
    assert [c.agent_id for c in await store.candidates(())] == ["a2"]
    assert (await offer(store, "c1", "a1", T0 + 21)).status == "agent_taken"


async def test_declined_agent_is_never_reoffered_the_same_call(store: RedisStateStore) -> None:
    await login(store, "a1", {}, T0)
    await enqueue(store, "c1", T0)
    await offer(store, "c1", "a1", T0 + 1)
    await store.agent_declined("c1", "a1", T0 + 5, False, "", NO_POSITION)
    assert (await store.agent("a1"))["state"] == "available"
    assert (await offer(store, "c1", "a1", T0 + 6)).status == "agent_declined"


async def test_abandon_counts_short_abandons_apart(store: RedisStateStore) -> None:
    await enqueue(store, "short", T0, sl=20)
    await enqueue(store, "long", T0, sl=20)
    assert (await store.caller_hung_up("short", T0 + 10, NO_POSITION)).status == "abandoned"
    assert (await store.caller_hung_up("long", T0 + 50, NO_POSITION)).status == "abandoned"
    stats = await store.queue_stats("q")
    assert (stats["abandoned"], stats["abandoned_after"], stats["abandon_wait_sum"]) == (2, 1, 60)
    assert await store.waiting_calls() == []
    assert await store.open_call_ids() == []


async def test_abandon_while_ringing_releases_the_agent(store: RedisStateStore) -> None:
    await login(store, "a1", {}, T0)
    await enqueue(store, "c1", T0)
    await offer(store, "c1", "a1", T0 + 1)
    outcome = await store.caller_hung_up("c1", T0 + 3, NO_POSITION)
    assert (outcome.status, outcome.agent_id) == ("abandoned", "a1")
    assert [c.agent_id for c in await store.candidates(())] == ["a1"]
    # The agent keeps its place in line: an offer that came to nothing does not reset idle time.
    assert (await store.candidates(()))[0].idle_since == T0


async def test_expired_offer_goes_back_in_line(store: RedisStateStore) -> None:
    await login(store, "a1", {}, T0)
    await enqueue(store, "c1", T0)
    await store.reserve("c1", "a1", "o1", T0 + 1, T0 + 11, "{}")
    assert await store.run_timers(T0 + 10) == ([], [])
    assert await store.run_timers(T0 + 12) == ([], ["c1"])
    assert [c.call_id for c in await store.waiting_calls()] == ["c1"]
    assert [c.agent_id for c in await store.candidates(())] == ["a1"]


async def test_dispatcher_claims_only_the_current_offer(store: RedisStateStore) -> None:
    await login(store, "a1", {}, T0)
    await enqueue(store, "c1", T0)
    await offer(store, "c1", "a1", T0 + 1, offer_id="first")
    assert (await store.claim_offer("c1", "other", T0 + 60)).status == "stale"
    assert (await store.claim_offer("c1", "first", T0 + 60)).status == "ok"
    assert (await store.claim_offer("c1", "first", T0 + 60)).status == "stale"


async def test_a_claim_whose_answer_was_lost_is_the_claimants_own_and_nobody_elses(
    store: RedisStateStore,
) -> None:
    """A Redis link that hangs after the script ran loses its answer: the dispatcher asks
    again with the same claimant and must not find its own claim taken (the caller would wait
    for the dispatch timeout); a restarted dispatcher or a redelivery must (the Redirect may
    have gone out)."""
    await login(store, "a1", {}, T0)
    await enqueue(store, "c1", T0)
    await offer(store, "c1", "a1", T0 + 1, offer_id="o1")
    assert (await store.claim_offer("c1", "o1", T0 + 60, "d1:p0@7:1")).status == "ok"
    assert (await store.claim_offer("c1", "o1", T0 + 60, "d1:p0@7:1")).status == "ok"  # answer lost
    assert (await store.claim_offer("c1", "o1", T0 + 60, "d2:p0@7:1")).status == "stale"  # restarted
    assert (await store.claim_offer("c1", "o1", T0 + 60, "d1:p0@7:2")).status == "stale"  # redelivered
    assert (await store.claim_offer("c1", "o1", T0 + 60)).status == "stale"
    assert (await store.claim_offer("c1", "other", T0 + 60, "d1:p0@7:1")).status == "stale"


async def test_failed_offer_for_a_gone_channel_is_an_abandon(store: RedisStateStore) -> None:
    await login(store, "a1", {}, T0)
    await enqueue(store, "c1", T0, sl=20)
    await offer(store, "c1", "a1", T0 + 30, offer_id="o1")
    outcome = await store.offer_failed("c1", "o1", T0 + 31, channel_gone=True, pos=NO_POSITION)
    assert outcome.status == "abandoned"
    assert (await store.queue_stats("q"))["abandoned_after"] == 1
    assert (await store.caller_hung_up("c1", T0 + 32, NO_POSITION)).status == "ignored"
    assert [c.agent_id for c in await store.candidates(())] == ["a1"]


async def test_resync_closes_calls_that_ended_during_the_gap(store: RedisStateStore) -> None:
    await login(store, "a1", {}, T0)
    await enqueue(store, "gone-waiting", T0)
    await enqueue(store, "alive", T0)
    await enqueue(store, "gone-talking", T0)
    await offer(store, "gone-talking", "a1", T0 + 1)
    await store.agent_answered("gone-talking", "a1", T0 + 2, NO_POSITION)
    await enqueue(store, "after-snapshot", T0 + 100)
    closed = await store.resync_close(T0 + 50, ["alive"])
    assert sorted((c.call_id, c.outcome, c.seconds) for c in closed) == [
        ("gone-talking", "completed", 48.0),
        ("gone-waiting", "abandoned", 50.0),
    ]
    assert (await store.call("gone-waiting"))["state"] == "abandoned"
    assert (await store.call("gone-talking"))["state"] == "completed"
    assert sorted(await store.open_call_ids()) == ["after-snapshot", "alive"]
    assert (await store.agent("a1"))["connected"] == "0"


async def test_lease_has_one_holder(store: RedisStateStore) -> None:
    assert await store.hold_lease("timer_lease", "w1", 1.0)
    assert not await store.hold_lease("timer_lease", "w2", 1.0)
    assert await store.hold_lease("timer_lease", "w1", 1.0)
