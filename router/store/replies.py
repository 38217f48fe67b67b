"""The scripts' answers as typed values, each parsed in one place (its ``parse``).

A script answers with a flat list: a status first, then details whose meaning depends on
the script (see the ``Returns`` comment at the top of each router/store/lua/ script).
Only this module and router.store.codec read those lists by position; callers read fields.
Statuses every event script may answer: ``unknown_call`` / ``unknown_agent`` (nothing to
change) and ``duplicate`` (a redelivered event: nothing changed twice).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import field
from typing import Any, Self

from router.domain import AgentCandidate
from router.immutable import immutable
from router.store.codec import (
    CANDIDATE_WIDTH,
    candidate,
    candidates_in,
    flag,
    number,
    skills_in,
    texts,
)
from router.store.codec import field as item
from router.store.params import ResyncGap

# -- routing events ---------------------------------------------------------------------------


@immutable
class StateChange:
    """A status and the state the script found the call (or agent) in: agent_rang
    (``ringing``, ``ignored``), caller_left_hold (``noted``, ``ignored``), offer_claim
    (``ok``, or ``stale`` with the call's state)."""

    status: str
    state: str = ""

    @classmethod
    def parse(cls, raw: Any) -> StateChange:
        items = texts(raw)
        return cls(items[0], item(items, 1))


@immutable
class Enqueued:
    """A call put in line (``queued``), back in line after its agent transferred it into
    the ACD again (``requeued``), or already known (``exists``: a redelivery or a resync
    listing), plus the candidates asked for in the same round trip."""

    status: str
    state: str = ""  # the call's state: 'waiting', or as found when it exists
    released_agent: str = ""  # requeued: the transferring agent this released ('' if none)
    candidates: list[AgentCandidate] = field(default_factory=list)

    @classmethod
    def parse(cls, raw: Any) -> Enqueued:
        items = texts(raw[:2])
        status, detail = items[0], item(items, 1)
        found = candidates_in(raw[2:])
        if status == "requeued":
            return cls(status, "waiting", detail, found)
        return cls(status, detail, "", found)


@immutable
class PresenceChanged:
    """A roster change: ``changed``, ``device_changed`` (only the phone's state), ``unchanged``."""

    status: str
    previous_state: str = ""
    available_s: float = 0.0  # idle available seconds the change closed (for occupancy)

    @classmethod
    def parse(cls, raw: Any) -> PresenceChanged:
        items = texts(raw)
        return cls(items[0], item(items, 1), number(item(items, 2)))


@immutable
class DeviceChanged:
    """The agent's phone state: ``changed`` or ``unchanged``, and whether it is busy now."""

    status: str
    busy: bool = False

    @classmethod
    def parse(cls, raw: Any) -> DeviceChanged:
        items = texts(raw)
        return cls(items[0], flag(item(items, 1)))


@immutable
class Reserved:
    """A reservation: ``ok`` (the agent's device, the available seconds it closed) or why
    not: ``call_taken`` / ``agent_taken`` (with the state found), ``agent_declined``.

    ``callback_number``: set when the caller asked to be called back (router/callback.py),
    with ``agent_first`` and the caller's name: the offer calls out instead."""

    status: str
    device: str = ""
    available_s: float = 0.0
    state: str = ""
    callback_number: str = ""
    agent_first: bool = True
    caller_name: str = ""

    @classmethod
    def parse(cls, raw: Any) -> Reserved:
        items = texts(raw)
        if items[0] == "ok":
            callback = item(items, 3), item(items, 4) != "0", item(items, 5)
            return cls("ok", item(items, 1), number(item(items, 2)), "", *callback)
        return cls(items[0], state=item(items, 1))


@immutable
class Answered:
    """The offered agent answered (``answered``), or ``ignored`` (not its offer now).

    With the answer comes quality sampling's decision: ``qa_reason`` is '' (not sampled),
    ``random`` or ``minimum``; ``recording`` the file the call is recorded to ('' none), and
    ``record_now`` whether the recording of the caller's ``channel`` is to be started now.
    """

    status: str
    waited_s: float = 0.0
    queue: str = ""
    spare_capacity: bool = False  # the agent may take another call right away (chat-style)
    qa_reason: str = ""
    recording: str = ""
    record_now: bool = False
    channel: str = ""

    @property
    def sampled(self) -> bool:
        return self.qa_reason != ""

    @classmethod
    def parse(cls, raw: Any) -> Answered:
        items = texts(raw)
        if items[0] != "answered":
            return cls(items[0])
        return cls(
            "answered",
            number(item(items, 1)),
            item(items, 2),
            flag(item(items, 3)),
            item(items, 4),
            item(items, 5),
            flag(item(items, 6)),
            item(items, 7),
        )


@immutable
class Declined:
    """The offer came to nothing (``declined``: back in line, the agent never offered it
    again), or ``ignored``."""

    status: str
    paused: bool = False  # the agent was paused for it (ring-no-answer auto-pause)
    agent_id: str = ""

    @classmethod
    def parse(cls, raw: Any, agent_id: str = "") -> Declined:
        """``agent_id``: the agent, when the script does not name it (agent_declined)."""
        items = texts(raw)
        declined = items[0] == "declined"
        return cls(items[0], declined and flag(item(items, 1)), item(items, 2) or agent_id)


def _freed(items: Sequence[str], raw: Any, at: int) -> AgentCandidate | None:
    # with_candidate (_lib.lua): '1' and the agent's candidate fields when it is free now.
    if item(items, at) != "1" or len(raw) < at + 1 + CANDIDATE_WIDTH:
        return None
    return candidate(raw[at + 1 : at + 1 + CANDIDATE_WIDTH])


@immutable
class _CallStep:
    """The shape hang-up and transfer replies share: status, seconds, queue, agent, and the
    agent when it may take a call now."""

    status: str
    seconds: float = 0.0
    queue: str = ""
    agent_id: str = ""
    free_agent: AgentCandidate | None = None  # the agent, when it may take a call now

    @classmethod
    def parse(cls, raw: Any) -> Self:
        items = texts(raw[:5])
        return cls(items[0], number(item(items, 1)), item(items, 2), item(items, 3), _freed(items, raw, 4))


@immutable
class HungUp(_CallStep):
    """The caller hung up: ``abandoned`` / ``pbx_restart`` (``seconds`` waited),
    ``completed`` / ``transferred`` (``seconds`` talked), or ``ignored``."""


@immutable
class TransferStep(_CallStep):
    """A step of a transfer (call_transfer, agent_leg_ended): ``transferred`` when the
    agent's part ended (``seconds`` talked), ``marked`` / ``recorded`` while it goes on."""


@immutable
class CallbackStep:
    """A step of a callback attempt (callback_step.lua lists the statuses): ``seconds`` is
    the wait (answered) or the talk (completed); ``paused`` for rejected."""

    status: str
    seconds: float = 0.0
    queue: str = ""
    agent_id: str = ""
    free_agent: AgentCandidate | None = None
    paused: bool = False

    @classmethod
    def parse(cls, raw: Any) -> CallbackStep:
        items = texts(raw[:5])
        status, detail = items[0], item(items, 1)
        paused = status == "rejected" and detail == "1"
        seconds = 0.0 if status == "rejected" else number(detail)
        return cls(status, seconds, item(items, 2), item(items, 3), _freed(items, raw, 4), paused)


@immutable
class WaitingCallback:
    """An open call whose caller asked to be called back, as the API lists it."""

    call_id: str
    state: str
    queue: str
    number: str
    caller_name: str
    entered_at: float
    requested_at: float
    attempts: int
    max_attempts: int
    agent_id: str

    @classmethod
    def parse(cls, call_id: str, fields: Sequence[Any]) -> WaitingCallback | None:
        items = ["" if value is None else str(value) for value in fields]
        if not items[0]:
            return None  # the hash expired
        attempts, most = int(number(items[6])), int(number(items[7]))
        times = number(items[4]), number(items[5])
        return cls(call_id, items[0], items[1], items[2], items[3], *times, attempts, most, items[8])


@immutable
class FailedOffer:
    """The dispatcher could not execute an offer: ``abandoned`` (the caller's channel was
    gone; ``waited_s``), ``requeued`` (back in line), ``retry`` / ``callback_failed`` (a
    callback's Originate refused: router/callback.py), or ``ignored``."""

    status: str
    waited_s: float = 0.0
    agent_id: str = ""
    queue: str = ""

    @classmethod
    def parse(cls, raw: Any) -> FailedOffer:
        items = texts(raw)
        if items[0] == "abandoned":
            return cls("abandoned", number(item(items, 1)), item(items, 2), item(items, 3))
        return cls(items[0], agent_id=item(items, 2), queue=item(items, 3))


@immutable
class Overflowed:
    """An overflow: ``queued`` (in the other queue) or ``target`` (out of the ACD) with the
    caller's channel; or not: ``busy`` (being offered: later), ``ignored``, ``loop``."""

    status: str
    channel: str = ""
    state: str = ""  # why not: the call's state (its queue, for ``loop``)

    @classmethod
    def parse(cls, raw: Any) -> Overflowed:
        items = texts(raw)
        if items[0] in ("queued", "target"):
            return cls(items[0], channel=item(items, 1))
        return cls(items[0], state=item(items, 1))


@immutable
class TurnedAway:
    """A caller who arrived while its queue was closed: ``closed`` (turned away now), or
    ``exists`` (a call already known: a redelivery if its ``state`` is closed) with the
    caller's channel."""

    status: str
    channel: str = ""
    state: str = ""

    @classmethod
    def parse(cls, raw: Any) -> TurnedAway:
        items = texts(raw)
        if items[0] == "closed":
            return cls("closed", channel=item(items, 1), state="closed")
        return cls(items[0], channel=item(items, 2), state=item(items, 1))


# -- timers and recovery ----------------------------------------------------------------------


@immutable
class LeaseGrant:
    """The lease script's answer: the holder's fencing token (0: another holds the lease),
    and whether the owner that asked also began the lease's last term, so that nobody else
    held it since (``unbroken``; a renewal always is)."""

    token: int
    unbroken: bool

    @classmethod
    def parse(cls, raw: Any) -> Self:
        token, unbroken = texts(raw)
        return cls(int(token), flag(unbroken))


@immutable
class WrapUpEnded:
    """An agent whose after-call work ended (and is available again)."""

    agent_id: str
    seconds: float
    queue: str


def timers_in(raw: Any) -> tuple[list[WrapUpEnded], list[str]]:
    """The timers script: wrap-ups ended (3 fields each), '|', calls whose offer expired."""
    items = texts(raw)
    split = items.index("|")
    ended = [WrapUpEnded(items[i], float(items[i + 1]), items[i + 2]) for i in range(0, split, 3)]
    return ended, items[split + 1 :]


@immutable
class ClosedCall:
    """A call closed by a resync: ``outcome`` completed (talk ``seconds``), abandoned or
    pbx_restart (waited ``seconds``; cut off by an Asterisk restart, not an abandon)."""

    call_id: str
    queue: str
    outcome: str
    seconds: float

    @classmethod
    def parse_all(cls, raw: Any) -> list[ClosedCall]:
        items = texts(raw)
        return [cls(items[i], items[i + 1], items[i + 2], float(items[i + 3])) for i in range(0, len(items), 4)]


@immutable
class ResyncListing:
    """A resync listing due for closing what it misses."""

    snapshot_at: float
    live_call_ids: list[str]
    gap: ResyncGap
    # How far ingest's envelopes sent before the listing reached per partition, and when to
    # stop waiting for the group to apply that far (router.catchup); {} and None: close once due.
    marks: dict[str, int] = field(default_factory=dict)
    give_up_at: float | None = None
    waited: bool = False  # it was due before and the group was behind

    @classmethod
    def parse(cls, payload: str) -> ResyncListing:
        body = json.loads(payload)
        lost_at = body.get("lost_at")
        gap = ResyncGap(None if lost_at is None else float(lost_at), bool(body.get("pbx_restart")))
        marks = {str(part): int(offset) for part, offset in body.get("marks", {}).items()}
        give_up_at = body.get("give_up_at")
        return cls(
            float(body["at"]),
            [str(c) for c in body["live"]],
            gap,
            marks,
            None if give_up_at is None else float(give_up_at),
            bool(body.get("waited")),
        )

    def dump(self) -> str:
        body: dict[str, object] = {"at": self.snapshot_at, "live": sorted(self.live_call_ids)}
        body["lost_at"], body["pbx_restart"] = self.gap.link_lost_at, self.gap.pbx_restart
        if self.marks:
            body["marks"] = self.marks
        if self.give_up_at is not None:
            body["give_up_at"] = self.give_up_at
        if self.waited:
            body["waited"] = True
        return json.dumps(body)


# -- summaries --------------------------------------------------------------------------------


def _halves(raw: Any) -> tuple[list[str], list[str]]:
    items = texts(raw)
    split = items.index("|")
    return items[:split], items[split + 1 :]


@immutable
class StateSummary:
    """Calls waiting and oldest entry time per queue, agents per state."""

    waiting: dict[str, int]
    oldest_entered_at: dict[str, float]
    agents: dict[str, int]

    @classmethod
    def parse(cls, raw: Any) -> StateSummary:
        calls, agents = _halves(raw)
        return cls(
            waiting={calls[i]: int(calls[i + 1]) for i in range(0, len(calls), 3)},
            oldest_entered_at={calls[i]: float(calls[i + 2]) for i in range(0, len(calls), 3)},
            agents={agents[i]: int(agents[i + 1]) for i in range(0, len(agents), 2)},
        )


@immutable
class AgentProfileCount:
    """How many agents with these skills are in this state."""

    state: str
    skills: dict[str, int]
    count: int


@immutable
class CollectorSummary:
    """Calls waiting and oldest entry time per queue; agents grouped by state and skills."""

    waiting: dict[str, int]
    oldest_entered_at: dict[str, float]
    profiles: tuple[AgentProfileCount, ...]

    @property
    def agents(self) -> dict[str, int]:
        by_state: dict[str, int] = {}
        for profile in self.profiles:
            by_state[profile.state] = by_state.get(profile.state, 0) + profile.count
        return by_state

    @classmethod
    def parse(cls, raw: Any) -> CollectorSummary:
        calls, agents = _halves(raw)
        return cls(
            waiting={calls[i]: int(calls[i + 1]) for i in range(0, len(calls), 3)},
            oldest_entered_at={calls[i]: float(calls[i + 2]) for i in range(0, len(calls), 3)},
            profiles=tuple(
                AgentProfileCount(agents[i], skills_in(agents[i + 1]), int(agents[i + 2]))
                for i in range(0, len(agents), 3)
            ),
        )


# -- operator actions -------------------------------------------------------------------------


@immutable
class WrapUpExtended:
    """``ok`` (after-call work now ends ``until``), ``not_in_wrap_up`` (``state``), ``unknown_agent``."""

    status: str
    until: float = 0.0
    state: str = ""

    @classmethod
    def parse(cls, raw: Any) -> WrapUpExtended:
        items = texts(raw)
        if items[0] == "ok":
            return cls("ok", until=number(item(items, 1)))
        return cls(items[0], state=item(items, 1))


@immutable
class WrapUpFinished:
    """``ok`` (the agent is available; ``seconds`` of after-call work in ``queue``),
    ``not_in_wrap_up`` (``state``), ``unknown_agent``."""

    status: str
    seconds: float = 0.0
    queue: str = ""
    state: str = ""

    @classmethod
    def parse(cls, raw: Any) -> WrapUpFinished:
        items = texts(raw)
        if items[0] == "ok":
            return cls("ok", number(item(items, 1)), item(items, 2))
        return cls(items[0], state=item(items, 1))


@immutable
class SkillsSet:
    """``ok`` with the agent's skills now, or ``unknown_agent``."""

    status: str
    skills: dict[str, int] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: Any) -> SkillsSet:
        items = texts(raw)
        return cls(items[0], skills_in(item(items, 1)) if items[0] == "ok" else {})
