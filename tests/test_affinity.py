"""Affinity's pure rules (router/affinity.py) and how the policy applies them."""

from __future__ import annotations

from dataclasses import replace

import pytest

from router import affinity
from router.ami.translate import translate
from router.domain import (
    Affinity,
    AgentCandidate,
    LastAgentRouting,
    PreferredAgentRouting,
    QueueConfig,
    SkillRequirement,
    WaitingCall,
)
from router.envelope import Envelope
from router.events import CallQueued
from router.policy import choose_agent, choose_call

BILLING = (SkillRequirement(skill="billing", min_level=2),)
QUEUE = QueueConfig(
    name="billing", requirements=BILLING, last_agent=LastAgentRouting(window_s=3600, wait_s=20)
)
PLAIN = QueueConfig(name="plain")
T = 1000.0


def agent(agent_id: str, idle_since: float = 0.0) -> AgentCandidate:
    return AgentCandidate(agent_id, idle_since, {"billing": 3})


def held(kind: str = affinity.LAST_AGENT, agent_id: str = "a2", *, released: bool = False) -> WaitingCall:
    return WaitingCall("c1", "billing", 0, T, affinity=Affinity(kind, agent_id, T + 20, released))


def test_the_preferred_agent_comes_before_the_last_and_each_needs_its_queue_to_allow_it() -> None:
    last_seen = affinity.remember("a1", T - 60)
    assert affinity.choose_target(QUEUE, "a9", last_seen, T, T) == Affinity("preferred_agent", "a9", T + 20)
    assert affinity.choose_target(QUEUE, "", last_seen, T, T) == Affinity("last_agent", "a1", T + 20)
    assert affinity.choose_target(PLAIN, "", last_seen, T, T) is None  # no last_agent: in this queue
    off = QUEUE.model_copy(update={"preferred_agent": PreferredAgentRouting(wait_s=0)})
    assert affinity.choose_target(off, "a9", last_seen, T, T) == Affinity("last_agent", "a1", T + 20)


def test_a_last_agent_is_remembered_for_the_window_only() -> None:
    assert affinity.remembered_agent(affinity.remember("a1", T), T + 3600, 3600) == "a1"
    assert affinity.remembered_agent(affinity.remember("a1", T), T + 3601, 3600) is None
    for junk in ("", "a1", "a1 soon", "a1 nan", " 5"):
        assert affinity.remembered_agent(junk, T, 3600) is None


@pytest.mark.parametrize(
    ("state", "skills", "worth"),
    [
        ("available", {"billing": 2}, True),
        ("wrap_up", {"billing": 5}, True),
        ("paused", {"billing": 2}, True),
        ("logged_out", {"billing": 5}, False),
        ("", {}, False),  # not an agent the router knows
        ("available", {"billing": 1}, False),
    ],
)
def test_an_agent_is_worth_waiting_for_while_logged_in_and_qualified(
    state: str, skills: dict[str, int], worth: bool
) -> None:
    assert affinity.eligible(state, skills, BILLING) is worth


def test_while_held_only_its_agent_may_take_the_call_and_the_decision_says_so() -> None:
    call = held()
    assert choose_agent(call, QUEUE, [agent("a1", 0), agent("a3", 1)], T + 5) is None
    decision = choose_agent(call, QUEUE, [agent("a1", 0), agent("a2", 9)], T + 5)
    assert decision is not None and decision.agent_id == "a2"
    assert decision.path == "last_agent" and decision.record()["path"] == "last_agent"
    assert decision.reason.startswith(
        "last_agent: the caller's last agent a2, waited for up to 20s; longest-idle"
    )


def test_when_the_wait_ends_the_call_is_routed_normally_and_the_reason_says_why() -> None:
    decision = choose_agent(held(), QUEUE, [agent("a1", 0), agent("a2", 9)], T + 20)
    assert decision is not None and (decision.agent_id, decision.path) == ("a1", "last_agent_timeout")
    assert decision.reason.startswith(
        "last_agent_timeout: the caller's last agent a2 was not free within 20s;"
    )
    released = held(affinity.PREFERRED_AGENT, released=True)
    decision = choose_agent(released, QUEUE, [agent("a1", 0)], T + 1)
    assert decision is not None and decision.path == "preferred_agent_unavailable"
    assert "the preferred agent a2 is logged out or not qualified" in decision.reason


def test_an_agent_who_let_the_call_ring_out_ends_the_wait() -> None:
    call = replace(held(), declined_by=frozenset({"a2"}))
    assert not affinity.holds(call, T + 1)
    decision = choose_agent(call, QUEUE, [agent("a1")], T + 1)
    assert decision is not None and decision.path == "last_agent_timeout"
    assert "a2 did not answer" in decision.reason


def test_another_free_agent_skips_a_held_call_for_the_next_in_line() -> None:
    later = WaitingCall("c2", "billing", 0, T + 1)
    decision = choose_call(agent("a1"), [held(), later], {"billing": QUEUE}, T + 5)
    assert decision is not None and decision.call_id == "c2" and decision.path == ""
    mine = choose_call(agent("a2"), [held(), later], {"billing": QUEUE}, T + 5)
    assert mine is not None and (mine.call_id, mine.path) == ("c1", "last_agent")
    after = choose_call(agent("a1"), [held(), later], {"billing": QUEUE}, T + 20)
    assert after is not None and (after.call_id, after.path) == ("c1", "last_agent_timeout")


def test_a_call_without_affinity_decides_as_before() -> None:
    decision = choose_agent(WaitingCall("c1", "billing", 0, T), QUEUE, [agent("a1")], T)
    assert decision is not None and decision.path == "" and "path" not in decision.record()
    assert decision.reason.startswith("longest-idle:")


def test_the_hold_falls_due_like_a_relax_step() -> None:
    aff = Affinity("last_agent", "a2", T + 20)
    assert affinity.next_due(T, None, aff, T) == T + 20
    assert affinity.next_due(T, 10, aff, T) == T + 10
    assert affinity.next_due(T, 30, aff, T + 12) == T + 20
    assert affinity.next_due(T, 30, aff, T + 20) == T + 30  # over: the relax step only
    assert affinity.next_due(T, None, replace(aff, released=True), T) is None


def test_affinity_round_trips_through_the_call_hash() -> None:
    for aff in (Affinity("last_agent", "a.b-1", 1767225600.125), Affinity("preferred_agent", "x", 5.0, True)):
        assert affinity.decode(affinity.encode(aff)) == aff
    assert affinity.encode(None) == ""
    for junk in ("", "other a 1 0", "last_agent a soon 0", "last_agent a 1"):
        assert affinity.decode(junk) is None


def test_the_preferred_agent_is_read_from_the_user_event_or_the_channel_variable() -> None:
    base = {"Event": "UserEvent", "UserEvent": "AcdCallQueued", "Uniqueid": "1.1", "Linkedid": "1.1"}
    given = ({"PreferredAgent": " a7 "}, {"ChanVariable": ["ACD_PREFERRED_AGENT=a8"]}, {"PreferredAgent": ""})
    found = [translate(ami_event(base | {"Queue": "billing"} | extra)) for extra in given]
    assert [e.preferred_agent if isinstance(e, CallQueued) else None for e in found] == ["a7", "a8", ""]


def ami_event(fields: dict[str, object]) -> Envelope:
    return Envelope(type="ami.event", id="e1", source="test", ts=T, key="call:1.1", data=fields)
