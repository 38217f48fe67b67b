"""Domain events: what happened, in the router's own terms (past tense).

The AMI translator (router.ami.translate) and the dispatcher's outcomes produce these;
the routing engine consumes them. ``at`` is simulated time (router.clock).
"""

from __future__ import annotations

from dataclasses import field

from router.domain import Requirements
from router.immutable import immutable


@immutable
class CallQueued:
    call_id: str
    channel: str
    queue: str
    at: float
    priority: int | None = None  # None: the queue's default
    requirements: Requirements | None = None  # None: the queue's requirements
    resynced: bool = False  # seen in a resync snapshot rather than live
    caller_number: str = ""  # CallerIDNum ('' unknown)
    caller_name: str = ""  # CallerIDName ('' unknown)
    preferred_agent: str = ""  # ACD_PREFERRED_AGENT: offered to this agent first ('' none)


@immutable
class AgentRang:
    """Asterisk started dialling an agent's phone for a call (DialBegin)."""

    call_id: str
    device: str
    at: float


@immutable
class AgentAnswered:
    call_id: str
    device: str
    at: float


@immutable
class AgentDeclined:
    """The offered agent did not take the call (no answer, busy, unavailable)."""

    call_id: str
    device: str
    dial_status: str
    at: float


@immutable
class CallerHeld:
    """The caller is on hold (again): music on hold started on its channel."""

    call_id: str
    at: float


@immutable
class CallerLeftHold:
    """Music on hold stopped on the caller's channel (a Redirect took it off hold)."""

    call_id: str
    at: float


@immutable
class CallerHungUp:
    call_id: str
    cause: str
    at: float
    # Asterisk was shutting down when it hung up (ingest asked): the PBX cut the caller off.
    by_pbx_shutdown: bool = False


@immutable
class CallTransferred:
    """The agent's leg handed the caller on (BlindTransfer / AttendedTransfer, Result Success).

    ``device`` is the transferring leg's device (empty when the event did not name it);
    ``target`` is ``context,exten`` (blind) or the attended transfer's destination.
    """

    call_id: str
    device: str
    kind: str  # blind | attended
    target: str
    at: float


@immutable
class AgentLegEnded:
    """An agent's leg of a call left its bridge or hung up (the caller's channel may live on)."""

    call_id: str
    device: str
    at: float


@immutable
class AgentPresenceChanged:
    """Login, logout, pause or unpause of an agent's roster membership."""

    device: str
    member_name: str
    state: str  # AgentState value: available, paused or logged_out
    reason: str
    at: float
    # The member's phone as app_queue lists it (NOT_INUSE, UNAVAILABLE, ...); '' if not given.
    device_state: str = ""
    # False for QueueMemberStatus: a report of the member's phone whose Paused is app_queue's
    # view when the phone changed, which can predate a pause the router has just sent
    # (ring-no-answer: seen on Asterisk 22 a few ms before the QueueMemberPause). Such an
    # event logs a member the router missed in, and updates the phone; it never pauses or
    # unpauses one (QueueMemberPause does, and a resync's listing).
    pause_known: bool = True


@immutable
class AgentDeviceChanged:
    """An agent's phone changed state (DeviceStateChange: NOT_INUSE, INUSE, UNAVAILABLE, ...)."""

    device: str
    state: str
    at: float


@immutable
class ResyncFinished:
    """Ingest re-listed every channel after a reconnect; calls not listed have ended."""

    live_call_ids: frozenset[str]
    snapshot_at: float
    # The last moment ingest still saw Asterisk (link lost, or Event: Shutdown): calls not
    # listed ended after it, and nobody knows how much later; None: the link never dropped.
    link_lost_at: float | None = None
    pbx_restart: bool = False  # the gap began with Event: Shutdown: Asterisk ended the calls
    # How far ingest's envelopes sent before the listing reached, per partition (router.catchup).
    marks: dict[str, int] = field(default_factory=dict, hash=False)


@immutable
class OfferFailed:
    """The dispatcher could not execute an offer (e.g. the caller hung up meanwhile)."""

    call_id: str
    offer_id: str
    agent_id: str
    reason: str
    channel_gone: bool
    at: float


# -- callbacks (router/callback.py) ------------------------------------------------------


@immutable
class CallbackRequested:
    """The caller accepted the recipe's callback offer (UserEvent AcdCallbackRequested) and
    hangs up; its call keeps its place in line. ``number``: as announced ('' unknown)."""

    call_id: str
    number: str
    at: float


@immutable
class CallbackLegAnswered:
    """A leg of a callback attempt answered: ``leg`` 1 is the one Originate rang
    (OriginateResponse Success), 2 the one the dialplan dialled (DialEnd ANSWER)."""

    call_id: str
    offer_id: str
    leg: int
    at: float


@immutable
class CallbackLegFailed:
    """A leg of a callback attempt was not answered (OriginateResponse Failure, or DialEnd
    NOANSWER/BUSY/...), with Asterisk's reason."""

    call_id: str
    offer_id: str
    leg: int
    reason: str
    at: float


@immutable
class CallbackEnded:
    """The channel Originate created hung up: the attempt (or its conversation) is over."""

    call_id: str
    offer_id: str
    at: float


DomainEvent = (
    CallQueued
    | AgentRang
    | AgentAnswered
    | AgentDeclined
    | CallerHeld
    | CallerLeftHold
    | CallerHungUp
    | CallTransferred
    | AgentLegEnded
    | AgentPresenceChanged
    | AgentDeviceChanged
    | ResyncFinished
    | OfferFailed
    | CallbackRequested
    | CallbackLegAnswered
    | CallbackLegFailed
    | CallbackEnded
)
