"""Inbound calls through the project's dialplan (deploy/asterisk/extensions.conf).

acd-inbound answers, sets ACD_QUEUE/ACD_PRIORITY, raises UserEvent AcdCallQueued and jumps
to acd-hold (MusicOnHold). A Redirect to acd-connect,<ext>,1 runs
``Dial(PJSIP/<ext>,ACD_RING_TIMEOUT)``; when Dial returns without an answer, priority 2
sends the caller back to acd-hold. Event order per step follows app_dial.c, bridge_basic
and the channel stasis messages of Asterisk 18-22.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from load_tests.amisim import perms
from load_tests.amisim.core import Core
from load_tests.amisim.ledger import (
    CallRecord,
    DoubleAssignment,
    OfferRecord,
    Outcome,
    TransferRecord,
    UnavailableOffer,
)
from load_tests.amisim.phones import Phones, SimAgent
from load_tests.amisim.roster import Roster
from load_tests.amisim.snapshot import RING, Bridge, Channel
from load_tests.amisim.timers import Timer
from load_tests.amisim.wire import EOL

Phase = Literal["holding", "ringing", "talking", "overflowed", "closed", "transferred", "ended"]
OVERFLOW_STAY_S = 30.0  # how long an overflowed caller stays (voicemail) before hanging up
CLOSED_STAY_S = 10.0  # how long a caller listens to the closed announcement before hanging up
TransferKind = Literal["blind", "attended"]
HangupBy = Literal["caller", "agent", "ami", "dialplan", "restart", "callback"]
NORMAL_CLEARING = 16
USER_BUSY = 17
NO_CAUSE = 0  # app_dial hangs unanswered legs up without setting a cause


@dataclass(eq=False)
class Dial:
    """One ``Dial(PJSIP/<ext>)`` of a caller: the agent leg and, once answered, the bridge."""

    call: SimCall
    agent: SimAgent
    leg: Channel
    offer: OfferRecord
    timer: Timer | None = None
    bridge: Bridge | None = None


@dataclass(frozen=True)
class TransferPlan:
    """The answering agent transfers the caller after the handle time instead of hanging up:
    to ``to`` (context, exten); into ``acd-inbound`` it is queued again. ``stay_s``: how long
    a caller transferred out talks on before hanging up."""

    kind: TransferKind
    to: tuple[str, str]
    stay_s: float = 30.0


@dataclass(eq=False)
class Outside:
    """Where a transferred-out caller went: the target's channel and bridge (attended)."""

    target: Channel | None = None
    bridge: Bridge | None = None


@dataclass(eq=False)
class SimCall:
    """A caller in the system; ``call_id`` is the caller channel's Uniqueid."""

    record: CallRecord
    channel: Channel
    phase: Phase = "holding"
    patience: Timer | None = None
    dial: Dial | None = None
    transfer_plan: TransferPlan | None = None
    outside: Outside | None = None
    music_on: bool = False  # MusicOnHoldStart published and not stopped yet
    music_timer: Timer | None = None

    @property
    def call_id(self) -> str:
        return self.record.call_id


