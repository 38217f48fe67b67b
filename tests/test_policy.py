"""Properties of the pure routing policy (hypothesis)."""

from __future__ import annotations

import itertools
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from router.domain import (
    AgentCandidate,
    AnyOf,
    QueueConfig,
    RelaxStep,
    Requirements,
    SkillRequirement,
    Strategy,
    WaitingCall,
    requirements_met,
)
from router.policy import call_order_key, choose_agent, choose_call, requirements_in_force, skill_match_score

SKILLS = ["billing", "support", "spanish", "french"]
NOW = 10_000.0

skill_requirements = st.builds(SkillRequirement, skill=st.sampled_from(SKILLS), min_level=st.integers(1, 5))
terms = st.one_of(
    skill_requirements, st.builds(AnyOf, any=st.lists(skill_requirements, min_size=1, max_size=3).map(tuple))
)
requirement_sets: st.SearchStrategy[Requirements] = st.lists(terms, max_size=3).map(tuple)
skill_maps = st.dictionaries(st.sampled_from(SKILLS), st.integers(1, 5), max_size=4)


@st.composite
def agents(draw: st.DrawFn) -> list[AgentCandidate]:
    count = draw(st.integers(0, 12))
    return [
        AgentCandidate(
            agent_id=f"a{i:02d}",
            idle_since=draw(st.sampled_from([0.0, 10.0, 20.0, 30.0])),
            skills=draw(skill_maps),
            capacity=draw(st.integers(1, 2)),
            active=draw(st.integers(0, 2)),
            handled_s=draw(st.floats(0, 1000)),
            available_s=draw(st.floats(0, 1000)),
        )
        for i in range(count)
    ]


@st.composite
def queues(draw: st.DrawFn) -> QueueConfig:
    steps = draw(st.lists(st.integers(1, 300), max_size=3, unique=True).map(sorted))
    return QueueConfig(
        name="q",
        requirements=draw(requirement_sets),
        relax=tuple(RelaxStep(after_s=float(t), requirements=draw(requirement_sets)) for t in steps),
        strategy=draw(st.sampled_from(list(Strategy))),
    )


@st.composite
def calls(draw: st.DrawFn) -> WaitingCall:
    return WaitingCall(
        call_id=draw(st.sampled_from(["c1", "c2", "c3", "c4", "c5"])),
        queue="q",
        priority=draw(st.integers(-2, 2)),
        entered_at=NOW - draw(st.integers(0, 400)),
        declined_by=frozenset(draw(st.lists(st.sampled_from([f"a{i:02d}" for i in range(12)]), max_size=3))),
    )


@given(queues(), calls(), agents(), st.sampled_from(["", "a03", "a07"]))
def test_chosen_agent_meets_requirements_in_force_and_has_capacity(
    queue: QueueConfig, call: WaitingCall, candidates: list[AgentCandidate], rr_after: str
) -> None:
    decision = choose_agent(call, queue, candidates, NOW, rr_after=rr_after)
    in_force = requirements_in_force(call, queue, NOW)
    qualified = [
        a
        for a in candidates
        if requirements_met(in_force, a.skills)
        and a.active < a.capacity
        and a.agent_id not in call.declined_by
    ]
    if not qualified:
        assert decision is None
        return
    assert decision is not None
    chosen = next(a for a in candidates if a.agent_id == decision.agent_id)
    assert chosen in qualified
    assert decision.requirements == in_force
    if queue.strategy is Strategy.LONGEST_IDLE:
        assert (chosen.idle_since, chosen.agent_id) == min((a.idle_since, a.agent_id) for a in qualified)
    if queue.strategy is Strategy.BEST_SKILL_MATCH:
        assert skill_match_score(in_force, chosen.skills) == max(
            skill_match_score(in_force, a.skills) for a in qualified
        )
    if queue.strategy is Strategy.LEAST_OCCUPIED:
        assert chosen.occupancy == min(a.occupancy for a in qualified)
    if queue.strategy is Strategy.ROUND_ROBIN:
        after = sorted(a.agent_id for a in qualified if a.agent_id > rr_after)
        assert chosen.agent_id == (after[0] if after else min(a.agent_id for a in qualified))


@given(queues(), calls(), agents(), st.randoms(use_true_random=False))
def test_decision_does_not_depend_on_candidate_order(
    queue: QueueConfig, call: WaitingCall, candidates: list[AgentCandidate], rng: random.Random
) -> None:
    shuffled = list(candidates)
    rng.shuffle(shuffled)
    first = choose_agent(call, queue, candidates, NOW)
    second = choose_agent(call, queue, shuffled, NOW)
    assert (first and first.agent_id) == (second and second.agent_id)


@given(queues(), st.floats(0, 500))
def test_relaxation_takes_effect_at_the_configured_times(queue: QueueConfig, waited: float) -> None:
    reached = [step for step in queue.relax if waited >= step.after_s]
    expected = reached[-1].requirements if reached else queue.requirements
    assert queue.requirements_at(waited) == expected
    upcoming = queue.next_relax_after(waited)
    assert upcoming is None or upcoming > waited


@given(st.lists(calls(), min_size=1, max_size=8, unique_by=lambda c: c.call_id), st.data())
def test_agent_takes_highest_priority_then_longest_waiting_call_it_qualifies_for(
    line: list[WaitingCall], data: st.DataObject
) -> None:
    queue = data.draw(queues())
    agent = AgentCandidate(agent_id="a05", idle_since=0.0, skills=data.draw(skill_maps))
    decision = choose_call(agent, line, {"q": queue}, NOW)
    eligible = [
        c
        for c in line
        if agent.agent_id not in c.declined_by
        and requirements_met(requirements_in_force(c, queue, NOW), agent.skills)
    ]
    if not eligible:
        assert decision is None
        return
    assert decision is not None
    assert decision.call_id == min(eligible, key=call_order_key).call_id


@settings(max_examples=50)
@given(st.lists(calls(), min_size=2, max_size=6, unique_by=lambda c: c.call_id))
def test_line_order_is_priority_then_wait_across_queues(line: list[WaitingCall]) -> None:
    ordered = sorted(line, key=call_order_key)
    for earlier, later in itertools.pairwise(ordered):
        assert earlier.priority > later.priority or (
            earlier.priority == later.priority and earlier.entered_at <= later.entered_at
        )


def test_relaxation_example_spanish_after_thirty_seconds() -> None:
    queue = QueueConfig(
        name="billing",
        requirements=(SkillRequirement(skill="billing", min_level=3),),
        relax=(RelaxStep(after_s=30, requirements=(SkillRequirement(skill="billing", min_level=1),)),),
    )
    junior = AgentCandidate(agent_id="junior", idle_since=0.0, skills={"billing": 1})
    call = WaitingCall("c1", "billing", 0, entered_at=NOW - 29)
    assert choose_agent(call, queue, [junior], NOW) is None
    later = choose_agent(call, queue, [junior], NOW + 1)
    assert later is not None and later.agent_id == "junior"
    assert "billing>=1" in later.reason
