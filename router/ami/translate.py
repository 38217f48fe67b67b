"""Turn AMI events (as carried in envelopes) into domain events. Pure.

The recipe (deploy/asterisk/extensions.conf) announces a queued caller with
``UserEvent: AcdCallQueued``; the call's id is the caller channel's Linkedid. Agents'
presence comes from the roster queue's QueueMember* events; offers progress through
DialBegin / DialEnd; a caller channel's Hangup ends the call.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from router.ami.callback_events import callback_event, callback_leg
from router.callback import clean_number
from router.domain import AgentState, Requirements, parse_requirements
from router.envelope import AMI_EVENT, AMI_RESYNC, Envelope
from router.events import (
    AgentAnswered,
    AgentDeclined,
    AgentDeviceChanged,
    AgentLegEnded,
    AgentPresenceChanged,
    AgentRang,
    CallbackRequested,
    CallerHeld,
    CallerHungUp,
    CallerLeftHold,
    CallQueued,
    CallTransferred,
    DomainEvent,
    ResyncFinished,
)

logger = logging.getLogger(__name__)

QUEUED_USER_EVENT = "acdcallqueued"
CALLBACK_USER_EVENT = "acdcallbackrequested"
# Transfer events carry no bare Linkedid: only the prefixed snapshots of the legs involved
# (main/manager_bridges.c). All legs of one call share it; the first present is the call.
TRANSFER_LINKEDIDS = ("TransfererLinkedid", "OrigTransfererLinkedid", "TransfereeLinkedid")
DEFAULT_ROSTER_QUEUE = "acd-agents"
ROSTER_EVENTS = frozenset(
    {"queuememberadded", "queuemember", "queuememberpause", "queuememberstatus", "queuememberremoved"}
)
# QueueMember / QueueMemberStatus ``Status:`` is a device state number (include/asterisk/devicestate.h).
DEVICE_STATE_NAMES = (
    "UNKNOWN", "NOT_INUSE", "INUSE", "BUSY", "INVALID", "UNAVAILABLE", "RINGING", "RINGINUSE", "ONHOLD",
)
# Header ingest adds to a Hangup that Asterisk sent while shutting down (not an AMI header).
PBX_SHUTTING_DOWN = "AcdPbxShuttingDown"
# What Asterisk writes in CallerIDNum / CallerIDName when the channel has none.
UNKNOWN_CALLER_ID = "<unknown>"
DECLINED_DIAL_STATUSES = frozenset(
    {"NOANSWER", "BUSY", "CHANUNAVAIL", "CONGESTION", "DONTCALL", "TORTURE", "INVALIDARGS"}
)


class AmiFields:
    """Case-insensitive read access to one AMI event's headers."""

    __slots__ = ("_fields",)

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._fields = {str(k).lower(): v for k, v in data.items()}

    def get(self, name: str, default: str = "") -> str:
        value = self._fields.get(name.lower(), default)
        if isinstance(value, list):  # a repeated scalar header: Asterisk never does this
            value = value[0] if value else default
        return value if isinstance(value, str) else str(value)

    def all(self, name: str) -> list[str]:
        value = self._fields.get(name.lower(), [])
        return [str(v) for v in value] if isinstance(value, list) else [str(value)]

    def chan_variables(self, prefix: str = "") -> dict[str, str]:
        """``ChanVariable: NAME=value`` headers (manager.conf channelvars) as a dict."""
        found: dict[str, str] = {}
        for item in self.all(f"{prefix}ChanVariable"):
            name, _, value = item.partition("=")
            found[name.strip().upper()] = value
        return found


def device_of(channel: str) -> str:
    """``PJSIP/a1-0000000a`` -> ``PJSIP/a1``; ``Local/1001@agents-00000001;1`` -> ``Local/1001@agents``."""
    base = channel.split(";", 1)[0]
    head, sep, _ = base.rpartition("-")
    return head if sep and "/" in head else base


def partition_key(data: Mapping[str, Any]) -> str:
    """Kafka key: the call (Linkedid) or the agent's device, so each one's events stay in order."""
    fields = AmiFields(data)
    linkedid = fields.get("Linkedid") or fields.get("Uniqueid") or _transfer_linkedid(fields)
    if linkedid:
        return f"call:{linkedid}"
    device = fields.get("StateInterface") or fields.get("Interface") or fields.get("Device")
    if device:
        return f"agent:{device}"
    return f"ami:{fields.get('Event').lower() or 'response'}"


