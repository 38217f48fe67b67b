"""Callbacks in the AMI simulator (load_tests/amisim/callbacks.py), both ways round: the
router's own Originate (router/callback.py) sent over AMI, and the events that come back
read by the router's translator (router/ami/callback_events.py).

Simulated time runs 50 times faster than real time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from panoramisk import Message

from load_tests.amisim.callbacks import CallbackPlan
from load_tests.amisim.core import Core
from load_tests.amisim.pbx import Pbx
from load_tests.amisim.testing import ADMIN, ROUTER, SimManager, open_manager, simulator
from router.ami.translate import translate
from router.callback import leg_id, originate_action
from router.clock import ScaledClock
from router.commands import CallbackCommand
from router.envelope import AMI_EVENT, Envelope
from router.events import CallbackEnded, CallbackLegAnswered, CallbackLegFailed, DomainEvent
from router.settings import CallbackDialSettings

NUMBER = "+15550007"
DIAL = CallbackDialSettings(ring_timeout_s=20)  # simulated seconds


class Env:
    """``ami`` records every event; ``router`` sends the Originate (panoramisk keeps the
    OriginateResponse of its own asynchronous Originate as the action's reply)."""

    def __init__(self, pbx: Pbx, ami: SimManager, router: SimManager) -> None:
        self.pbx, self.ami, self.router = pbx, ami, router

    async def waiting_caller(self, plan: CallbackPlan) -> str:
        """A caller who asks for a callback; its call id once the request is out."""
        call = self.pbx.place_call("q", handle_time_s=10, caller_id=NUMBER, callback=plan)
        await self.ami.wait_event("UserEvent", UserEvent="AcdCallbackRequested")
        return call.call_id

    async def call_back(self, call_id: str, *, agent_first: bool, offer_id: str = "0a1b") -> str:
        """The dispatcher's Originate; the attempt's leg id."""
        command = CallbackCommand(offer_id, call_id, "a1", "PJSIP/a1", "a1", NUMBER, "Ann", "q", agent_first, 0.0)
        queued, _ = await self.router.send_action(originate_action(command, DIAL))
        assert queued.response == "Success", queued
        return leg_id(offer_id, call_id)

    def leg_events(self, leg: str) -> list[Message]:
        return [e for e in self.ami.events if leg in (e.get("Linkedid"), e.get("Uniqueid"))]

    def translated(self, leg: str) -> list[DomainEvent]:
        envelopes = (
            Envelope(type=AMI_EVENT, id="e", source="t", ts=1.0, key="k", data=dict(e)) for e in self.leg_events(leg)
        )
        return [event for event in map(translate, envelopes) if event is not None]


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    async with simulator(time_scale=50.0, ring_timeout_s=10.0) as (pbx, sim):
        ami, _ = await open_manager(sim, "admin", ADMIN.secret)
        router, _ = await open_manager(sim, "acd-router", ROUTER.secret)
        await ami.wait_event("FullyBooted")
        yield Env(pbx, ami, router)
        ami.close()
        router.close()
        assert pbx.errors == []


def outcomes(events: list[DomainEvent]) -> list[tuple[str, int | None, str]]:
    """(kind, leg, reason) of each translated event, without ids and times."""
    result: list[tuple[str, int | None, str]] = []
    for event in events:
        if isinstance(event, CallbackLegAnswered):
            result.append(("answered", event.leg, ""))
        elif isinstance(event, CallbackLegFailed):
            result.append(("failed", event.leg, event.reason))
        elif isinstance(event, CallbackEnded):
            result.append(("ended", None, ""))
    return result


@pytest.mark.parametrize("agent_first", [True, False], ids=["agent-first", "caller-first"])
async def test_a_callback_both_answer_is_connected_then_ends(env: Env, agent_first: bool) -> None:
    env.pbx.add_agent("a1", answer_delay_s=1.0)
    call_id = await env.waiting_caller(CallbackPlan(after_s=1, answer_delay_s=2))
    leg = await env.call_back(call_id, agent_first=agent_first)
    await env.ami.wait_event("Hangup", Uniqueid=leg)
    assert outcomes(env.translated(leg)) == [("answered", 1, ""), ("answered", 2, ""), ("ended", None, "")]
    names = [e.event for e in env.leg_events(leg)]
    for name in ("Newchannel", "Newstate", "OriginateResponse", "DialBegin", "DialEnd", "BridgeEnter", "BridgeLeave"):
        assert name in names, name
    [response] = [e for e in env.leg_events(leg) if e.event == "OriginateResponse"]
    first = "PJSIP/a1-" if agent_first else "PJSIP/trunk-"
    assert response.Reason == "4" and response.Channel.startswith(first) and response.Uniqueid == leg
    [attempt] = env.pbx.ledger.calls[call_id].callback_attempts
    assert (attempt.agent_id, attempt.answered, attempt.connected) == ("a1", True, True)
    await env.ami.wait_event("DeviceStateChange", Device="PJSIP/a1", State="NOT_INUSE")


async def test_caller_first_a_caller_who_does_not_answer_fails_the_originate(env: Env) -> None:
    env.pbx.add_agent("a1")
    call_id = await env.waiting_caller(CallbackPlan(after_s=1, answers=(False,)))
    leg = await env.call_back(call_id, agent_first=False)
    response = await env.ami.wait_event("OriginateResponse", Uniqueid=leg)
    await env.ami.wait_event("Hangup", Uniqueid=leg)
    # As on Asterisk 22: the unanswered channel hangs up and OriginateResponse fails (Reason 3),
    # in either order.
    assert sorted(outcomes(env.translated(leg)), key=str) == [("ended", None, ""), ("failed", 1, "reason 3")]
    assert (response.Response, response.Channel) == ("Failure", f"PJSIP/{NUMBER}@trunk")
    assert not [e for e in env.leg_events(leg) if e.event == "DialBegin"]  # the agent never rang
    [attempt] = env.pbx.ledger.calls[call_id].callback_attempts
    assert (attempt.answered, attempt.connected) == (False, False)
    assert NUMBER in env.pbx.callbacks.waiting  # still waiting for the next attempt


async def test_caller_first_an_agent_who_lets_it_ring_out_leaves_the_caller_an_apology(env: Env) -> None:
    env.pbx.add_agent("a1", answer_probability=0.0)
    call_id = await env.waiting_caller(CallbackPlan(after_s=1, answer_delay_s=1))
    leg = await env.call_back(call_id, agent_first=False)
    await env.ami.wait_event("Hangup", Uniqueid=leg)
    assert outcomes(env.translated(leg)) == [("answered", 1, ""), ("failed", 2, "NOANSWER"), ("ended", None, "")]
    hangups = [e for e in env.leg_events(leg) if e.event == "Hangup"]
    assert [h.Channel.startswith("PJSIP/a1-") for h in hangups] == [True, False]  # the agent's leg first
    assert float(hangups[1].Timestamp) - float(hangups[0].Timestamp) >= 2.5  # the apology plays
    [attempt] = env.pbx.ledger.calls[call_id].callback_attempts
    assert (attempt.agent_id, attempt.answered, attempt.connected) == ("a1", True, False)
    assert env.pbx.ledger.calls[call_id].answered_at is None
    await env.ami.wait_event("DeviceStateChange", Device="PJSIP/a1", State="NOT_INUSE")


async def test_caller_first_a_number_nobody_waits_at_cannot_be_reached(env: Env) -> None:
    env.pbx.add_agent("a1")
    leg = await env.call_back("1700.1", agent_first=False)
    response = await env.ami.wait_event("OriginateResponse", Uniqueid=leg)
    assert (response.Response, response.Reason) == ("Failure", "0")
    assert outcomes(env.translated(leg)) == [("failed", 1, "reason 0")]


def order_of_a_rang_out_originate(seed: int) -> tuple[str, ...]:
    seen: list[str] = []
    Core(ScaledClock(time_scale=1.0), seed=seed, channelvars=()).in_either_order(
        lambda: seen.append("Hangup"), lambda: seen.append("OriginateResponse")
    )
    return tuple(seen)


def test_a_rang_out_originates_hangup_and_response_come_in_either_order() -> None:
    """Asterisk 22 sent them both ways round (tests/test_real_asterisk.py); so does the simulator."""
    orders = {order_of_a_rang_out_originate(seed) for seed in range(20)}
    assert orders == {("Hangup", "OriginateResponse"), ("OriginateResponse", "Hangup")}
