"""Callbacks as the recipe runs them (deploy/asterisk/extensions.conf, [acd-callback-offer],
[acd-callback], [acd-callback-connect]).

A caller with a ``CallbackPlan`` accepts the offer after ``after_s`` on hold: the recipe
raises ``UserEvent: AcdCallbackRequested`` with ``Number:`` and hangs up. The router later
calls back with an asynchronous Originate whose ``ChannelId`` becomes the first leg's
Uniqueid (and every leg's Linkedid):

- agent first: ``Channel: PJSIP/<agent ext>``, ``Context: acd-callback``, ``Exten: <number>``;
  once the agent answers, the dialplan runs ``Dial(PJSIP/<number>@trunk)``;
- caller first: ``Channel: PJSIP/<number>@trunk``, ``Context: acd-callback-connect``,
  ``Exten: <agent ext>``; the caller's phone rings for the Originate's Timeout. Unanswered,
  its leg hangs up and OriginateResponse fails with Reason 3, in either order, as on
  Asterisk 22 (a number nobody waits at:
  Reason 0, no channel). Answered (OriginateResponse Success, Reason 4), the dialplan runs
  ``Dial(PJSIP/<agent ext>,${ACD_RING_TIMEOUT})``: DialBegin, the agent's phone rings; if
  it rings out (or is busy), DialEnd NOANSWER (BUSY), ``Playback(acd-callback-sorry)`` and
  the caller's leg hangs up.

Whether the caller answers is the plan's (``answers``); whether the agent does, its phone's
(answer probability and delay: an agent who lets the preview ring out "rejects" it).
After the second leg answers (DialEnd ANSWER), the two are bridged and talk for the caller's
handle time, then both hang up, the caller's leg first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from load_tests.amisim import perms
from load_tests.amisim.core import Core
from load_tests.amisim.ledger import CallbackAttempt, CallRecord, DoubleAssignment
from load_tests.amisim.phones import Phones, SimAgent
from load_tests.amisim.snapshot import (
    REASON_ANSWERED,
    REASON_FAILED,
    REASON_RING_TIMEOUT,
    RINGING,
    Bridge,
    Channel,
)
from load_tests.amisim.wire import EOL

NO_CAUSE, NORMAL_CLEARING, USER_BUSY, NO_ANSWER_CAUSE = 0, 16, 17, 19
AGENT_CONTEXT, CALLER_CONTEXT, TRUNK = "acd-callback", "acd-callback-connect", "trunk"
SORRY_S = 3.0  # Playback(acd-callback-sorry), simulated seconds
HangUp = Callable[[Channel, int], None]  # hangs up the agent's leg (and frees its phone)
Respond = Callable[[Channel | None, int], None]  # OriginateResponse: the answered leg or None, Reason


class CallerOriginate(Protocol):
    """What a caller-first Originate says (load_tests.amisim.originate.OriginateRequest)."""

    @property
    def channel_id(self) -> str: ...
    @property
    def exten(self) -> str: ...
    @property
    def timeout_s(self) -> float: ...
    @property
    def caller_num(self) -> str: ...
    @property
    def caller_name(self) -> str: ...


@dataclass(frozen=True)
class CallbackPlan:
    """A caller who accepts the callback offer after ``after_s`` on hold and answers the
    callback (after ``answer_delay_s``) if ``answers`` (a list: one answer per attempt, the
    last repeated), with ``number`` ('' its caller ID)."""

    after_s: float
    answers: tuple[bool, ...] = (True,)
    answer_delay_s: float = 2.0
    number: str = ""

    def answers_attempt(self, index: int, ring_s: float) -> bool:
        """Whether the caller answers attempt ``index`` (from 0) that rings ``ring_s``."""
        return self.answers[min(index, len(self.answers) - 1)] and self.answer_delay_s < ring_s


@dataclass(eq=False)
class Waiting:
    """A caller waiting to be called back."""

    record: CallRecord
    plan: CallbackPlan


class Callbacks:
    """Callers waiting to be called back, by number, and the callback calls in progress."""

    def __init__(self, core: Core, phones: Phones, *, ring_timeout_s: float, agent_context: str) -> None:
        self._core = core
        self._phones = phones
        self._agent_context = agent_context
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

    # -- caller first: Originate rings the caller; [acd-callback-connect] dials the agent --

    def call_caller(self, request: CallerOriginate, number: str, respond: Respond) -> None:
        """Originate ``PJSIP/<number>@trunk``: the waiting caller's phone rings."""
        waiting = self.waiting.get(number)
        if waiting is None:  # nobody waits at that number: the trunk refuses it
            respond(None, REASON_FAILED)
            return
        core = self._core
        caller = core.new_channel(
            f"PJSIP/{TRUNK}",
            uniqueid=request.channel_id or None,
            context="from-trunk",
            exten=number,
            caller_num=request.caller_num,
            caller_name=request.caller_name,
            connected_num=number,
            connected_name=waiting.record.caller_name,
            application="AppDial2",
            app_data="(Outgoing Line)",
        )
        core.set_state(caller, RINGING)
        agent = self._phones.by_extension.get(request.exten)
        attempt = CallbackAttempt(core.now(), agent.agent_id if agent else request.exten)
        waiting.record.callback_attempts.append(attempt)
        plan = waiting.plan
        if plan.answers_attempt(len(waiting.record.callback_attempts) - 1, request.timeout_s):
            answered = lambda: self._caller_answered(waiting, caller, attempt, request.exten, respond)  # noqa: E731
            core.timers.call_later(plan.answer_delay_s, answered)
        else:
            core.timers.call_later(request.timeout_s, lambda: self._caller_missed(caller, respond))

    def _caller_missed(self, caller: Channel, respond: Respond) -> None:
        """The Originate rang out: its channel hangs up and OriginateResponse fails (either first)."""
        if caller.hangup_pending:
            return
        self._core.in_either_order(
            lambda: self._core.hangup(caller, NO_CAUSE), lambda: respond(None, REASON_RING_TIMEOUT)
        )

    def _caller_answered(
        self, waiting: Waiting, caller: Channel, attempt: CallbackAttempt, exten: str, respond: Respond
    ) -> None:
        """The caller answered: OriginateResponse, then Dial(PJSIP/<exten>,${ACD_RING_TIMEOUT})."""
        if caller.hangup_pending:
            return
        self._core.answer(caller)
        attempt.answered = True
        respond(caller, REASON_ANSWERED)
        app_data = f"PJSIP/{exten},{self.ring_timeout_s:g}"
        caller.update(context=CALLER_CONTEXT, exten=exten, priority=1, application="Dial", app_data=app_data)
        agent = self._phones.by_extension.get(exten)
        if agent is None or not agent.registered:  # app_dial: CHANUNAVAIL, no DialBegin
            self._sorry(caller)
            return
        self._dial_agent(
            Call(
                waiting,
                agent,
                self._agent_leg(agent, caller),
                caller,
                attempt,
                self._agent_hang_up(agent),
                agent_first=False,
            )
        )

    def _agent_leg(self, agent: SimAgent, caller: Channel) -> Channel:
        """app_dial's leg to the agent's phone, shown the caller's number; then DialBegin."""
        name = caller.connected_name
        leg = self._core.new_channel(
            f"PJSIP/{agent.extension}",
            linkedid=caller.linkedid,
            context=self._agent_context,
            exten=agent.extension,
            caller_num=caller.connected_num,
            caller_name=name,
            connected_num=caller.connected_num,
            connected_name=name,
            application="AppDial",
            app_data="(Outgoing Line)",
        )
        body = caller.snapshot() + leg.snapshot("Dest") + f"DialString: {agent.extension}{EOL}"
        self._core.emit("DialBegin", perms.CALL, body)
        return leg

    def _dial_agent(self, call: Call) -> None:
        """The agent's phone rings for ${ACD_RING_TIMEOUT} (busy at once when it is full)."""
        core, agent = self._core, call.agent
        if agent.at_capacity:  # the router reserved an agent whose phone is full
            entry = DoubleAssignment(call.caller.uniqueid, agent.agent_id, core.now(), agent.device_state)
            core.ledger.double_assignments.append(entry)
            self._agent_missed(call, "BUSY", USER_BUSY)
            return
        self._phones.ring(agent, call.agent_leg)
        delay = agent.next_answer_delay()
        if core.rng.random() < agent.answer_probability and delay < self.ring_timeout_s:
            core.timers.call_later(delay, lambda: self._answered(call))
        else:
            core.timers.call_later(
                self.ring_timeout_s, lambda: self._agent_missed(call, "NOANSWER", NO_CAUSE)
            )

    def _agent_hang_up(self, agent: SimAgent) -> HangUp:
        def hang_up(leg: Channel, cause: int) -> None:
            if leg.hangup_pending:
                return
            self._core.hangup(leg, cause)
            self._phones.detach(agent, leg)
            self._phones.refresh(agent)

        return hang_up

    def _agent_missed(self, call: Call, status: str, cause: int) -> None:
        """The agent's phone rang out (or was busy): DialEnd, its leg goes, the caller hears
        the apology and hangs up."""
        if call.caller.hangup_pending:
            return
        self._dial_end(call.caller, call.agent_leg, status)
        call.hang_up(call.agent_leg, cause)
        self._sorry(call.caller)

    def _sorry(self, caller: Channel) -> None:
        caller.update(priority=2, application="Playback", app_data="acd-callback-sorry")
        self._core.timers.call_later(SORRY_S, lambda: self._gone(caller))

    def _gone(self, caller: Channel) -> None:
        if not caller.hangup_pending:
            caller.update(priority=3, application="Hangup", app_data="")
            self._core.hangup(caller, NORMAL_CLEARING)

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
        if plan.answers_attempt(len(waiting.record.callback_attempts) - 1, timeout):
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
        """The dialled leg answered: DialEnd ANSWER, both legs bridged, the talk begins."""
        if call.dialler.hangup_pending:
            return
        core, record = self._core, call.waiting.record
        core.answer(call.dialled)
        self._dial_end(call.dialler, call.dialled, "ANSWER")
        call.bridge = Bridge(core.new_bridge_id())
        core.emit("BridgeCreate", perms.CALL, call.bridge.snapshot())
        for channel in (call.dialler, call.dialled):
            self._bridge(call.bridge, channel, enter=True)
        self._phones.refresh(call.agent)
        now = core.now()
        call.attempt.answered = call.attempt.connected = True
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
    """A callback whose first leg answered: its two legs and, once bridged, the bridge."""

    waiting: Waiting
    agent: SimAgent
    agent_leg: Channel
    caller: Channel
    attempt: CallbackAttempt
    hang_up: HangUp
    agent_first: bool = True
    bridge: Bridge | None = None

    @property
    def dialler(self) -> Channel:
        """The leg Originate rang, which runs Dial."""
        return self.agent_leg if self.agent_first else self.caller

    @property
    def dialled(self) -> Channel:
        return self.caller if self.agent_first else self.agent_leg