class CallFlow:
    """Drives callers through arrival, hold, Dial, bridge and hangup."""

    def __init__(
        self,
        core: Core,
        phones: Phones,
        roster: Roster,
        *,
        ring_timeout_s: float,
        agent_context: str,
        first_hold_delay_s: float = 0.0,
        hangup_linger_s: float = 0.0,
    ) -> None:
        self._core = core
        self._phones = phones
        self._roster = roster
        self.ring_timeout_s = ring_timeout_s
        self.agent_context = agent_context
        # On a loaded PBX, MusicOnHoldStart trails the UserEvent that announced the call.
        self.first_hold_delay_s = first_hold_delay_s
        # A caller's hangup: HangupRequest, then the channel lingers (Redirect refused with
        # "channel not up") for this long before its Hangup.
        self.hangup_linger_s = hangup_linger_s
        self.calls: dict[str, SimCall] = {}  # by caller Uniqueid
        self.by_channel: dict[str, SimCall] = {}
        self.dials_by_leg: dict[str, Dial] = {}

    # -- arrival and hold -----------------------------------------------------------

    def arrive(
        self,
        *,
        queue: str,
        priority: int | None,
        requirements: str | None,
        handle_time_s: float,
        patience_s: float | None,
        caller_id: str,
        caller_name: str,
        did: str,
        preferred_agent: str | None = None,
    ) -> SimCall:
        channel = self._core.new_channel(
            "PJSIP/trunk",
            state=RING,
            context="acd-inbound",
            exten=did,
            caller_num=caller_id,
            caller_name=caller_name,
            application="AppDial2",
            app_data="(Incoming Line)",
        )
        record = CallRecord(
            call_id=channel.uniqueid,
            queue=queue,
            priority=priority,
            requirements=requirements,
            entered_at=channel.created_at,
            patience_s=patience_s,
            handle_time_s=handle_time_s,
            channel=channel.name,
            caller_number=caller_id,
            caller_name=caller_name,
            preferred_agent=preferred_agent,
        )
        self._core.ledger.calls[record.call_id] = record
        call = SimCall(record, channel)
        self.calls[record.call_id] = call
        self.by_channel[channel.name] = call
        self._run_inbound(call)
        if patience_s is not None:
            call.patience = self._core.timers.call_later(patience_s, lambda: self.abandon(call))
        return call

    def _run_inbound(self, call: SimCall) -> None:
        """acd-inbound from priority 1: Answer, the two Set()s, UserEvent, Goto(acd-hold)."""
        core, channel, record = self._core, call.channel, call.record
        # Overrides are set by the DID's own context before its Goto(acd-inbound,...);
        # without them the router applies the queue's defaults.
        if record.requirements is not None:
            core.set_var(channel, "ACD_REQUIREMENTS", record.requirements)
        if record.priority is not None:
            core.set_var(channel, "ACD_PRIORITY", str(record.priority))
        if record.preferred_agent is not None:  # a CRM lookup named the caller's agent
            core.set_var(channel, "ACD_PREFERRED_AGENT", record.preferred_agent)
        channel.update(priority=2, application="Answer", app_data="")
        core.answer(channel)
        channel.update(priority=3, application="Set")
        core.set_var(channel, "ACD_QUEUE", record.queue)
        self._announce(call)
        self.hold(call, first=True)

    def _announce(self, call: SimCall) -> None:
        channel = call.channel
        get = channel.variables.get
        # Priority 4 of acd-inbound. The snapshot's "Priority: 4" and the UserEvent's own
        # "Priority:" header share a name, so clients see the key twice, as on Asterisk.
        channel.update(priority=4, application="UserEvent")
        body = (
            f"UserEvent: AcdCallQueued{EOL}Queue: {get('ACD_QUEUE', '')}{EOL}"
            f"Priority: {get('ACD_PRIORITY', '')}{EOL}Requirements: {get('ACD_REQUIREMENTS', '')}{EOL}"
            f"PreferredAgent: {get('ACD_PREFERRED_AGENT', '')}{EOL}"
        )
        self._core.emit("UserEvent", perms.USER, channel.snapshot() + body)

    def reenter(self, call: SimCall, exten: str) -> None:
        """Redirect to acd-inbound: the IF() defaults keep existing values, then announce."""
        core, channel = self._core, call.channel
        channel.update(context="acd-inbound", exten=exten, priority=3, application="Set")
        queue = channel.variables.get("ACD_QUEUE") or core.globals["ACD_DEFAULT_QUEUE"]
        core.set_var(channel, "ACD_QUEUE", queue)
        self._announce(call)
        self.hold(call, first=True)

    def hold(self, call: SimCall, *, first: bool = False) -> None:
        """acd-hold: MusicOnHold; right after the UserEvent, the start may come late."""
        call.channel.update(
            context="acd-hold",
            exten="s",
            priority=1,
            application="MusicOnHold",
            app_data="default",
        )
        call.phase = "holding"
        call.record.state = "holding"
        if first and self.first_hold_delay_s > 0:
            call.music_timer = self._core.timers.call_later(
                self.first_hold_delay_s, lambda: self._start_music(call)
            )
        else:
            self._start_music(call)

    def _start_music(self, call: SimCall) -> None:
        call.music_timer = None
        if call.phase == "holding" and not call.music_on and not call.channel.hangup_pending:
            call.music_on = True
            self._core.emit_channel("MusicOnHoldStart", call.channel, f"Class: default{EOL}")

    def leave_hold(self, call: SimCall) -> None:
        """The caller leaves MusicOnHold; a hold whose music never started sends nothing."""
        if call.music_timer is not None:
            call.music_timer.cancel()
            call.music_timer = None
        if call.music_on:
            call.music_on = False
            self._core.emit_channel("MusicOnHoldStop", call.channel)

    def overflow(self, call: SimCall, exten: str) -> None:
        """acd-overflow: the caller leaves the ACD (voicemail here) and hangs up later."""
        if call.patience is not None:
            call.patience.cancel()
        call.channel.update(
            context="acd-overflow",
            exten=exten,
            priority=1,
            application="VoiceMail",
            app_data=f"{exten}@default,u",
        )
        call.phase = "overflowed"
        call.record.state, call.record.overflowed_at = "overflowed", self._core.now()
        self._core.timers.call_later(OVERFLOW_STAY_S, lambda: self._leave_voicemail(call))

    def closed(self, call: SimCall, exten: str) -> None:
        """acd-closed: the queue is closed; the caller hears the announcement and hangs up."""
        if call.patience is not None:
            call.patience.cancel()
        call.channel.update(
            context="acd-closed", exten=exten, priority=1, application="Playback", app_data=f"acd-closed-{exten}"
        )
        call.phase = "closed"
        call.record.state, call.record.closed_at = "closed", self._core.now()
        self._core.timers.call_later(CLOSED_STAY_S, lambda: self._leave_voicemail(call))

    def _leave_voicemail(self, call: SimCall) -> None:
        if call.phase in ("overflowed", "closed"):
            self._core.hangup(call.channel, NORMAL_CLEARING)
            self.finish(call, "caller")

    # -- Dial -----------------------------------------------------------------------

    def dial(self, call: SimCall, exten: str) -> None:
        """Priority 1 of acd-connect: Dial the agent's phone."""
        core = self._core
        timeout = self.ring_timeout_s
        call.channel.update(
            context="acd-connect",
            exten=exten,
            priority=1,
            application="Dial",
            app_data=f"PJSIP/{exten},{timeout:g}",
        )
        agent = self._phones.by_extension.get(exten)
        offer = OfferRecord(agent.agent_id if agent else None, exten, core.now())
        call.record.offers.append(offer)
        if agent is None or not agent.registered:
            self._unavailable(call, offer)
            return
        self._note_unavailable_agent(call, agent)
        busy = agent.at_capacity
        if busy:
            core.ledger.double_assignments.append(
                DoubleAssignment(call.call_id, agent.agent_id, core.now(), agent.device_state)
            )
        dial = self._start_leg(call, agent, offer)
        if busy:
            self._busy(dial)
            return
        self._phones.ring(agent, dial.leg)
        call.phase = "ringing"
        call.record.state = "ringing"
        self._schedule_answer(dial)

    def _note_unavailable_agent(self, call: SimCall, agent: SimAgent) -> None:
        member = self._roster.members.get(agent.interface)
        reason: Literal["logged_out", "paused"] | None = None
        if member is None:
            reason = "logged_out"
        elif member.paused:
            reason = "paused"
        if reason is not None:
            entry = UnavailableOffer(call.call_id, agent.agent_id, reason, self._core.now())
            self._core.ledger.offers_to_unavailable_agents.append(entry)

    def _start_leg(self, call: SimCall, agent: SimAgent, offer: OfferRecord) -> Dial:
        caller = call.channel
        leg = self._core.new_channel(
            f"PJSIP/{agent.extension}",
            linkedid=caller.linkedid,
            context=self.agent_context,
            exten=caller.exten,
            caller_num=agent.extension,
            caller_name=agent.agent_id,
            connected_num=caller.caller_num,
            connected_name=caller.caller_name,
            application="AppDial",
            app_data="(Outgoing Line)",
        )
        dial = Dial(call, agent, leg, offer)
        call.dial = dial
        self.dials_by_leg[leg.name] = dial
        body = caller.snapshot() + leg.snapshot("Dest") + f"DialString: {agent.extension}{EOL}"
        self._core.emit("DialBegin", perms.CALL, body)
        return dial

    def _schedule_answer(self, dial: Dial) -> None:
        agent = dial.agent
        delay = agent.next_answer_delay()
        answers = self._core.rng.random() < agent.answer_probability
        timers = self._core.timers
        if answers and delay < self.ring_timeout_s:
            dial.timer = timers.call_later(delay, lambda: self._answer(dial))
        else:
            dial.timer = timers.call_later(self.ring_timeout_s, lambda: self._no_answer(dial))

    def _dial_end(self, dial: Dial, status: str) -> None:
        body = dial.call.channel.snapshot() + dial.leg.snapshot("Dest") + f"DialStatus: {status}{EOL}"
        self._core.emit("DialEnd", perms.CALL, body)

    def _end_leg(self, dial: Dial, cause: int) -> None:
        if dial.timer is not None:
            dial.timer.cancel()
        self.dials_by_leg.pop(dial.leg.name, None)
        self._core.hangup(dial.leg, cause)
        self._phones.detach(dial.agent, dial.leg)

    def _drop_leg(self, dial: Dial, cause: int) -> None:
        self._end_leg(dial, cause)
        self._phones.refresh(dial.agent)

    def _dial_returned(self, call: SimCall, offer: OfferRecord, status: Outcome) -> None:
        """Dial ended unanswered: DIALSTATUS is set, then priority 2 goes back to acd-hold."""
        offer.outcome = status
        offer.ended_at = self._core.now()
        call.dial = None
        self._core.set_var(call.channel, "DIALSTATUS", status)
        self.hold(call)

    def _unavailable(self, call: SimCall, offer: OfferRecord) -> None:
        # No channel can be created (unknown or unregistered endpoint): app_dial publishes
        # neither DialBegin nor DialEnd, it only sets DIALSTATUS=CHANUNAVAIL.
        self._dial_returned(call, offer, "CHANUNAVAIL")

    def _busy(self, dial: Dial) -> None:
        self._dial_end(dial, "BUSY")
        self._drop_leg(dial, USER_BUSY)
        self._dial_returned(dial.call, dial.offer, "BUSY")

    def _no_answer(self, dial: Dial) -> None:
        self._dial_end(dial, "NOANSWER")
        self._drop_leg(dial, NO_CAUSE)
        self._dial_returned(dial.call, dial.offer, "NOANSWER")

    def reject(self, dial: Dial, cause: int) -> None:
        """The agent leg was hung up while ringing (AMI Hangup on the leg)."""
        status: Outcome = "BUSY" if cause == USER_BUSY else "NOANSWER"
        self._dial_end(dial, status)
        self._drop_leg(dial, cause)
        self._dial_returned(dial.call, dial.offer, status)

    def cancel_dial(self, dial: Dial) -> None:
        """The caller left Dial (hangup or Redirect) while the agent's phone rang."""
        self._dial_end(dial, "CANCEL")
        self._drop_leg(dial, NO_CAUSE)
        dial.offer.outcome = "CANCEL"
        dial.offer.ended_at = self._core.now()
        dial.call.dial = None

    # -- answer, talk, hangup -------------------------------------------------------

    def _answer(self, dial: Dial) -> None:
        core, call, agent = self._core, dial.call, dial.agent
        core.answer(dial.leg)
        call.channel.update(connected_num=agent.extension, connected_name=agent.agent_id)
        self._dial_end(dial, "ANSWER")
        dial.bridge = Bridge(core.new_bridge_id())
        core.emit("BridgeCreate", perms.CALL, dial.bridge.snapshot())
        for channel in (call.channel, dial.leg):
            self._bridge_enter(dial.bridge, channel)
        self._phones.refresh(agent)
        if call.patience is not None:
            call.patience.cancel()
        now = core.now()
        call.phase = "talking"
        record = call.record
        record.state, record.answered_at, record.agent_id = "talking", now, agent.agent_id
        dial.offer.outcome, dial.offer.ended_at = "ANSWER", now
        dial.timer = core.timers.call_later(record.handle_time_s, lambda: self._handled(dial))

    def _handled(self, dial: Dial) -> None:
        """The handle time is over: the agent hangs up, or transfers as the call's plan says."""
        plan, dial.call.transfer_plan = dial.call.transfer_plan, None
        if plan is None:
            self._agent_hangup(dial)
        elif plan.kind == "blind":
            self.blind_transfer(dial, plan.to, stay_s=plan.stay_s)
        else:
            self.attended_transfer(dial, plan.to, stay_s=plan.stay_s)

    def _bridge_enter(self, bridge: Bridge, channel: Channel) -> None:
        bridge.members.append(channel)
        channel.update(bridge_id=bridge.uniqueid)
        self._core.emit("BridgeEnter", perms.CALL, bridge.snapshot() + channel.snapshot())

    def _bridge_leave(self, bridge: Bridge, channel: Channel) -> None:
        bridge.members.remove(channel)
        channel.update(bridge_id="")
        self._core.emit("BridgeLeave", perms.CALL, bridge.snapshot() + channel.snapshot())

    def _teardown(self, dial: Dial, first: Channel, second: Channel) -> None:
        bridge = dial.bridge
        if bridge is None:
            return
        self._bridge_leave(bridge, first)
        self._bridge_leave(bridge, second)
        self._core.emit("BridgeDestroy", perms.CALL, bridge.snapshot())
        dial.bridge = None

    def _agent_hangup(self, dial: Dial, cause: int = NORMAL_CLEARING) -> None:
        """The agent hangs up after the talk time: the bridge dissolves, both legs end."""
        call = dial.call
        self._teardown(dial, dial.leg, call.channel)
        self._end_leg(dial, cause)
        self._core.hangup(call.channel, NORMAL_CLEARING)
        self._phones.refresh(dial.agent)
        self.finish(call, "agent")

    def agent_leg_hangup(self, dial: Dial, cause: int) -> None:
        if dial.call.phase == "talking":
            self._agent_hangup(dial, cause)
        else:
            self.reject(dial, cause)

    def drop_from_bridge(self, call: SimCall) -> None:
        """The caller leaves a bridge (Redirect): the agent, alone, is hung up."""
        dial = call.dial
        if dial is None:
            return
        self._teardown(dial, call.channel, dial.leg)
        self._drop_leg(dial, NORMAL_CLEARING)
        call.dial = None

    def abandon(self, call: SimCall) -> None:
        """Patience ran out while the caller was still waiting (holding or ringing)."""
        if call.phase in ("holding", "ringing"):
            self.caller_hangup(call, NORMAL_CLEARING, "caller")

    def caller_hangup(self, call: SimCall, cause: int, by: HangupBy) -> None:
        if call.phase == "ended" or call.channel.hangup_pending:
            return
        if call.phase == "transferred":
            self._outside_hangup(call, cause, by)
            return
        if call.patience is not None:
            call.patience.cancel()
        if by == "caller" and call.phase == "holding" and self.hangup_linger_s > 0:
            self._request_hangup(call, cause)
            return
        dial = call.dial
        if call.phase == "holding":
            self.leave_hold(call)
        elif call.phase == "ringing" and dial is not None:
            self.cancel_dial(dial)
        elif dial is not None:
            self._teardown(dial, call.channel, dial.leg)
            self._core.hangup(call.channel, cause)
            self._end_leg(dial, NORMAL_CLEARING)
            self._phones.refresh(dial.agent)
            self.finish(call, by)
            return
        self._core.hangup(call.channel, cause)
        self.finish(call, by)

    def _request_hangup(self, call: SimCall, cause: int) -> None:
        """The caller's side hung up: the channel is soft-hung-up at once (a Redirect now gets
        "channel not up") and goes away once its PBX thread notices."""
        channel = call.channel
        self._core.emit_channel("HangupRequest", channel, f"Cause: {cause}{EOL}")
        channel.update(hangup_pending=True)

        def gone() -> None:
            self.leave_hold(call)
            self._core.hangup(channel, cause)
            self.finish(call, "caller")

        self._core.timers.call_later(self.hangup_linger_s, gone)

    def finish(self, call: SimCall, by: HangupBy) -> None:
        if call.patience is not None:
            call.patience.cancel()
        now = self._core.now()
        record = call.record
        record.ended_at, record.hangup_by = now, by
        if record.state in ("overflowed", "closed", "transferred"):
            pass  # left the ACD before; the hangup only ends the channel
        elif by == "callback":
            record.state = "callback_requested"  # load_tests/amisim/callbacks.py calls it back
        elif record.answered_at is None and by == "restart":
            record.state = "ended_by_restart"  # the PBX cut the caller off: not an abandon
        elif record.answered_at is None:
            record.state, record.abandoned_at = "abandoned", now
        else:
            record.state = "completed"
        call.phase = "ended"
        call.dial = None
        self.calls.pop(call.call_id, None)
        self.by_channel.pop(call.channel.name, None)

    # -- transfers (main/bridge.c, main/stasis_bridges.c; traces of Asterisk 22.10.1) -------

    def blind_transfer(
        self, dial: Dial, to: tuple[str, str], *, external: bool = False, stay_s: float = 30.0
    ) -> None:
        """The agent's leg blind-transfers the caller: Unhold, BlindTransfer, both leave the
        bridge, the agent's leg hangs up, and the caller runs ``to`` from priority 1."""
        core, call, bridge = self._core, dial.call, dial.bridge
        assert bridge is not None, "only a bridged (answered) call can be transferred"
        context, exten = to
        core.emit_channel("Unhold", dial.leg)
        body = (
            f"Result: Success{EOL}{dial.leg.snapshot('Transferer')}{call.channel.snapshot('Transferee')}"
            f"{bridge.snapshot()}IsExternal: {'Yes' if external else 'No'}{EOL}"
            f"Context: {context}{EOL}Extension: {exten}{EOL}"
        )
        core.emit("BlindTransfer", perms.CALL, body)
        # The caller's async goto happens before it is kicked out of the bridge.
        call.channel.update(context=context, exten=exten, priority=1)
        self._bridge_leave(bridge, dial.leg)
        self._bridge_leave(bridge, call.channel)
        self._end_leg(dial, NORMAL_CLEARING)
        core.emit("BridgeDestroy", perms.CALL, bridge.snapshot())
        dial.bridge, call.dial = None, None
        self._phones.refresh(dial.agent)
        self._note_transfer(call, dial, "blind", to)
        self._continue_after_transfer(call, to, stay_s)

    def attended_transfer(self, dial: Dial, to: tuple[str, str], *, stay_s: float = 30.0) -> None:
        """The agent consults ``to`` on a second leg, then completes: AttendedTransfer
        (DestType Bridge), the agent's legs leave and hang up, the target joins the caller."""
        core, call, bridge = self._core, dial.call, dial.bridge
        assert bridge is not None, "only a bridged (answered) call can be transferred"
        second, target, consult = self._consult(dial, to)
        body = (
            f"Result: Success{EOL}{dial.leg.snapshot('OrigTransferer')}{_bridge_prefixed(bridge, 'Orig')}"
            f"{second.snapshot('SecondTransferer')}{_bridge_prefixed(consult, 'Second')}"
            f"{call.channel.snapshot('Transferee')}{target.snapshot('TransferTarget')}"
            f"IsExternal: No{EOL}DestType: Bridge{EOL}DestBridgeUniqueid: {bridge.uniqueid}{EOL}"
        )
        core.emit("AttendedTransfer", perms.CALL, body)
        self._bridge_leave(bridge, dial.leg)
        self._bridge_leave(consult, second)
        self._bridge_leave(consult, target)
        core.emit("BridgeDestroy", perms.CALL, consult.snapshot())
        self._bridge_enter(bridge, target)
        core.emit_channel("MusicOnHoldStop", call.channel)
        self._end_leg(dial, NORMAL_CLEARING)
        core.hangup(second, NORMAL_CLEARING)
        dial.bridge, call.dial = None, None
        self._phones.refresh(dial.agent)
        self._note_transfer(call, dial, "attended", to)
        call.outside = Outside(target, bridge)
        self._continue_after_transfer(call, to, stay_s, outside=True)

    def _consult(self, dial: Dial, to: tuple[str, str]) -> tuple[Channel, Channel, Bridge]:
        """Atxfer: the caller is held, the agent's second leg calls the target, they talk."""
        core, caller = self._core, dial.call.channel
        context, exten = to
        core.emit_channel("Hold", dial.leg)
        core.emit_channel("MusicOnHoldStart", caller, f"Class: default{EOL}")
        second = core.new_channel(
            dial.leg.name.rsplit("-", 1)[0],
            linkedid=caller.linkedid,
            context=context,
            exten=exten,
            caller_num=dial.leg.caller_num,
            caller_name=dial.leg.caller_name,
        )
        target = core.new_channel(
            f"Local/{exten}@{context}", linkedid=caller.linkedid, context=context, exten=exten
        )
        for channel in (second, target):
            core.answer(channel)
        consult = Bridge(core.new_bridge_id())
        core.emit("BridgeCreate", perms.CALL, consult.snapshot())
        self._bridge_enter(consult, second)
        self._bridge_enter(consult, target)
        return second, target, consult

    def _note_transfer(self, call: SimCall, dial: Dial, kind: TransferKind, to: tuple[str, str]) -> None:
        entry = TransferRecord(kind, dial.agent.agent_id, to[0], to[1], self._core.now())
        call.record.transfers.append(entry)

    def _continue_after_transfer(
        self, call: SimCall, to: tuple[str, str], stay_s: float, *, outside: bool = False
    ) -> None:
        """Into [acd-inbound] the caller is announced and held again; anywhere else it has
        left the ACD, talks on with the target and hangs up after ``stay_s``."""
        context, exten = to
        if context == "acd-inbound" and not outside:
            call.record.answered_at, call.record.agent_id = None, None  # a new wait
            self.reenter(call, exten)
            return
        call.phase = "transferred"
        call.record.state = "transferred"
        if not outside:
            call.channel.update(application="Dial", app_data=f"Local/{exten}@{context}")
        self._core.timers.call_later(stay_s, lambda: self.caller_hangup(call, NORMAL_CLEARING, "caller"))

    def _outside_hangup(self, call: SimCall, cause: int, by: HangupBy) -> None:
        outside = call.outside
        if outside is not None and outside.bridge is not None and outside.target is not None:
            self._bridge_leave(outside.bridge, call.channel)
            self._bridge_leave(outside.bridge, outside.target)
            self._core.emit("BridgeDestroy", perms.CALL, outside.bridge.snapshot())
        self._core.hangup(call.channel, cause)
        if outside is not None and outside.target is not None:
            self._core.hangup(outside.target, NORMAL_CLEARING)
        call.outside = None
        self.finish(call, by)


def _bridge_prefixed(bridge: Bridge, prefix: str) -> str:
    """A bridge block with a prefix (ast_manager_build_bridge_state_string_prefix)."""
    return "".join(f"{prefix}{line}{EOL}" for line in bridge.snapshot().split(EOL) if line)
