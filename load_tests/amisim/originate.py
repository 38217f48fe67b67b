"""Originate to an agent's phone, reported by OriginateResponse as in main/manager.c.

Only ``PJSIP/<agent extension>`` and, for callbacks, ``PJSIP/<number>@trunk`` (a caller
waiting to be called back, load_tests/amisim/callbacks.py) can be reached. Reasons are the
last control frame, as ``__ast_request_and_dial`` reports them: 0 no channel, 3 ring
timeout, 4 answered, 5 busy. After the answer the channel sits in the requested dialplan
location for ``originate_talk_s`` simulated seconds, then hangs up; that dialplan is not
executed, except the recipe's callback contexts (load_tests/amisim/callbacks.py), which
dial the other party.
``ChannelId`` becomes the originated channel's Uniqueid, as on Asterisk.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from load_tests.amisim import perms
from load_tests.amisim.callbacks import AGENT_CONTEXT, TRUNK, Callbacks
from load_tests.amisim.core import Core
from load_tests.amisim.ledger import DoubleAssignment
from load_tests.amisim.phones import Phones, SimAgent
from load_tests.amisim.snapshot import (
    REASON_ANSWERED,
    REASON_BUSY,
    REASON_FAILED,
    REASON_RING_TIMEOUT,
    Channel,
)
from load_tests.amisim.wire import EOL, render_lines

OriginateDone = Callable[[bool], None]


@dataclass(frozen=True)
class OriginateRequest:
    channel: str
    context: str
    exten: str
    priority: int
    application: str
    data: str
    timeout_s: float
    caller_num: str
    caller_name: str
    action_id: str
    channel_id: str


class Originator:
    def __init__(
        self, core: Core, phones: Phones, *, talk_s: float, agent_context: str, callbacks: Callbacks
    ) -> None:
        self._core = core
        self._callbacks = callbacks
        self._phones = phones
        self._talk_s = talk_s
        self._agent_context = agent_context
        self.legs: dict[str, SimAgent] = {}  # originated channel name -> agent

    def start(self, request: OriginateRequest, done: OriginateDone) -> None:
        tech, _, resource = request.channel.partition("/")
        number, _, endpoint = resource.partition("@")
        if tech.upper() == "PJSIP" and endpoint == TRUNK:  # a callback, caller first
            self._callbacks.call_caller(request, number, lambda leg, why: self._respond(request, leg, why, done))
            return
        agent = self._phones.by_extension.get(resource) if tech.upper() == "PJSIP" else None
        if agent is None or not agent.registered:
            self._respond(request, None, REASON_FAILED, done)
            return
        leg = self._core.new_channel(
            f"PJSIP/{agent.extension}",
            uniqueid=request.channel_id or None,
            context=self._agent_context,
            exten=agent.extension,
            caller_num=request.caller_num,
            caller_name=request.caller_name,
            application="AppDial2",
            app_data="(Outgoing Line)",
        )
        if agent.at_capacity:
            if request.context == AGENT_CONTEXT:  # a callback for an agent already busy
                entry = DoubleAssignment(request.channel_id, agent.agent_id, self._core.now(), agent.device_state)
                self._core.ledger.double_assignments.append(entry)
            self._core.in_either_order(
                lambda: self._core.hangup(leg, 17), lambda: self._respond(request, None, REASON_BUSY, done)
            )
            return
        self.legs[leg.name] = agent
        self._phones.ring(agent, leg)
        delay = agent.next_answer_delay()
        answers = self._core.rng.random() < agent.answer_probability and delay < request.timeout_s
        timers = self._core.timers
        if answers:
            timers.call_later(delay, lambda: self._answered(request, agent, leg, done))
        else:
            timers.call_later(request.timeout_s, lambda: self._timed_out(request, agent, leg, done))

    def _answered(
        self, request: OriginateRequest, agent: SimAgent, leg: Channel, done: OriginateDone
    ) -> None:
        if leg.hangup_pending:
            return
        self._core.answer(leg)
        self._phones.refresh(agent)
        self._respond(request, leg, REASON_ANSWERED, done)
        leg.update(
            context=request.context or leg.context,
            exten=request.exten or leg.exten,
            priority=request.priority or 1,
            application=request.application or "Wait",
            app_data=request.data,
        )
        if request.context == AGENT_CONTEXT and not request.application:
            self._callbacks.dial_caller(agent, leg, request.exten, self.hangup)
            return
        self._core.timers.call_later(self._talk_s, lambda: self.hangup(leg, 16))

    def _timed_out(
        self, request: OriginateRequest, agent: SimAgent, leg: Channel, done: OriginateDone
    ) -> None:
        if leg.hangup_pending:
            return
        self._core.in_either_order(
            lambda: self.hangup(leg, 0), lambda: self._respond(request, None, REASON_RING_TIMEOUT, done)
        )

    def hangup(self, leg: Channel, cause: int) -> None:
        agent = self.legs.pop(leg.name, None)
        if agent is None or leg.hangup_pending:
            return
        self._core.hangup(leg, cause)
        self._phones.detach(agent, leg)
        self._phones.refresh(agent)

    def _respond(
        self, request: OriginateRequest, leg: Channel | None, reason: int, done: OriginateDone
    ) -> None:
        success = leg is not None
        pairs: list[tuple[str, object]] = [
            ("Response", "Success" if success else "Failure"),
            ("Channel", leg.name if leg else request.channel),
        ]
        if request.application:
            pairs += [("Application", request.application), ("Data", request.data)]
        else:
            pairs += [("Context", request.context), ("Exten", request.exten)]
        pairs += [
            ("Reason", reason),
            ("Uniqueid", leg.uniqueid if leg else (request.channel_id or "<unknown>")),
            ("CallerIDNum", request.caller_num or "<unknown>"),
            ("CallerIDName", request.caller_name or "<unknown>"),
        ]
        id_line = f"ActionID: {request.action_id}{EOL}" if request.action_id else ""
        # ast_manager_event_multichan appends the channel's channelvars as ChanVariable(<name>).
        chan_vars = (
            ""
            if leg is None
            else "".join(
                f"ChanVariable({leg.name}): {var}={leg.variables.get(var, '')}{EOL}"
                for var in leg.manager_vars
            )
        )
        self._core.emit("OriginateResponse", perms.CALL, id_line + render_lines(pairs) + chan_vars)
        done(success)
