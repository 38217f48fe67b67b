"""``Pbx``: the simulated phone system behind the AMI simulator.

It models the project's recipe (deploy/asterisk/extensions.conf): callers wait on music on
hold until the router redirects them to an agent's extension; agents log in and pause
through the roster queue. It is a phone system, not an ACD: it rings whatever the router
asks it to ring and records in the ledger what the router should not have done.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Literal

from load_tests.amisim.callbacks import AGENT_CONTEXT, CALLER_CONTEXT, CallbackPlan, Callbacks
from load_tests.amisim.calls import NORMAL_CLEARING, CallFlow, SimCall, TransferKind, TransferPlan
from load_tests.amisim.core import DEFAULT_CHANNELVARS, Core, EventListener, clean
from load_tests.amisim.ledger import AgentRecord, Ledger, RecordingStarted, Shutdown, UnexpectedRedirect
from load_tests.amisim.originate import OriginateDone, OriginateRequest, Originator
from load_tests.amisim.phones import AnswerDelay, Phones, SimAgent
from load_tests.amisim.roster import Roster
from load_tests.amisim.snapshot import Channel
from router.clock import Clock

Target = Literal["hold", "dial", "inbound", "overflow", "closed"]
NO_SUCH_CHANNEL = "No such channel"
# Asterisk's default monitor directory (asterisk.conf astspooldir + /monitor).
MONITOR_DIR = "/var/spool/asterisk/monitor"
# What a channel hung up by ast_softhangup_all() reports: nothing sets a cause on the way
# (main/channel.c ast_softhangup_all, main/pbx.c), so Hangup says 0 / Unknown.
SHUTDOWN_CAUSE = 0
# Real seconds before a restart began within which a caller's own Hangup may still be taken
# for the restart's: ingest asks Asterisk whether it is shutting down once the Hangup reached
# it, and on a loaded machine that question can come this late (load_tests/referee.py).
SHUTDOWN_PROBE_AMBIGUITY_S = 1.0


class PbxRefusedCallError(RuntimeError):
    """A call placed while the PBX is shutting down or down (a real one answers 503)."""


def _matches(context: str, exten: str) -> bool:
    """The recipe's patterns: ``_[+0-9a-zA-Z]!`` (inbound), ``_[0-9a-zA-Z]!`` (connect,
    overflow, closed); "h" has its own line (a NoOp) in each, so it never runs the pattern's."""
    first = r"[+0-9a-zA-Z]" if context == "acd-inbound" else r"[0-9a-zA-Z]"
    return exten != "h" and re.match(first, exten) is not None


def _dialplan_target(context: str, exten: str, priority: int) -> Target | None:
    """Where a Redirect lands in extensions.conf; None for anything the dialplan lacks."""
    if context == "acd-hold" and exten == "s" and priority in (1, 2):
        return "hold"
    if context == "acd-connect" and _matches(context, exten):
        if priority == 1:
            return "dial"
        return "hold" if priority == 2 else None
    if context == "acd-inbound" and _matches(context, exten) and priority == 1:
        return "inbound"
    if context == "acd-overflow" and _matches(context, exten) and priority == 1:
        return "overflow"
    if context == "acd-closed" and _matches(context, exten) and priority == 1:
        return "closed"
    return None


def extension_exists(context: str, exten: str, priority: int) -> bool:
    """``ast_exists_extension`` against extensions.conf (used by Originate's early check)."""
    if context in ("acd-inbound", "acd-connect", "acd-overflow", "acd-closed") and exten == "h":
        return priority in (1, 2)  # NoOp, Hangup
    if context == "acd-inbound":
        return _matches(context, exten) and 1 <= priority <= 5
    if context == "acd-hold":
        return exten == "s" and priority in (1, 2)
    if context in ("acd-connect", "acd-overflow", "acd-closed"):
        return _matches(context, exten) and priority in (1, 2)
    if context == AGENT_CONTEXT:  # [acd-callback]: _[+0-9]!, Dial then Hangup
        return exten != "h" and re.match(r"[+0-9]", exten) is not None and priority in (1, 2)
    if context == CALLER_CONTEXT:  # [acd-callback-connect]: _[0-9a-zA-Z]!, Dial, Playback, Hangup
        return exten != "h" and re.match(r"[0-9a-zA-Z]", exten) is not None and 1 <= priority <= 3
    if context == "acd-agent-features":
        return exten in ("*51", "*52", "*53", "*54") and priority in (1, 2)
    return False


