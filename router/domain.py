"""Domain vocabulary: queues, agents, requirements, states.

Configuration-shaped types are frozen pydantic models so that a configuration file
and a scenario file validate with messages naming the key, the value and what was
expected. Runtime views read from Redis are plain dataclasses (they sit in hot loops).
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Literal, Self, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

from router.immutable import immutable
from router.schedule import BusinessHours

SKILL_LEVEL_MIN = 1
SKILL_LEVEL_MAX = 5

SkillName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
SkillLevel = Annotated[int, Field(ge=SKILL_LEVEL_MIN, le=SKILL_LEVEL_MAX)]


class Frozen(BaseModel):
    """Base for configuration models: immutable, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class AgentState(StrEnum):
    LOGGED_OUT = "logged_out"
    AVAILABLE = "available"
    RESERVED = "reserved"
    ON_CALL = "on_call"
    WRAP_UP = "wrap_up"
    PAUSED = "paused"


class CallState(StrEnum):
    WAITING = "waiting"
    OFFERED = "offered"  # an agent is reserved, the routing command is on its way
    DISPATCHING = "dispatching"  # the dispatcher claimed the offer and sends the Redirect
    RINGING = "ringing"  # Asterisk dials the agent
    CONNECTED = "connected"
    COMPLETED = "completed"
    ABANDONED = "abandoned"
    OVERFLOWED = "overflowed"
    TRANSFERRED = "transferred"  # its agent handed the caller on, out of the ACD
    CLOSED = "closed"  # arrived while its queue was closed: sent to the closed target
    # Callbacks (router/callback.py): between attempts the call waits out of line, keeping
    # its place; after the last unanswered attempt it ends callback_failed.
    CALLBACK_WAIT = "callback_wait"
    CALLBACK_FAILED = "callback_failed"

    @property
    def is_final(self) -> bool:
        return self in _FINAL_CALL_STATES

    @property
    def is_queued(self) -> bool:
        """Still the queue's responsibility: waiting, or offered but not yet answered."""
        return self in _QUEUED_CALL_STATES


_FINAL_CALL_STATES = frozenset(
    {
        CallState.COMPLETED,
        CallState.ABANDONED,
        CallState.OVERFLOWED,
        CallState.TRANSFERRED,
        CallState.CLOSED,
        CallState.CALLBACK_FAILED,
    }
)
_QUEUED_CALL_STATES = frozenset(
    {CallState.WAITING, CallState.OFFERED, CallState.DISPATCHING, CallState.RINGING, CallState.CALLBACK_WAIT}
)


class Strategy(StrEnum):
    LONGEST_IDLE = "longest-idle"
    LEAST_OCCUPIED = "least-occupied"
    BEST_SKILL_MATCH = "best-skill-match"
    ROUND_ROBIN = "round-robin"


class SkillRequirement(Frozen):
    """The agent must have ``skill`` at ``min_level`` or above."""

    skill: SkillName
    min_level: SkillLevel = 1

    def met_by(self, skills: dict[str, int]) -> bool:
        return skills.get(self.skill, 0) >= self.min_level

    def __str__(self) -> str:
        return f"{self.skill}>={self.min_level}"


class AnyOf(Frozen):
    """At least one of the alternatives must hold (OR)."""

    any: tuple[SkillRequirement, ...] = Field(min_length=1)

    def met_by(self, skills: dict[str, int]) -> bool:
        return any(alternative.met_by(skills) for alternative in self.any)

    def __str__(self) -> str:
        return "|".join(str(alternative) for alternative in self.any)


RequirementTerm = SkillRequirement | AnyOf
Requirements = tuple[RequirementTerm, ...]
"""All terms must hold (AND); an empty tuple accepts any agent."""


def requirements_met(requirements: Requirements, skills: dict[str, int]) -> bool:
    return all(term.met_by(skills) for term in requirements)


@functools.lru_cache(maxsize=4096)  # a few per decision, nearly always a queue's own
def format_requirements(requirements: Requirements) -> str:
    """The compact form used in channel variables: ``billing>=3&spanish>=2|french>=2``."""
    return "&".join(str(term) for term in requirements)


class RelaxStep(Frozen):
    """From ``after_s`` seconds of waiting on, ``requirements`` replace the queue's."""

    after_s: float = Field(gt=0)
    requirements: Requirements


SlFormula = Literal[
    "answered_within_over_answered",
    "answered_within_over_answered_and_abandoned",
    "answered_within_over_answered_and_abandoned_after_threshold",
]
SL_FORMULAS: tuple[SlFormula, ...] = get_args(SlFormula)
DEFAULT_SL_FORMULA: SlFormula = "answered_within_over_answered_and_abandoned_after_threshold"


