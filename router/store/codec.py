"""How values cross into and out of the scripts: the argument encodings and reply parsers
every store shares. Replies are read by position here and in router.store.replies only."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import orjson

from router import affinity
from router.domain import (
    AgentCandidate,
    AgentConfig,
    AnyOf,
    Requirements,
    WaitingCall,
    format_requirements,
    parse_requirements,
)

CANDIDATE_WIDTH = 8  # fields per agent in a candidates answer (see _lib.lua find_candidates)
WAITING_WIDTH = 8  # fields per call in a waiting-line answer (see _lib.lua push_waiting_call)

# -- arguments ------------------------------------------------------------------------------


def flag_arg(value: bool) -> str:
    return "1" if value else "0"


def optional_arg(value: float | int | None) -> str:
    return "" if value is None else str(value)


def requirement_terms(requirements: Requirements) -> list[list[list[str | int]]]:
    """Requirements as the candidates script reads them: terms of alternatives."""
    terms: list[list[list[str | int]]] = []
    for term in requirements:
        alternatives = term.any if isinstance(term, AnyOf) else (term,)
        terms.append([[alt.skill, alt.min_level] for alt in alternatives])
    return terms


def terms_arg(requirements: Requirements) -> str:
    return orjson.dumps(requirement_terms(requirements)).decode()


def requirements_arg(requirements: Requirements) -> str:
    # Stored in the compact channel-variable form; "-" marks an explicit "no requirement".
    return format_requirements(requirements) or "-"


def record_requirements_arg(requirements: Requirements | None) -> str:
    """Requirements as a call record shows them: the compact form, '' for any agent."""
    return format_requirements(requirements) if requirements else ""


def profile_args(agent: AgentConfig, now: float, force: bool) -> tuple[str, str, int, str, float, str]:
    """The agent_profile script's arguments (the routing and the admin store both write profiles)."""
    skills = json.dumps(agent.skills, sort_keys=True)
    return agent.id, skills, agent.capacity, agent.device, now, flag_arg(force)


# -- replies --------------------------------------------------------------------------------


def texts(raw: Any) -> list[str]:
    """A script's list answer as strings (Lua's nil ends a list early: see ``field``)."""
    return [str(item) for item in raw]


def field(items: Sequence[str], index: int, default: str = "") -> str:
    return items[index] if index < len(items) else default


def number(text: str) -> float:
    try:
        return float(text or 0)
    except ValueError:
        return 0.0


def flag(text: str) -> bool:
    return text == "1"


def pairs(flat: Sequence[Any]) -> dict[str, str]:
    """HGETALL's flat answer as a dict."""
    return {str(k): str(v) for k, v in zip(flat[::2], flat[1::2], strict=True)}


def skills_in(text: str | None) -> dict[str, int]:
    """A stored skills JSON object; anything unreadable reads as no skills."""
    try:
        skills = json.loads(text or "{}")
    except ValueError:
        return {}
    if not isinstance(skills, dict):
        return {}
    return {str(k): int(v) for k, v in skills.items() if isinstance(v, int | float)}


def candidate(fields: Sequence[Any]) -> AgentCandidate:
    """One agent of a candidates answer: id, idle_since, skills, capacity, reserved,
    connected, handled_s, avail_s."""
    agent_id, idle_since, skills, capacity, reserved, connected, handled, avail = (str(v) for v in fields)
    return AgentCandidate(
        agent_id=agent_id,
        idle_since=float(idle_since or 0),
        skills=orjson.loads(skills or "{}"),
        capacity=int(capacity or 1),
        active=int(reserved or 0) + int(connected or 0),
        handled_s=float(handled or 0),
        available_s=float(avail or 0),
    )


def candidates_in(flat: Sequence[Any]) -> list[AgentCandidate]:
    """Candidates as the scripts return them: 8 fields per agent."""
    width = CANDIDATE_WIDTH
    return [candidate(flat[i : i + width]) for i in range(0, len(flat) - width + 1, width)]


def stored_requirements(text: str) -> Requirements | None:
    if not text:
        return None
    return () if text == "-" else parse_requirements(text)


def waiting_calls_in(raw: Sequence[Any]) -> list[WaitingCall]:
    """Waiting calls as the scripts return them: WAITING_WIDTH fields per call."""
    calls = []
    for i in range(0, len(raw), WAITING_WIDTH):
        call_id, queue, priority, entered_at, reqs, channel, declined, aff = (
            str(v) for v in raw[i : i + WAITING_WIDTH]
        )
        declined_ids = orjson.loads(declined) if declined != "[]" else ()
        calls.append(
            WaitingCall(
                call_id=call_id,
                queue=queue,
                priority=int(float(priority or 0)),
                entered_at=float(entered_at or 0),
                requirements_override=stored_requirements(reqs),
                channel=channel,
                declined_by=frozenset(declined_ids) if isinstance(declined_ids, list) else frozenset(),
                affinity=affinity.decode(aff) if aff else None,
            )
        )
    return calls