class Pbx:
    """The telephony model: agents' phones, the roster queue, callers, timers and ledger."""

    def __init__(
        self,
        clock: Clock,
        *,
        ring_timeout_s: float = 15.0,
        roster_queue: str = "acd-agents",
        seed: int | None = None,
        channelvars: tuple[str, ...] = DEFAULT_CHANNELVARS,
        agent_context: str = "acd-agent-features",
        originate_talk_s: float = 30.0,
        other_queues: tuple[str, ...] = (),
        first_hold_delay_s: float = 0.0,
        hangup_linger_s: float = 0.0,
        monitor_dir: str = MONITOR_DIR,
    ) -> None:
        self.monitor_dir = monitor_dir
        self._core = Core(clock, seed=seed, channelvars=channelvars)
        self._phones = Phones(self._core)
        self.roster = Roster(self._core, self._phones, roster_queue)
        # Every app_queue queue on the PBX, the roster queue first; app_queue names are
        # case-insensitive.
        self.queues: dict[str, Roster] = {roster_queue.lower(): self.roster}
        for name in other_queues:
            self.queues[name.lower()] = Roster(self._core, self._phones, name)
        self._flow = CallFlow(
            self._core,
            self._phones,
            self.roster,
            ring_timeout_s=ring_timeout_s,
            agent_context=agent_context,
            first_hold_delay_s=first_hold_delay_s,
            hangup_linger_s=hangup_linger_s,
        )
        self.callbacks = Callbacks(
            self._core, self._phones, ring_timeout_s=ring_timeout_s, agent_context=agent_context
        )
        self._originator = Originator(
            self._core,
            self._phones,
            talk_s=originate_talk_s,
            agent_context=agent_context,
            callbacks=self.callbacks,
        )
        self._core.globals["ACD_RING_TIMEOUT"] = f"{ring_timeout_s:g}"
        self._caller_seq = 0
        self.accepting_calls = True

    # -- read-only views --------------------------------------------------------------

    @property
    def clock(self) -> Clock:
        return self._core.clock

    @property
    def ledger(self) -> Ledger:
        return self._core.ledger

    @property
    def agents(self) -> Mapping[str, SimAgent]:
        return MappingProxyType(self._phones.agents)

    @property
    def calls(self) -> Mapping[str, SimCall]:
        """Calls still in the system, by call id."""
        return MappingProxyType(self._flow.calls)

    @property
    def started_at(self) -> float:
        return self._core.started_at

    @property
    def errors(self) -> list[BaseException]:
        """Exceptions raised by simulator steps; a healthy run leaves this empty."""
        return self._core.timers.errors

    @property
    def pending_timers(self) -> int:
        return len(self._core.timers)

    def now(self) -> float:
        return self._core.now()

    def channels(self) -> list[Channel]:
        return list(self._core.channels.values())

    def find_channel(self, name_or_uniqueid: str) -> Channel | None:
        return self._core.find_channel(name_or_uniqueid)

    def extension_exists(self, context: str, exten: str, priority: int) -> bool:
        return extension_exists(context, exten, priority)

    def subscribe(self, listener: EventListener) -> Callable[[], None]:
        """Receive every event as it is produced; returns an unsubscribe function."""
        return self._core.subscribe(listener)

    def holding_events(self) -> contextlib.AbstractContextManager[None]:
        """Events raised inside the block are delivered when it ends."""
        return self._core.holding_events()

    # -- agents -----------------------------------------------------------------------

    def add_agent(
        self,
        agent_id: str,
        *,
        extension: str | None = None,
        interface: str | None = None,
        capacity: int = 1,
        answer_delay_s: AnswerDelay = 2.0,
        answer_probability: float = 1.0,
    ) -> SimAgent:
        ext = extension or agent_id
        agent = SimAgent(
            agent_id=agent_id,
            extension=ext,
            interface=interface or f"PJSIP/{ext}",
            capacity=capacity,
            answer_delay_s=answer_delay_s,
            answer_probability=answer_probability,
        )
        self._phones.add(agent)
        self._core.ledger.agents[agent_id] = AgentRecord(agent_id, ext)
        return agent

    def login(self, agent_id: str, *, paused: bool = False, reason: str = "") -> bool:
        """AddQueueMember from the agent's phone (*51): the member is named ${CALLERID(num)},
        the phone's extension; False if already logged in."""
        agent = self._phones.get(agent_id)
        if not self.roster.add(agent.interface, agent.extension, paused=paused, reason=clean(reason)):
            return False
        # The *51 feature call has just ended on the agent's phone.
        self._phones.publish(agent)
        self._sync_agent(agent.interface)
        return True

    def logout(self, agent_id: str) -> bool:
        agent = self._phones.get(agent_id)
        removed = self.roster.remove(agent.interface)
        self._sync_agent(agent.interface)
        return removed

    def pause(self, agent_id: str, reason: str = "") -> bool:
        return self._set_paused(agent_id, True, clean(reason))

    def unpause(self, agent_id: str) -> bool:
        return self._set_paused(agent_id, False, "")

    def _set_paused(self, agent_id: str, paused: bool, reason: str) -> bool:
        agent = self._phones.get(agent_id)
        changed = self.roster.set_paused(agent.interface, paused, reason)
        self._sync_agent(agent.interface)
        return changed

    def set_registered(self, agent_id: str, registered: bool) -> None:
        """Take an agent's phone off the network (Dial then gives CHANUNAVAIL) or back."""
        agent = self._phones.get(agent_id)
        agent.registered = registered
        self._phones.refresh(agent)

    def _sync_agent(self, interface: str) -> None:
        agent = self._phones.by_interface.get(interface)
        if agent is None:
            return
        record = self._core.ledger.agents[agent.agent_id]
        member = self.roster.members.get(interface)
        record.logged_in = member is not None
        record.paused = bool(member and member.paused)
        record.paused_reason = member.reason if member else ""

    # -- callers ----------------------------------------------------------------------

    def place_call(
        self,
        queue: str,
        *,
        priority: int | None = None,
        requirements: str | None = None,
        handle_time_s: float,
        patience_s: float | None = None,
        caller_id: str | None = None,
        caller_name: str | None = None,
        did: str = "5000",
        transfer: TransferPlan | None = None,
        preferred_agent: str | None = None,
        callback: CallbackPlan | None = None,
    ) -> SimCall:
        """A caller dials in through acd-inbound and waits on hold; with ``transfer``, the
        agent who answers transfers it after the handle time instead of hanging up.
        ``preferred_agent``: what a CRM lookup set in ACD_PREFERRED_AGENT before the Goto
        (None: not set). A returning caller is one placed again with the same ``caller_id``.

        ``caller_id`` / ``caller_name``: what the trunk presents (CallerIDNum / CallerIDName
        in every event of the caller's channel); '' for none, which Asterisk shows as
        ``<unknown>``. By default a number and a name that differ per caller."""
        if self._core.timers.closed:
            raise RuntimeError("the PBX is closed")
        if not self.accepting_calls:
            raise PbxRefusedCallError("the PBX is shutting down or restarting")
        self._caller_seq += 1
        call = self._flow.arrive(
            queue=clean(queue),
            priority=priority,
            requirements=None if requirements is None else clean(requirements),
            handle_time_s=handle_time_s,
            patience_s=patience_s,
            caller_id=clean(f"+1555{self._caller_seq:07d}" if caller_id is None else caller_id),
            caller_name=clean(f"Caller {self._caller_seq}" if caller_name is None else caller_name),
            did=clean(did),
            preferred_agent=None if preferred_agent is None else clean(preferred_agent),
        )
        call.transfer_plan = transfer
        if callback is not None:
            self._core.timers.call_later(callback.after_s, lambda: self._accept_callback(call, callback))
        return call

    def _accept_callback(self, call: SimCall, plan: CallbackPlan) -> None:
        """[acd-callback-offer]: the caller, still on hold, takes the offer and hangs up."""
        if call.phase != "holding" or call.channel.hangup_pending:
            return
        self._flow.leave_hold(call)
        self.callbacks.request(call.record, call.channel, plan)
        self._core.hangup(call.channel, NORMAL_CLEARING)
        self._flow.finish(call, "callback")

    def transfer(
        self, call_id: str, kind: TransferKind, to: tuple[str, str], *, stay_s: float = 30.0
    ) -> str | None:
        """The agent talking with the caller transfers it now (its phone's transfer key)."""
        call = self._flow.calls.get(call_id)
        if call is None or call.phase != "talking" or call.dial is None:
            return "Transfer invalid"
        to = (clean(to[0]), clean(to[1]))
        if kind == "blind":
            self._flow.blind_transfer(call.dial, to, stay_s=stay_s)
        else:
            self._flow.attended_transfer(call.dial, to, stay_s=stay_s)
        return None

    def transfer_channel(self, name: str, kind: TransferKind, context: str, exten: str) -> str | None:
        """AMI BlindTransfer / Atxfer on an agent's leg (the transferer)."""
        if self._core.find_channel(name) is None:
            return f"No such channel: {name}" if kind == "blind" else "No such channel"
        dial = self._flow.dials_by_leg.get(name)
        if dial is None or dial.bridge is None:
            return "Transfer invalid"  # not bridged, or the caller's own channel (not modelled)
        if kind == "blind":
            self._flow.blind_transfer(dial, (clean(context), clean(exten)), external=True)
        else:
            to = (clean(context), clean(exten))
            self._core.timers.call_later(0, lambda: self._flow.attended_transfer(dial, to))
        return None

    def hangup_call(self, call_id: str) -> bool:
        """The caller hangs up now; False if the call is already over."""
        call = self._flow.calls.get(call_id)
        if call is None:
            return False
        self._flow.caller_hangup(call, NORMAL_CLEARING, "caller")
        return True

    # -- AMI-facing operations (return Asterisk's error text, or None) ----------------

    def redirect(self, name: str, context: str, exten: str, priority: int) -> str | None:
        channel = self._core.find_channel(name)
        if channel is None:
            return f"Channel does not exist: {name}"
        if channel.hangup_pending:
            return "Redirect failed, channel not up."
        # ast_async_goto returns at once; the channel moves after the response is sent.
        self._core.timers.call_later(0, lambda: self._apply_redirect(channel, context, exten, priority))
        return None

    def _apply_redirect(self, channel: Channel, context: str, exten: str, priority: int) -> None:
        if channel.hangup_pending:
            return
        call = self._flow.by_channel.get(channel.name)
        target = _dialplan_target(context, exten, priority)
        if call is None or call.phase != "holding" or target is None:
            self._note_unexpected(channel, call, context, exten)
        if call is None:
            return  # an agent leg: not modelled, left where it is
        self._leave(call)
        self._go(call, target, exten)

    def _note_unexpected(self, channel: Channel, call: SimCall | None, context: str, exten: str) -> None:
        entry = UnexpectedRedirect(
            channel=channel.name,
            call_id=call.call_id if call else None,
            call_state=call.phase if call else "agent-leg",
            context=context,
            exten=exten,
            at=self._core.now(),
        )
        self._core.ledger.unexpected_redirects.append(entry)

    def _leave(self, call: SimCall) -> None:
        if call.phase == "holding":
            self._flow.leave_hold(call)
        elif call.phase == "ringing" and call.dial is not None:
            self._flow.cancel_dial(call.dial)
        elif call.phase == "talking":
            self._flow.drop_from_bridge(call)

    def _go(self, call: SimCall, target: Target | None, exten: str) -> None:
        if target == "hold":
            self._flow.hold(call)
        elif target == "dial":
            self._flow.dial(call, exten)
        elif target == "inbound":
            self._flow.reenter(call, exten)
        elif target == "overflow":
            self._flow.overflow(call, exten)
        elif target == "closed":
            self._flow.closed(call, exten)
        else:
            # No such extension in the dialplan: the PBX thread ends and hangs up.
            self._core.hangup(call.channel, NORMAL_CLEARING)
            self._flow.finish(call, "dialplan")

    def hangup_channel(self, name: str, cause: int) -> str | None:
        """AMI Hangup; cause 0 means "not given" and the channel clears normally (16)."""
        channel = self._core.find_channel(name)
        if channel is None:
            return NO_SUCH_CHANNEL
        self._core.timers.call_later(0, lambda: self._apply_hangup(channel, cause or NORMAL_CLEARING))
        return None

    def _apply_hangup(self, channel: Channel, cause: int) -> None:
        if channel.hangup_pending:
            return
        call = self._flow.by_channel.get(channel.name)
        dial = self._flow.dials_by_leg.get(channel.name)
        if call is not None:
            self._flow.caller_hangup(call, cause, "ami")
        elif dial is not None:
            self._flow.agent_leg_hangup(dial, cause)
        else:
            self._originator.hangup(channel, cause)

    def set_var(self, name: str, variable: str, value: str) -> str | None:
        if not name:
            self._core.globals[variable] = value
            return None
        channel = self._core.find_channel(name)
        if channel is None:
            return NO_SUCH_CHANNEL
        self._core.set_var(channel, variable, clean(value))
        return None

    def get_var(self, name: str, variable: str) -> tuple[str | None, str]:
        if not name:
            return None, self._core.globals.get(variable, "")
        channel = self._core.find_channel(name)
        if channel is None:
            return NO_SUCH_CHANNEL, ""
        value = channel.variables.get(variable, self._core.globals.get(variable, ""))
        return None, value

    def mix_monitor(self, name: str, file: str, options: str) -> tuple[str | None, str]:
        """MixMonitor on a channel (apps/app_mixmonitor.c manager_mixmonitor): the error text
        Asterisk answers, or None and the id an ``i(<variable>)`` option asked for ('' none).

        Asterisk only opens the file once audio flows, so a file it cannot write is never an
        AMI error (only a line in its log); neither is it here."""
        channel = self._core.find_channel(name)
        if channel is None:
            return NO_SUCH_CHANNEL, ""
        if not file and not re.search(r"[rt]\(", options):
            # mixmonitor_exec() refuses: nothing to write to.
            return "Could not start monitoring channel", ""
        path = file if file.startswith("/") else f"{self.monitor_dir}/{file}"
        call = self.ledger.calls.get(channel.linkedid)
        self.ledger.recordings.append(
            RecordingStarted(
                channel.name, channel.linkedid, call.agent_id if call else None, path, options, self.now()
            )
        )
        mixmonitor_id = ""
        wanted = re.search(r"i\(([^)]*)\)", options)
        if wanted and wanted.group(1):
            mixmonitor_id = f"{channel.uniqueid}-{len(self.ledger.recordings)}"
            self._core.set_var(channel, wanted.group(1), mixmonitor_id)
        self._core.emit_channel("MixMonitorStart", channel)
        return None, mixmonitor_id

    def originate(self, request: OriginateRequest, done: OriginateDone) -> None:
        self._core.timers.call_later(0, lambda: self._originator.start(request, done))

    def queue_add(
        self, queue: str, interface: str, member_name: str, paused: bool, reason: str
    ) -> str | None:
        roster = self.queues.get(queue.lower())
        if roster is None:
            return "Unable to add interface to queue: No such queue"
        if not roster.add(interface, clean(member_name), paused=paused, reason=clean(reason)):
            return "Unable to add interface: Already there"
        self._sync_agent(interface)
        return None

    def queue_remove(self, queue: str, interface: str) -> str | None:
        roster = self.queues.get(queue.lower())
        if roster is None:
            return "Unable to remove interface from queue: No such queue"
        if not roster.remove(interface):
            return "Unable to remove interface: Not there"
        self._sync_agent(interface)
        return None

    def queue_pause(self, interface: str, paused: bool, queue: str, reason: str) -> str | None:
        """QueuePause; without ``queue`` app_queue pauses the interface in every queue it is in."""
        rosters = [self.queues[queue.lower()]] if queue.lower() in self.queues else []
        if not queue:
            rosters = list(self.queues.values())
        changed = [r for r in rosters if r.set_paused(interface, paused, clean(reason))]
        if not changed:
            return "Interface not found"
        self._sync_agent(interface)
        return None

    def rosters(self, queue: str = "") -> list[Roster]:
        """The queues QueueStatus/QueueSummary list: one by name, or all without a name."""
        if not queue:
            return list(self.queues.values())
        roster = self.queues.get(queue.lower())
        return [roster] if roster is not None else []

    # -- restart ------------------------------------------------------------------------

    def begin_shutdown(self) -> None:
        """From now on no call gets in; the ledger notes when (see ``Shutdown``)."""
        self.accepting_calls = False
        now, scale = self.clock.now(), self.clock.time_scale
        self.ledger.shutdowns.append(Shutdown(now, now - SHUTDOWN_PROBE_AMBIGUITY_S * scale))

    def hang_up_everything(self, cause: int = SHUTDOWN_CAUSE) -> int:
        """``ast_softhangup_all()``: every channel hangs up; callers' calls end "by restart"."""
        cut = 0
        for call in list(self._flow.calls.values()):
            self._flow.caller_hangup(call, cause, "restart")
            cut += 1
        for channel in self._core.channels.copy().values():
            self._originator.hangup(channel, cause)
        for channel in self._core.channels.copy().values():
            self._core.hangup(channel, cause)
        return cut

    # -- lifecycle ----------------------------------------------------------------------

    async def aclose(self) -> None:
        """Cancel every pending timer; nothing moves afterwards."""
        self._core.timers.cancel_all()
