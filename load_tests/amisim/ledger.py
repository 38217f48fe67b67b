"""Ground truth of a simulation run, written by the PBX model and read by referees.

The ledger records what really happened on the phone system, independently of what the
router believes: which calls were waiting, who answered, which redirects hit an agent that
was already busy (``double_assignments``), and what was done that the router should never
do. Times are simulated Unix seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

CallState = Literal[
    "holding",
    "ringing",
    "talking",
    "completed",
    "abandoned",
    "overflowed",
    "closed",
    "transferred",
    "ended_by_restart",
    "callback_requested",  # hung up to be called back (load_tests/amisim/callbacks.py)
]
Outcome = Literal["ANSWER", "NOANSWER", "BUSY", "CHANUNAVAIL", "CANCEL"]
WAITING_STATES: frozenset[str] = frozenset({"holding", "ringing"})


@dataclass
class OfferRecord:
    """One redirect of a caller to an agent's extension and how the Dial ended."""

    agent_id: str | None
    extension: str
    at: float
    outcome: Outcome | None = None
    ended_at: float | None = None


@dataclass(frozen=True)
class TransferRecord:
    """An agent handed the caller on: to ``context,exten`` (into acd-inbound: queued again)."""

    kind: Literal["blind", "attended"]
    agent_id: str
    context: str
    exten: str
    at: float

    @property
    def requeued(self) -> bool:
        return self.context == "acd-inbound"


@dataclass
class CallbackAttempt:
    """The PBX dialled a caller back for ``agent_id``: ``answered`` when the caller answered,
    ``connected`` when the agent did too (agent first, the agent had answered the preview)."""

    at: float
    agent_id: str
    answered: bool = False
    connected: bool = False


@dataclass
class CallRecord:
    call_id: str
    queue: str
    priority: int | None  # None: no ACD_PRIORITY set, the queue's default applies
    requirements: str | None
    entered_at: float
    patience_s: float | None
    handle_time_s: float
    channel: str
    state: CallState = "holding"
    answered_at: float | None = None  # of its current stay in the ACD (None again after a requeue)
    agent_id: str | None = None
    abandoned_at: float | None = None
    overflowed_at: float | None = None  # sent out of the ACD (acd-overflow context)
    closed_at: float | None = None  # turned away: its queue was closed (acd-closed context)
    ended_at: float | None = None
    hangup_by: Literal["caller", "agent", "ami", "dialplan", "restart", "callback"] | None = None
    offers: list[OfferRecord] = field(default_factory=list)
    transfers: list[TransferRecord] = field(default_factory=list)
    caller_number: str = ""  # as the trunk presented it ('' none)
    caller_name: str = ""
    preferred_agent: str | None = None  # ACD_PREFERRED_AGENT as the dialplan set it (None: unset)
    callback_requested_at: float | None = None  # the caller asked to be called back and hung up
    callback_attempts: list[CallbackAttempt] = field(default_factory=list)

    @property
    def waiting(self) -> bool:
        return self.state in WAITING_STATES


@dataclass
class AgentRecord:
    agent_id: str
    extension: str
    logged_in: bool = False
    paused: bool = False
    paused_reason: str = ""
    active_calls: int = 0


@dataclass(frozen=True)
class Shutdown:
    began_at: float
    ambiguous_from: float

    def blurs(self, hung_up_at: float) -> bool:
        return self.ambiguous_from <= hung_up_at <= self.began_at


@dataclass(frozen=True)
class DoubleAssignment:
    """A caller was sent to an agent whose phone was already at capacity."""

    call_id: str
    agent_id: str
    at: float
    agent_state: str


@dataclass(frozen=True)
class UnexpectedRedirect:
    """A Redirect the router should never send (caller not on hold, or odd target)."""

    channel: str
    call_id: str | None
    call_state: str
    context: str
    exten: str
    at: float


@dataclass(frozen=True)
class UnavailableOffer:
    """A caller was sent to an agent who was logged out or paused (the phone still rings)."""

    call_id: str
    agent_id: str
    reason: Literal["logged_out", "paused"]
    at: float


@dataclass(frozen=True)
class RecordingStarted:
    """A MixMonitor started on a channel: ``path`` is where Asterisk writes the mixed audio."""

    channel: str
    call_id: str  # the channel's Linkedid
    agent_id: str | None  # the agent the caller was talking to then (None: nobody)
    path: str
    options: str
    at: float


@dataclass
class Ledger:
    calls: dict[str, CallRecord] = field(default_factory=dict)
    agents: dict[str, AgentRecord] = field(default_factory=dict)
    double_assignments: list[DoubleAssignment] = field(default_factory=list)
    unexpected_redirects: list[UnexpectedRedirect] = field(default_factory=list)
    offers_to_unavailable_agents: list[UnavailableOffer] = field(default_factory=list)
    recordings: list[RecordingStarted] = field(default_factory=list)
    # When each Asterisk restart began (simulated time), and from when before it a caller's
    # own hang-up could not be told from the restart's (ingest asks Asterisk after the fact).
    shutdowns: list[Shutdown] = field(default_factory=list)
    # When a client listed the channels (CoreShowChannels): after a gap, what entered and
    # ended before the listing is known to nobody (load_tests/chaos.py: blind spells).
    listings: list[float] = field(default_factory=list)

    def waiting_calls(self) -> list[CallRecord]:
        """Calls still on hold or ringing: each must be visible as waiting in the router."""
        return [call for call in self.calls.values() if call.waiting]

    def calls_in(self, *states: CallState) -> list[CallRecord]:
        return [call for call in self.calls.values() if call.state in states]

    def summary(self) -> dict[str, int]:
        """Plain counts for reports and referees."""
        counts = {state: 0 for state in ("holding", "ringing", "talking", "completed")}
        counts["abandoned"] = 0
        counts["overflowed"] = 0
        counts["closed"] = 0
        counts["transferred"] = 0
        counts["ended_by_restart"] = 0
        for call in self.calls.values():
            counts[call.state] += 1
        offers = [offer for call in self.calls.values() for offer in call.offers]
        return {
            # Callers who arrived while their queue was closed were never offered.
            "offered": len(self.calls) - counts["closed"],
            "closed": counts["closed"],
            # Answers, not calls: a caller transferred back into a queue may be answered again.
            "answered": sum(1 for o in offers if o.outcome == "ANSWER"),
            "abandoned": counts["abandoned"],
            "overflowed": counts["overflowed"],
            "completed": counts["completed"],
            "transferred_out": counts["transferred"],
            "transfers": sum(len(c.transfers) for c in self.calls.values()),
            "requeued_by_transfer": sum(1 for c in self.calls.values() for t in c.transfers if t.requeued),
            # Waiting callers an Asterisk restart cut off (answered ones count as completed).
            "ended_by_pbx_restart": counts["ended_by_restart"],
            "talking": counts["talking"],
            "still_waiting": counts["holding"] + counts["ringing"],
            "holding": counts["holding"],
            "ringing": counts["ringing"],
            "agent_offers": len(offers),
            "offers_noanswer": sum(1 for o in offers if o.outcome == "NOANSWER"),
            "offers_busy": sum(1 for o in offers if o.outcome == "BUSY"),
            "offers_chanunavail": sum(1 for o in offers if o.outcome == "CHANUNAVAIL"),
            "double_assignments": len(self.double_assignments),
            "unexpected_redirects": len(self.unexpected_redirects),
            "offers_to_unavailable_agents": len(self.offers_to_unavailable_agents),
            "recordings": len(self.recordings),
        }
