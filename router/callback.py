"""Callbacks that keep the caller's place: the pure decisions (docs/routing.md, Callbacks).

A caller who accepts the recipe's offer is announced with ``UserEvent AcdCallbackRequested``
and hangs up; its call stays in line with its entry time unchanged. When an agent is
reserved for it (``reserve.lua``, as for any call), the routing worker emits a callback
command instead of an offer, and the dispatcher calls out with an AMI ``Originate``: the
agent's phone first (showing the caller's number) into a context that dials the caller, or
the caller first into a context that dials the agent.

The originated channel gets a Uniqueid the router chose (``ChannelId``), which names the
offer and the call: every event of the callback's channels carries it as their Linkedid,
so the translator knows them without any lookup. The first leg is the one Originate rings
(its ``OriginateResponse`` says whether it answered); the second is the one the dialplan
dials (its ``DialEnd`` says so).
"""

from __future__ import annotations

import re

from router.commands import CallbackCommand
from router.settings import CallbackDialSettings

LEG_PREFIX = "acdcb-"
# What a callback number may hold: digits, a leading +, and the DTMF symbols * and #.
NUMBER_PATTERN = re.compile(r"^\+?[0-9*#]{2,32}$")


def leg_id(offer_id: str, call_id: str) -> str:
    """The Uniqueid (and so the Linkedid) of a callback attempt's channels."""
    return f"{LEG_PREFIX}{offer_id}-{call_id}"


def parse_leg_id(linkedid: str) -> tuple[str, str] | None:
    """(offer_id, call_id) of a callback attempt's Linkedid, or None for any other call.

    Offer ids are hex (router.matching), so the first dash after the prefix ends it."""
    if not linkedid.startswith(LEG_PREFIX):
        return None
    offer_id, sep, call_id = linkedid[len(LEG_PREFIX) :].partition("-")
    return (offer_id, call_id) if sep and offer_id and call_id else None


def clean_number(text: str) -> str | None:
    """The number to call back, without spaces and dashes; None when it cannot be dialled."""
    number = re.sub(r"[\s().-]", "", text)
    return number if NUMBER_PATTERN.match(number) else None


def originate_action(command: CallbackCommand, dial: CallbackDialSettings) -> dict[str, str]:
    """The AMI Originate of one callback attempt (asynchronous: OriginateResponse follows)."""
    variables = (
        f"ACD_CALL_ID={command.call_id},ACD_QUEUE={command.queue},ACD_CALLBACK_NUMBER={command.number}"
    )
    action = {
        "Action": "Originate",
        "Priority": "1",
        "Timeout": str(int(dial.ring_timeout_s * 1000)),
        "Async": "true",
        "ChannelId": leg_id(command.offer_id, command.call_id),
        "Variable": variables,
    }
    if command.agent_first:
        name = command.caller_name or f"Callback {command.queue}"
        return action | {
            "Channel": command.device,
            "Context": dial.agent_context,
            "Exten": command.number,
            "CallerID": f'"{name}" <{command.number}>',
        }
    shown = {"CallerID": dial.caller_id} if dial.caller_id else {}
    return (
        action
        | shown
        | {
            "Channel": dial.caller_dial.replace("{number}", command.number),
            "Context": dial.caller_context,
            "Exten": command.exten,
        }
    )


def claim_window_s(dial: CallbackDialSettings, dispatch_timeout_s: float) -> float:
    """How long a claimed attempt may go without an outcome before its call goes back in
    line (real seconds): both legs may ring out, then the dispatcher's usual margin."""
    return 2 * dial.ring_timeout_s + dispatch_timeout_s