def _transfer_linkedid(fields: AmiFields) -> str:
    return next((fields.get(name) for name in TRANSFER_LINKEDIDS if fields.get(name)), "")


def translate(envelope: Envelope, *, roster_queue: str = DEFAULT_ROSTER_QUEUE) -> DomainEvent | None:
    """The domain event an envelope means, or None when routing does not care.

    Queue member events count only for ``roster_queue``: app_queue raises them for every
    queue on the PBX, and a member of another queue is not an ACD agent.
    """
    if envelope.type == AMI_RESYNC:
        return _resync(envelope)
    if envelope.type != AMI_EVENT:
        return None
    fields = AmiFields(envelope.data)
    name = fields.get("Event").lower()
    # Callbacks: the channels of an attempt are known by their Linkedid (router/callback.py).
    if (leg := callback_leg(fields)) is not None:
        return callback_event(name, fields, leg, envelope.ts)
    if name in ROSTER_EVENTS and fields.get("Queue").lower() != roster_queue.lower():
        return None
    handler = _HANDLERS.get(name)
    return handler(fields, envelope.ts) if handler else None


def _user_event(fields: AmiFields, at: float) -> DomainEvent | None:
    if fields.get("UserEvent").lower() == CALLBACK_USER_EVENT:
        return _callback_requested(fields, at)
    if fields.get("UserEvent").lower() != QUEUED_USER_EVENT:
        return None
    variables = fields.chan_variables()
    return _queued_call(
        fields,
        at,
        queue=fields.get("Queue") or variables.get("ACD_QUEUE", ""),
        priority=variables.get("ACD_PRIORITY") or _user_header_after_snapshot(fields, "Priority"),
        requirements=fields.get("Requirements") or variables.get("ACD_REQUIREMENTS", ""),
        preferred_agent=fields.get("PreferredAgent") or variables.get("ACD_PREFERRED_AGENT", ""),
    )


def _callback_requested(fields: AmiFields, at: float) -> DomainEvent | None:
    """The caller accepted a callback: the number it confirmed or entered (``Number:``),
    else its caller ID; '' when neither can be dialled (the router then refuses it)."""
    call_id = fields.get("Linkedid") or fields.get("Uniqueid")
    if not call_id:
        return None
    number = clean_number(fields.get("Number")) or clean_number(caller_id(fields, "CallerIDNum")) or ""
    return CallbackRequested(call_id, number, at)


def _user_header_after_snapshot(fields: AmiFields, name: str) -> str:
    """A UserEvent header whose name the channel snapshot also uses (``Priority`` is the
    dialplan priority there): the user's value is the one after the snapshot's."""
    values = fields.all(name)
    return values[-1] if len(values) > 1 else ""


def _queued_call(
    fields: AmiFields,
    at: float,
    *,
    queue: str,
    priority: str,
    requirements: str,
    preferred_agent: str = "",
    resynced: bool = False,
) -> CallQueued | None:
    call_id = fields.get("Linkedid") or fields.get("Uniqueid")
    if not call_id:
        logger.warning("AcdCallQueued without Uniqueid/Linkedid ignored: %s", fields.get("Channel"))
        return None
    return CallQueued(
        call_id=call_id,
        channel=fields.get("Channel"),
        queue=queue.strip(),
        at=at,
        priority=_parse_priority(priority, call_id),
        requirements=_parse_override(requirements, call_id),
        resynced=resynced,
        caller_number=caller_id(fields, "CallerIDNum"),
        caller_name=caller_id(fields, "CallerIDName"),
        preferred_agent=preferred_agent.strip(),
    )


def caller_id(fields: AmiFields, header: str) -> str:
    """The caller's number or name from the channel snapshot; '' when Asterisk has none."""
    value = fields.get(header).strip()
    return "" if value == UNKNOWN_CALLER_ID else value


def _parse_priority(text: str, call_id: str) -> int | None:
    if not text.strip():
        return None
    try:
        return int(text)
    except ValueError:
        logger.warning("call %s: priority %r is not an integer; using the queue's default", call_id, text)
        return None


def _parse_override(text: str, call_id: str) -> Requirements | None:
    if not text.strip():
        return None
    try:
        return parse_requirements(text)
    except ValueError as exc:
        logger.warning("call %s: %s; using the queue's requirements", call_id, exc)
        return None


