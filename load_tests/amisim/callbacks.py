"""Callbacks as the recipe runs them (deploy/asterisk/extensions.conf, [acd-callback-offer],
[acd-callback], [acd-callback-connect]).

A caller with a ``CallbackPlan`` accepts the offer after ``after_s`` on hold: the recipe
raises ``UserEvent: AcdCallbackRequested`` with ``Number:`` and hangs up. The router later
calls back with an asynchronous Originate whose ``ChannelId`` becomes the first leg's
Uniqueid (and every leg's Linkedid):

- agent first: ``Channel: PJSIP/<agent ext>``, ``Context: acd-callback``, ``Exten: <number>``;
  once the agent answers, the dialplan runs ``Dial(PJSIP/<number>@trunk)``;
- caller first (``Channel: PJSIP/<number>@trunk`` into ``acd-callback-connect``) is not
  modelled: such an Originate fails as for any channel the simulator cannot reach.

Whether the caller answers is the plan's (``answers``); whether the agent does, its phone's
(answer probability and delay: an agent who lets the preview ring out "rejects" it).
After the second leg answers, the two talk for the caller's handle time, then both hang up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from load_tests.amisim import perms
from load_tests.amisim.core import Core
from load_tests.amisim.ledger import CallbackAttempt, CallRecord
from load_tests.amisim.phones import Phones, SimAgent
from load_tests.amisim.snapshot import RINGING, Bridge, Channel
from load_tests.amisim.wire import EOL

NORMAL_CLEARING, NO_ANSWER_CAUSE = 16, 19
AGENT_CONTEXT, CALLER_CONTEXT, TRUNK = "acd-callback", "acd-callback-connect", "trunk"
HangUp = Callable[[Channel, int], None]  # hangs up the agent's leg (the Originator's)


@dataclass(frozen=True)
class CallbackPlan:
    """A caller who accepts the callback offer after ``after_s`` on hold and answers the
    callback (after ``answer_delay_s``) if ``answers`` (a list: one answer per attempt, the
    last repeated), with ``number`` ('' its caller ID)."""

    after_s: float
    answers: tuple[bool, ...] = (True,)
    answer_delay_s: float = 2.0
    number: str = ""

    def answers_attempt(self, index: int) -> bool:
        return self.answers[min(index, len(self.answers) - 1)]


@dataclass(eq=False)
class Waiting:
    """A caller waiting to be called back."""

    record: CallRecord
    plan: CallbackPlan


class Callbacks:
    """Callers waiting to be called back, by number, and the callback calls in progress."""

    def __init__(self, core: Core, phones: Phones, *, ring_timeout_s: float) -> None:
        self._core = core
        self._phones = phones
        self.ring_timeout_s = ring_timeout_s
        self.waiting: dict[str, Waiting] = {}  # by number

    def request(self, record: CallRecord, channel: Channel, plan: CallbackPlan) -> None:
        """[acd-callback-offer]: the caller pressed 1; UserEvent, then Hangup (by the caller's flow)."""
        number = plan.number or record.caller_number
        channel.update(context="acd-callback-offer", exten="s", priority=3, application="UserEvent")
        body = f"UserEvent: AcdCallbackRequested{EOL}Number: {number}{EOL}"
        self._core.emit("UserEvent", perms.USER, channel.snapshot() + body)
        record.callback_requested_at = self._core.now()
        self.waiting[number] = Waiting(record, plan)

    # -- agent first: [acd-callback] runs Dial(PJSIP/${EXTEN}@trunk) on the agent's leg ----

    def dial_caller(self, agent: SimAgent, agent_leg: Channel, number: str, hang_up: HangUp) -> None:
        """The agent answered the preview: the dialplan dials the caller at ``number``."""
        timeout = self.ring_timeout_s
        app_data = f"PJSIP/{number}@{TRUNK},{timeout:g}"
        agent_leg.update(context=AGENT_CONTEXT, exten=number, priority=1, application="Dial", app_data=app_data)
        waiting = self.waiting.get(number)
        if waiting is None:  # nobody waits at that number: the trunk refuses it, Dial returns
            hang_up(agent_leg, NORMAL_CLEARING)
            return
        caller = self._core.new_channel(
            f"PJSIP/{TRUNK}",
            linkedid=agent_leg.linkedid,
            context="from-trunk",
            exten=number,
            caller_num=number,
            caller_name=waiting.record.caller_name,
        )
        dial_string = f"DialString: {number}@{TRUNK}{EOL}"
        self._core.emit("DialBegin", perms.CALL, agent_leg.snapshot() + caller.snapshot("Dest") + dial_string)
        self._core.set_state(caller, RINGING)
        attempt = CallbackAttempt(self._core.now(), agent.agent_id)
        waiting.record.callback_attempts.append(attempt)
        plan = waiting.plan
        if plan.answers_attempt(len(waiting.record.callback_attempts) - 1) and plan.answer_delay_s < timeout:
            answer = Call(waiting, agent, agent_leg, caller, attempt, hang_up)
            self._core.timers.call_later(plan.answer_delay_s, lambda: self._answered(answer))
        else:
            self._core.timers.call_later(timeout, lambda: self._missed(agent_leg, caller, hang_up))

    def _dial_end(self, caller: Channel, dest: Channel, status: str) -> None:
        body = caller.snapshot() + dest.snapshot("Dest") + f"DialStatus: {status}{EOL}"
        self._core.emit("DialEnd", perms.CALL, body)

    def _missed(self, agent_leg: Channel, caller: Channel, hang_up: HangUp) -> None:
        """The caller did not answer: DialEnd NOANSWER, its leg goes, the agent's Dial returns."""
        if agent_leg.hangup_pending:
            return
        self._dial_end(agent_leg, caller, "NOANSWER")
        self._core.hangup(caller, NO_ANSWER_CAUSE)
        hang_up(agent_leg, NORMAL_CLEARING)

    def _answered(self, call: Call) -> None:
        if call.agent_leg.hangup_pending:
            return
        core, record = self._core, call.waiting.record
        core.answer(call.caller)
        self._dial_end(call.agent_leg, call.caller, "ANSWER")
        call.bridge = Bridge(core.new_bridge_id())
        core.emit("BridgeCreate", perms.CALL, call.bridge.snapshot())
        for channel in (call.agent_leg, call.caller):
            self._bridge(call.bridge, channel, enter=True)
        self._phones.refresh(call.agent)
        now = core.now()
        call.attempt.answered = True
        record.state, record.answered_at, record.agent_id = "talking", now, call.agent.agent_id
        self.waiting = {n: w for n, w in self.waiting.items() if w is not call.waiting}
        core.timers.call_later(record.handle_time_s, lambda: self._finished(call))

    def _bridge(self, bridge: Bridge, channel: Channel, *, enter: bool) -> None:
        if enter:
            bridge.members.append(channel)
        else:
            bridge.members.remove(channel)
        channel.update(bridge_id=bridge.uniqueid if enter else "")
        event = "BridgeEnter" if enter else "BridgeLeave"
        self._core.emit(event, perms.CALL, bridge.snapshot() + channel.snapshot())

    def _finished(self, call: Call) -> None:
        """The talk is over: both leave the bridge, the caller's leg and the agent's hang up."""
        bridge = call.bridge
        if bridge is not None:
            for channel in (call.caller, call.agent_leg):
                self._bridge(bridge, channel, enter=False)
            self._core.emit("BridgeDestroy", perms.CALL, bridge.snapshot())
        if not call.caller.hangup_pending:
            self._core.hangup(call.caller, NORMAL_CLEARING)
        call.hang_up(call.agent_leg, NORMAL_CLEARING)
        record = call.waiting.record
        record.state, record.ended_at, record.hangup_by = "completed", self._core.now(), "agent"


@dataclass(eq=False)
class Call:
    """A callback the caller answered: its two legs and, once bridged, the bridge."""

    waiting: Waiting
    agent: SimAgent
    agent_leg: Channel
    caller: Channel
    attempt: CallbackAttempt
    hang_up: HangUp
    bridge: Bridge | None = None