class ServiceLevelTarget(Frozen):
    """E.g. 80 % of calls answered within 20 s; ``formula`` picks the industry variant."""

    threshold_s: float = Field(default=20.0, gt=0)
    target: float = Field(default=0.8, gt=0, le=1)
    formula: SlFormula = DEFAULT_SL_FORMULA


class Overflow(Frozen):
    """Send the call elsewhere after ``after_s`` of waiting, or when nobody qualified is logged in."""

    after_s: float | None = Field(default=None, gt=0)
    when_no_agents: bool = False
    to_queue: str | None = None
    to_target: str | None = Field(
        default=None, pattern=r"^[\w.-]+,[\w*#+.-]+,\d+$", description="dialplan context,exten,priority"
    )

    @model_validator(mode="after")
    def _one_destination(self) -> Self:
        if (self.to_queue is None) == (self.to_target is None):
            raise ValueError("overflow needs exactly one of to_queue or to_target")
        return self


class QueueStaffing(Frozen):
    """How the live staffing advice models the queue's callers (docs/metrics.md, Staffing)."""

    patience_s: float | None = Field(default=None, gt=0, allow_inf_nan=False)


class QaPolicy(Frozen):
    """Which answered calls of a queue are sampled for quality review (docs/quality.md)."""

    sample_share: float = Field(
        default=0.0, ge=0, le=1, description="share of answered calls sampled at random (0.05 = 5 %)"
    )
    min_per_agent_per_day: int = Field(
        default=0,
        ge=0,
        le=1000,
        description="each agent's answers are sampled until it has this many samples that day (site timezone)",
    )
    record: bool = Field(default=False, description="record sampled calls (AMI MixMonitor on the caller's channel)")

    @property
    def samples(self) -> bool:
        return self.sample_share > 0 or self.min_per_agent_per_day > 0


# -- affinity (router/affinity.py): the caller's last agent, or the agent the dialplan names --


class LastAgentRouting(Frozen):
    """Offer a returning caller (same number within ``window_s``) to its last agent first."""

    window_s: float = Field(
        default=86400.0, gt=0, allow_inf_nan=False, description="how long a caller's last agent is remembered"
    )
    wait_s: float = Field(
        default=20.0, gt=0, allow_inf_nan=False, description="how long its next call waits for that agent"
    )


class PreferredAgentRouting(Frozen):
    """How long a call waits for the agent its ``ACD_PREFERRED_AGENT`` names (a CRM lookup)."""

    wait_s: float = Field(
        default=20.0,
        ge=0,
        allow_inf_nan=False,
        description="how long a call waits for the agent its ACD_PREFERRED_AGENT names; 0: ignore the variable",
    )


@dataclass(frozen=True, slots=True)
class Affinity:
    """The agent a call is offered to first, and until when (simulated time) it waits for it."""

    kind: str  # last_agent | preferred_agent
    agent_id: str
    until: float
    released: bool = False  # ended early: the agent logged out or no longer qualified


class CallbackPolicy(Frozen):
    """A queue offers waiting callers a callback that keeps their place (docs/routing.md)."""

    offer_after_s: float = Field(
        default=60.0,
        gt=0,
        description="wait before the recipe offers the callback: give the dialplan's ACD_CALLBACK_AFTER this value",
    )
    attempts: int = Field(default=3, ge=1, le=20, description="calls to the caller before it ends callback_failed")
    retry_after_s: float = Field(default=120.0, ge=0, description="after an unanswered attempt, wait before the next")
    agent_first: bool = Field(
        default=True,
        description="ring the agent first (the caller's number shown), then the caller; false: the caller first",
    )
    sl_from_entry: bool = Field(
        default=True,
        description="service level and ASA count the wait from the original entry; false: from the callback request",
    )