def _dial_begin(fields: AmiFields, at: float) -> DomainEvent | None:
    call_id, dest = fields.get("Linkedid"), fields.get("DestChannel")
    return AgentRang(call_id, device_of(dest), at) if call_id and dest else None


def _dial_end(fields: AmiFields, at: float) -> DomainEvent | None:
    call_id, dest = fields.get("Linkedid"), fields.get("DestChannel")
    status = fields.get("DialStatus").upper()
    if not call_id or not dest:
        return None
    if status == "ANSWER":
        return AgentAnswered(call_id, device_of(dest), at)
    if status in DECLINED_DIAL_STATUSES:
        return AgentDeclined(call_id, device_of(dest), status, at)
    return None  # CANCEL: the caller hung up; its Hangup follows


def _music_on_hold_start(fields: AmiFields, at: float) -> DomainEvent | None:
    """A caller put (back) on hold: after a Redirect, this is how a Dial that never rang
    shows (CHANUNAVAIL produces no DialBegin/DialEnd at all)."""
    uniqueid, linkedid = fields.get("Uniqueid"), fields.get("Linkedid")
    if not uniqueid or (linkedid and linkedid != uniqueid):
        return None
    return CallerHeld(uniqueid, at)


def _music_on_hold_stop(fields: AmiFields, at: float) -> DomainEvent | None:
    """The caller left hold: while an offer is out, its Redirect moved the caller."""
    uniqueid, linkedid = fields.get("Uniqueid"), fields.get("Linkedid")
    if not uniqueid or (linkedid and linkedid != uniqueid):
        return None
    return CallerLeftHold(uniqueid, at)


def _hangup(fields: AmiFields, at: float) -> DomainEvent | None:
    uniqueid, linkedid = fields.get("Uniqueid"), fields.get("Linkedid")
    if not uniqueid:
        return None
    if linkedid and linkedid != uniqueid:
        # An agent leg: the call ends with the caller's channel, but after a transfer the
        # caller lives on while the agent's part ends here.
        return _agent_leg_ended(fields, at)
    return CallerHungUp(
        uniqueid, fields.get("Cause"), at, by_pbx_shutdown=fields.get(PBX_SHUTTING_DOWN) == "1"
    )


def _agent_leg_ended(fields: AmiFields, at: float) -> DomainEvent | None:
    """An agent's leg (not the caller's channel) left its bridge or hung up."""
    uniqueid, linkedid, channel = fields.get("Uniqueid"), fields.get("Linkedid"), fields.get("Channel")
    if not uniqueid or not linkedid or linkedid == uniqueid or not channel:
        return None
    return AgentLegEnded(linkedid, device_of(channel), at)


def _blind_transfer(fields: AmiFields, at: float) -> DomainEvent | None:
    call_id = _transfer_linkedid(fields)
    if fields.get("Result") != "Success" or not call_id:
        return None  # a failed transfer leaves the call where it was
    target = f"{fields.get('Context')},{fields.get('Extension')}"
    return CallTransferred(call_id, _leg_device(fields, "Transferer"), "blind", target, at)


def _attended_transfer(fields: AmiFields, at: float) -> DomainEvent | None:
    call_id = _transfer_linkedid(fields)
    if fields.get("Result") != "Success" or not call_id or fields.get("DestType") == "Fail":
        return None
    dest_type = fields.get("DestType")
    target = fields.get("TransferTargetChannel") or fields.get("DestApp") or dest_type
    return CallTransferred(call_id, _leg_device(fields, "OrigTransferer"), "attended", target, at)


def _leg_device(fields: AmiFields, prefix: str) -> str:
    channel = fields.get(f"{prefix}Channel")
    return device_of(channel) if channel else ""


def _member_device(fields: AmiFields) -> str:
    return fields.get("StateInterface") or fields.get("Interface") or fields.get("Location")


def _member_presence(
    fields: AmiFields, at: float, *, removed: bool = False, pause_known: bool = True
) -> DomainEvent | None:
    device = _member_device(fields)
    if not device:
        return None
    paused = fields.get("Paused") == "1"
    if removed:
        state = AgentState.LOGGED_OUT
    else:
        state = AgentState.PAUSED if paused else AgentState.AVAILABLE
    reason = fields.get("PausedReason") if paused else ""
    member_name = fields.get("MemberName") or fields.get("Name")
    device_state = "" if removed else device_state_name(fields.get("Status"))
    return AgentPresenceChanged(device, member_name, state.value, reason, at, device_state, pause_known)


