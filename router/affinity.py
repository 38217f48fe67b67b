"""Affinity: a call offered first to one agent (the caller's last, or the one the dialplan
names) for a while, then routed normally. Pure: no I/O, no clock.

The hold is a filter on candidates, never a reservation: while it lasts, only its agent may
take the call (router.policy asks here), and reserve.lua stays the one place capacity is
taken. It ends at ``until`` (the timer re-runs the match then, as for a relax step), when the
agent declines the call, or, released by the router, when the agent logs out or no longer
qualifies. Every decision on such a call names the path taken (``path``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from router.domain import Affinity, AgentCandidate, QueueConfig, Requirements, WaitingCall, requirements_met

LAST_AGENT = "last_agent"
PREFERRED_AGENT = "preferred_agent"
KINDS = (LAST_AGENT, PREFERRED_AGENT)
TIMEOUT, UNAVAILABLE = "_timeout", "_unavailable"


def choose_target(
    queue: QueueConfig, preferred: str, last_seen: str, entered_at: float, now: float
) -> Affinity | None:
    """Whom a new call waits for: the agent the dialplan named, else the caller's last agent
    (``last_seen``: as remembered, 'agent at'), each only if the queue enables it."""
    if preferred and queue.preferred_agent.wait_s > 0:
        return Affinity(PREFERRED_AGENT, preferred, entered_at + queue.preferred_agent.wait_s)
    rule = queue.last_agent
    last = remembered_agent(last_seen, now, rule.window_s) if rule else None
    if rule is None or last is None:
        return None
    return Affinity(LAST_AGENT, last, entered_at + rule.wait_s)


def remembered_agent(value: str, now: float, window_s: float) -> str | None:
    """The agent in a remembered 'agent answered_at' value, if answered within the window."""
    agent, _, at = value.partition(" ")
    try:
        answered_at = float(at)
    except ValueError:
        return None
    return agent if agent and math.isfinite(answered_at) and now - answered_at <= window_s else None


def remember(agent_id: str, answered_at: float) -> str:
    return f"{agent_id} {answered_at!r}"


def eligible(state: str, skills: dict[str, int], requirements: Requirements) -> bool:
    """Whether an agent is worth waiting for: logged in (busy or paused included) and qualified."""
    return state not in ("", "logged_out") and requirements_met(requirements, skills)


def holds(call: WaitingCall, now: float) -> bool:
    """Whether only the call's affinity agent may take it now."""
    aff = call.affinity
    return aff is not None and not aff.released and now < aff.until and aff.agent_id not in call.declined_by


def held_for_another(call: WaitingCall, agent_id: str, now: float) -> bool:
    return holds(call, now) and call.affinity is not None and call.affinity.agent_id != agent_id


def restrict(call: WaitingCall, candidates: Sequence[AgentCandidate], now: float) -> list[AgentCandidate]:
    """The candidates the call may go to now: only its affinity agent while the hold lasts."""
    if not holds(call, now) or call.affinity is None:
        return list(candidates)
    return [a for a in candidates if a.agent_id == call.affinity.agent_id]


def path(call: WaitingCall, now: float) -> str:
    """Which path a decision on the call takes: '' (no affinity), ``last_agent`` /
    ``preferred_agent`` (its agent, during the hold), or the kind with ``_timeout`` (the
    wait ran out, or the agent let it ring out) or ``_unavailable`` (logged out, not qualified)."""
    aff = call.affinity
    if aff is None:
        return ""
    if holds(call, now):
        return aff.kind
    return aff.kind + (UNAVAILABLE if aff.released else TIMEOUT)


def explain(call: WaitingCall, now: float, reason: str) -> str:
    """``reason`` prefixed with the path taken and why (unchanged without an affinity)."""
    aff, taken = call.affinity, path(call, now)
    if aff is None:
        return reason
    who = "the caller's last agent" if aff.kind == LAST_AGENT else "the preferred agent"
    wait = max(0.0, aff.until - call.entered_at)
    if taken == aff.kind:
        detail = f"{who} {aff.agent_id}, waited for up to {wait:.0f}s"
    elif aff.released:
        detail = f"{who} {aff.agent_id} is logged out or not qualified"
    elif aff.agent_id in call.declined_by:
        detail = f"{who} {aff.agent_id} did not answer"
    else:
        detail = f"{who} {aff.agent_id} was not free within {wait:.0f}s"
    return f"{taken}: {detail}; {reason}"


def next_due(
    call_entered_at: float, relax_after: float | None, aff: Affinity | None, now: float
) -> float | None:
    """When the call must be looked at again: its next relax step, or its hold ending."""
    due = None if relax_after is None else call_entered_at + relax_after
    if aff is not None and not aff.released and aff.until > now:
        due = aff.until if due is None else min(due, aff.until)
    return due


def encode(aff: Affinity | None) -> str:
    """The call hash's ``aff`` field: 'kind agent until released' ('' none)."""
    if aff is None:
        return ""
    return f"{aff.kind} {aff.agent_id} {aff.until!r} {int(aff.released)}"


def decode(text: str) -> Affinity | None:
    parts = text.split(" ")
    if len(parts) != 4 or parts[0] not in KINDS:
        return None
    try:
        until = float(parts[2])
    except ValueError:
        return None
    return Affinity(parts[0], parts[1], until, parts[3] == "1")
