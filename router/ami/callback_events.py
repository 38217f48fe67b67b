"""AMI events of callback attempts (router/callback.py) as domain events. Pure.

Every channel of an attempt has the Linkedid the dispatcher gave its Originate
(``ChannelId``: ``acdcb-<offer>-<call>``), so these events are told apart from calls'
by that alone. Leg 1 is the channel Originate rang, leg 2 the one the dialplan dials.
"""

from __future__ import annotations

from typing import Protocol

from router.callback import parse_leg_id
from router.events import CallbackEnded, CallbackLegAnswered, CallbackLegFailed, DomainEvent

# DialEnd statuses that end the second leg unanswered (CANCEL: the first leg hung up; its
# Hangup follows and ends the attempt).
UNANSWERED = frozenset(
    {"NOANSWER", "BUSY", "CHANUNAVAIL", "CONGESTION", "DONTCALL", "TORTURE", "INVALIDARGS"}
)


class Fields(Protocol):
    def get(self, name: str, default: str = "") -> str: ...


def callback_leg(fields: Fields) -> tuple[str, str] | None:
    """(offer_id, call_id) when the event belongs to a callback attempt's channels."""
    return parse_leg_id(fields.get("Linkedid") or fields.get("Uniqueid"))


def callback_event(name: str, fields: Fields, leg: tuple[str, str], at: float) -> DomainEvent | None:
    """The domain event of one AMI event ``name`` (lower case) of a callback attempt."""
    offer_id, call_id = leg
    if name == "originateresponse":
        if fields.get("Response").lower() == "success":
            return CallbackLegAnswered(call_id, offer_id, 1, at)
        return CallbackLegFailed(call_id, offer_id, 1, f"reason {fields.get('Reason') or '?'}", at)
    if name == "dialend":
        status = fields.get("DialStatus").upper()
        if status == "ANSWER":
            return CallbackLegAnswered(call_id, offer_id, 2, at)
        return CallbackLegFailed(call_id, offer_id, 2, status, at) if status in UNANSWERED else None
    if name == "hangup" and fields.get("Uniqueid") == (fields.get("Linkedid") or fields.get("Uniqueid")):
        return CallbackEnded(call_id, offer_id, at)
    return None