class QueueConfig(Frozen):
    """A queue: who may answer its calls, in what order, and its service target."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
    requirements: Requirements = ()
    relax: tuple[RelaxStep, ...] = ()
    strategy: Strategy = Strategy.LONGEST_IDLE
    priority: int = Field(default=0, ge=-1000, le=1000)
    service_level: ServiceLevelTarget = ServiceLevelTarget()
    wrapup_s: float = Field(default=0.0, ge=0)
    overflow: Overflow | None = None
    staffing: QueueStaffing = QueueStaffing()
    qa: QaPolicy | None = Field(default=None, description="optional: quality sampling of answered calls")
    last_agent: LastAgentRouting | None = Field(
        default=None,
        description="optional: a returning caller waits for the agent who answered it last (docs/routing.md, Affinity)",
    )
    preferred_agent: PreferredAgentRouting = PreferredAgentRouting()
    hours: BusinessHours | None = Field(
        default=None, description="optional: business hours; callers who arrive while closed go to its closed_target"
    )
    callback: CallbackPolicy | None = Field(
        default=None, description="optional: callbacks that keep the caller's place (docs/routing.md)"
    )

    @model_validator(mode="after")
    def _relax_in_order(self) -> Self:
        times = [step.after_s for step in self.relax]
        if times != sorted(set(times)):
            raise ValueError(f"relax steps must have strictly increasing after_s, got {times}")
        return self

    def requirements_at(self, waited_s: float, override: Requirements | None = None) -> Requirements:
        """Requirements in force after waiting ``waited_s``: the last relax step reached wins."""
        current = self.requirements if override is None else override
        for step in self.relax:
            if waited_s >= step.after_s:
                current = step.requirements
        return current

    def next_relax_after(self, waited_s: float) -> float | None:
        """Wait time at which requirements relax next, or None when fully relaxed."""
        return next((step.after_s for step in self.relax if step.after_s > waited_s), None)


# What the recipe's [acd-connect] (``_[0-9a-zA-Z]!``) can dial: a letter or digit first.
DIAL_EXTENSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
# Asterisk's special extensions: a dialplan pattern matches them too, so the recipe gives
# "h" an explicit line, and none of them can be an agent's phone.
SPECIAL_EXTENSIONS = frozenset({"a", "e", "h", "i", "o", "s", "t", "T"})


class AgentConfig(Frozen):
    """An agent's identity, phone and skills."""

    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
    skills: dict[SkillName, SkillLevel] = Field(default_factory=dict)
    capacity: int = Field(default=1, ge=1, le=100)
    extension: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    interface: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_]+/[^\s]+$")

    @model_validator(mode="after")
    def _dialable(self) -> Self:
        extension = self.dial_extension
        where = "its extension" if self.extension else "its id (no extension: is given)"
        if not re.match(DIAL_EXTENSION_PATTERN, extension):
            raise ValueError(
                f"agent {self.id!r}: {where} {extension!r} cannot be dialled through [acd-connect] "
                "(pattern _[0-9a-zA-Z]!): it must start with a letter or digit; set extension: to the phone's"
            )
        if extension in SPECIAL_EXTENSIONS:
            raise ValueError(
                f"agent {self.id!r}: {where} {extension!r} is one of Asterisk's special extensions "
                f"({' '.join(sorted(SPECIAL_EXTENSIONS))}); set extension: to the phone's own"
            )
        return self

    @property
    def dial_extension(self) -> str:
        return self.extension or self.id

    @property
    def device(self) -> str:
        """The Asterisk device (``Interface`` in queue events) of the agent's phone."""
        return self.interface or f"PJSIP/{self.dial_extension}"


@immutable
class WaitingCall:
    """A call as the routing policy sees it."""

    call_id: str
    queue: str
    priority: int
    entered_at: float
    requirements_override: Requirements | None = None
    declined_by: frozenset[str] = frozenset()  # agents that let it ring out: not offered again
    channel: str = ""
    affinity: Affinity | None = None  # offered to this agent first (router/affinity.py)


@immutable
class AgentCandidate:
    """An available agent as the routing policy sees it."""

    agent_id: str
    idle_since: float
    skills: dict[str, int]
    capacity: int = 1
    active: int = 0
    handled_s: float = 0.0  # talk + wrap-up seconds in the current occupancy window
    available_s: float = 0.0  # idle available seconds in the same window
    last_offered_seq: int = 0  # for round-robin
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def occupancy(self) -> float:
        total = self.handled_s + self.available_s
        return self.handled_s / total if total > 0 else 0.0


def waiting_score(priority: int, entered_at: float) -> float:
    """Sort key of the waiting line: higher priority first, then longest waiting.

    Kept in one float so that one Redis sorted set orders calls across all queues;
    1e10 s (three centuries) per priority step keeps every realistic wait inside a step.
    """
    if not math.isfinite(entered_at):
        raise ValueError(f"entered_at must be finite, got {entered_at!r}")
    return entered_at - priority * 1e10


def parse_requirements(text: str) -> Requirements:
    """Parse the compact channel-variable form: ``billing>=3&spanish>=2|french>=2``.

    ``&`` separates terms that must all hold; ``|`` separates alternatives within a
    term; a bare skill name means level 1 or above. An empty string means no requirement.
    """
    terms: list[RequirementTerm] = []
    for raw_term in filter(None, (t.strip() for t in text.split("&"))):
        alternatives = tuple(_parse_skill(raw) for raw in raw_term.split("|"))
        terms.append(alternatives[0] if len(alternatives) == 1 else AnyOf(any=alternatives))
    return tuple(terms)


def _parse_skill(raw: str) -> SkillRequirement:
    skill, sep, level = raw.strip().partition(">=")
    try:
        return SkillRequirement(skill=skill.strip(), min_level=int(level) if sep else 1)
    except ValueError as exc:
        raise ValueError(
            f"bad requirement {raw.strip()!r}: expected 'skill>=level' with level "
            f"{SKILL_LEVEL_MIN}-{SKILL_LEVEL_MAX}, terms joined by '&' and alternatives by '|'"
        ) from exc
