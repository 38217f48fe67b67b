"""Routing policy: which agent takes a call, which call an agent takes. Pure: no I/O, no clock.

The Redis store makes the choice stick atomically (or reports that someone else was
faster); everything here is a function of its arguments so that property tests can
check it exhaustively.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from router import affinity
from router.domain import (
    AgentCandidate,
    AnyOf,
    QueueConfig,
    Requirements,
    Strategy,
    WaitingCall,
    format_requirements,
    requirements_met,
)
from router.immutable import immutable


@immutable
class Decision:
    """One routing decision and why it was made, for the audit trail."""

    call_id: str
    agent_id: str
    queue: str
    strategy: Strategy
    requirements: Requirements
    waited_s: float
    candidates: int
    reason: str
    path: str = ""  # affinity path taken (router/affinity.py), '' none

    def record(self) -> dict[str, str | int | float]:
        path = {"path": self.path} if self.path else {}
        return path | {
            "call_id": self.call_id,
            "agent_id": self.agent_id,
            "queue": self.queue,
            "strategy": self.strategy.value,
            "requirements": format_requirements(self.requirements),
            "waited_s": round(self.waited_s, 3),
            "candidates": self.candidates,
            "reason": self.reason,
        }


def requirements_in_force(call: WaitingCall, queue: QueueConfig, now: float) -> Requirements:
    """The call's requirements after its wait so far (relaxation is re-evaluated, never frozen)."""
    return queue.requirements_at(max(0.0, now - call.entered_at), call.requirements_override)


def qualifies(agent: AgentCandidate, call: WaitingCall, requirements: Requirements) -> bool:
    return (
        agent.active < agent.capacity
        and agent.agent_id not in call.declined_by
        and requirements_met(requirements, agent.skills)
    )


def skill_match_score(requirements: Requirements, skills: dict[str, int]) -> int:
    """Sum of the agent's levels in the skills the call asks for (best alternative per term)."""
    score = 0
    for term in requirements:
        alternatives = term.any if isinstance(term, AnyOf) else (term,)
        score += max(skills.get(alt.skill, 0) for alt in alternatives)
    return score


SortKey = tuple[float | int | str, ...]


def _strategy_key(
    strategy: Strategy, requirements: Requirements, rr_after: str
) -> Callable[[AgentCandidate], SortKey]:
    """Sort key per strategy; every key ends in agent_id so ties break deterministically."""
    if strategy is Strategy.LEAST_OCCUPIED:
        return lambda a: (a.occupancy, a.idle_since, a.agent_id)
    if strategy is Strategy.BEST_SKILL_MATCH:
        return lambda a: (-skill_match_score(requirements, a.skills), a.idle_since, a.agent_id)
    if strategy is Strategy.ROUND_ROBIN:
        # Agents after the last one offered come first, in id order, then wrap around.
        return lambda a: (0 if a.agent_id > rr_after else 1, a.agent_id)
    return lambda a: (a.idle_since, a.agent_id)


def choose_agent(
    call: WaitingCall,
    queue: QueueConfig,
    candidates: Sequence[AgentCandidate],
    now: float,
    *,
    rr_after: str = "",
) -> Decision | None:
    """The best qualified agent for ``call`` by the queue's strategy, or None."""
    requirements = requirements_in_force(call, queue, now)
    # Affinity (router/affinity.py): while the hold lasts, only its agent may take the call.
    qualified = affinity.restrict(call, [a for a in candidates if qualifies(a, call, requirements)], now)
    if not qualified:
        return None
    best = min(qualified, key=_strategy_key(queue.strategy, requirements, rr_after))
    reason = affinity.explain(call, now, _explain(queue.strategy, best, requirements, len(qualified)))
    return _decision(call, queue, best.agent_id, requirements, now, len(qualified), reason)


def _decision(
    call: WaitingCall,
    queue: QueueConfig,
    agent_id: str,
    requirements: Requirements,
    now: float,
    candidates: int,
    reason: str,
) -> Decision:
    return Decision(
        call_id=call.call_id,
        agent_id=agent_id,
        queue=queue.name,
        strategy=queue.strategy,
        requirements=requirements,
        waited_s=max(0.0, now - call.entered_at),
        candidates=candidates,
        reason=reason,
        path=affinity.path(call, now),
    )


def _explain(strategy: Strategy, agent: AgentCandidate, reqs: Requirements, n: int) -> str:
    wanted = format_requirements(reqs) or "any agent"
    detail = {
        Strategy.LONGEST_IDLE: f"idle since {agent.idle_since:.3f}, the longest",
        Strategy.LEAST_OCCUPIED: f"occupancy {agent.occupancy:.3f}, the lowest",
        Strategy.BEST_SKILL_MATCH: f"skill score {skill_match_score(reqs, agent.skills)}, the highest",
        Strategy.ROUND_ROBIN: "next in round-robin order",
    }[strategy]
    return f"{strategy.value}: {agent.agent_id} {detail} of {n} qualified for {wanted}"


def call_order_key(call: WaitingCall) -> tuple[int, float, str]:
    """Higher priority first, then longest waiting across all queues, then id."""
    return (-call.priority, call.entered_at, call.call_id)


def choose_call(
    agent: AgentCandidate,
    calls: Iterable[WaitingCall],
    queues: dict[str, QueueConfig],
    now: float,
) -> Decision | None:
    """The first call in line (priority, then wait, across queues) that ``agent`` may take."""
    for call in sorted(calls, key=call_order_key):
        queue = queues.get(call.queue)
        if queue is None:
            continue
        if affinity.held_for_another(call, agent.agent_id, now):
            continue  # waiting for its own agent (router/affinity.py)
        requirements = requirements_in_force(call, queue, now)
        if qualifies(agent, call, requirements):
            reason = (
                f"agent became available: first qualifying call in line (priority {call.priority}, "
                f"waiting {now - call.entered_at:.1f}s) for {format_requirements(requirements) or 'any agent'}"
            )
            reason = affinity.explain(call, now, reason)
            return _decision(call, queue, agent.agent_id, requirements, now, 1, reason)
    return None