def device_state_name(status: str) -> str:
    """``Status: 5`` -> ``UNAVAILABLE``; '' when absent or not a known number."""
    if status.isdigit() and int(status) < len(DEVICE_STATE_NAMES):
        return DEVICE_STATE_NAMES[int(status)]
    return ""


def _member_status(fields: AmiFields, at: float) -> DomainEvent | None:
    """The member's phone changed: its Paused may be older than the router's last pause."""
    return _member_presence(fields, at, pause_known=False)


def _member_removed(fields: AmiFields, at: float) -> DomainEvent | None:
    return _member_presence(fields, at, removed=True)


def _device_state(fields: AmiFields, at: float) -> DomainEvent | None:
    device, state = fields.get("Device"), fields.get("State")
    return AgentDeviceChanged(device, state.upper(), at) if device and state else None


def _core_show_channel(fields: AmiFields, at: float) -> DomainEvent | None:
    """A resync listing: a caller still waiting on hold re-announces its call; an agent's leg
    in a bridge says its call was answered while the link was down (both idempotent)."""
    variables = fields.chan_variables()
    is_caller = fields.get("Uniqueid") == (fields.get("Linkedid") or fields.get("Uniqueid"))
    if not is_caller and fields.get("BridgeId") and fields.get("Linkedid"):
        # The answer time is not listed: the leg's start (when the agent's phone began to
        # ring) is the closest known moment.
        started = at - parse_duration(fields.get("Duration"))
        return AgentAnswered(fields.get("Linkedid"), device_of(fields.get("Channel")), started)
    # channelvars puts ACD_QUEUE= on every channel, empty where the dialplan never set it.
    if not is_caller or not variables.get("ACD_QUEUE", "").strip() or fields.get("BridgeId"):
        return None
    waited = parse_duration(fields.get("Duration"))
    return _queued_call(
        fields,
        at - waited,
        queue=variables["ACD_QUEUE"],
        priority=variables.get("ACD_PRIORITY", ""),
        requirements=variables.get("ACD_REQUIREMENTS", ""),
        preferred_agent=variables.get("ACD_PREFERRED_AGENT", ""),
        resynced=True,
    )


def parse_duration(text: str) -> float:
    """AMI durations: ``HH:MM:SS`` (CoreShowChannel) or plain seconds."""
    try:
        if ":" in text:
            seconds = 0.0
            for part in text.split(":"):
                seconds = seconds * 60 + float(part)
            return seconds
        return float(text) if text else 0.0
    except ValueError:
        return 0.0


def _resync(envelope: Envelope) -> DomainEvent | None:
    channels = envelope.data.get("live_call_ids")
    if not isinstance(channels, list):
        logger.warning("resync envelope %s without live_call_ids ignored", envelope.id)
        return None
    lost_at = envelope.data.get("link_lost_at")
    return ResyncFinished(
        frozenset(str(c) for c in channels),
        envelope.ts,
        link_lost_at=float(lost_at) if isinstance(lost_at, int | float) else None,
        pbx_restart=envelope.data.get("pbx_restart") is True,
        marks=_marks(envelope.data.get("marks")),
    )


def _marks(raw: object) -> dict[str, int]:
    """The listing's partition marks; none (an older ingest, or garbled) waits for nothing."""
    if not isinstance(raw, dict):
        return {}
    return {str(part): offset for part, offset in raw.items() if isinstance(offset, int) and offset >= 0}


_HANDLERS = {
    "userevent": _user_event,
    "dialbegin": _dial_begin,
    "dialend": _dial_end,
    "hangup": _hangup,
    "bridgeleave": _agent_leg_ended,
    "blindtransfer": _blind_transfer,
    "attendedtransfer": _attended_transfer,
    "musiconholdstart": _music_on_hold_start,
    "musiconholdstop": _music_on_hold_stop,
    "queuememberadded": _member_presence,
    "queuemember": _member_presence,
    "queuememberpause": _member_presence,
    "queuememberstatus": _member_status,
    "queuememberremoved": _member_removed,
    "coreshowchannel": _core_show_channel,
    "devicestatechange": _device_state,
}
