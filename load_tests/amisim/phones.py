"""Agents' phones: registration, active legs, and the device state Asterisk derives from them.

A phone is busy when it carries ``capacity`` legs (ringing or talking). Device state is
recomputed after every leg change and published as DeviceStateChange (class call) when it
changes, like res_pjsip's device state provider; the roster hears about it too, to raise
QueueMemberStatus for logged-in agents.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from load_tests.amisim import perms
from load_tests.amisim.core import Core
from load_tests.amisim.snapshot import RINGING, UP, Channel
from load_tests.amisim.wire import EOL

AnswerDelay = float | Callable[[], float]


@dataclass(eq=False)
class SimAgent:
    """One agent and the phone on their desk."""

    agent_id: str
    extension: str
    interface: str
    capacity: int
    answer_delay_s: AnswerDelay
    answer_probability: float
    registered: bool = True
    legs: list[Channel] = field(default_factory=list)
    device_state: str = "NOT_INUSE"

    def next_answer_delay(self) -> float:
        delay = self.answer_delay_s
        return float(delay() if callable(delay) else delay)

    def compute_device_state(self) -> str:
        if not self.registered:
            return "UNAVAILABLE"
        up = any(leg.state == UP for leg in self.legs)
        ringing = any(leg.state != UP for leg in self.legs)
        if up and ringing:
            return "RINGINUSE"
        if up:
            return "INUSE"
        return "RINGING" if ringing else "NOT_INUSE"

    @property
    def at_capacity(self) -> bool:
        return len(self.legs) >= self.capacity


class Phones:
    """Registry of agents' phones by agent id and by extension."""

    def __init__(self, core: Core) -> None:
        self._core = core
        self.agents: dict[str, SimAgent] = {}
        self.by_extension: dict[str, SimAgent] = {}
        self.by_interface: dict[str, SimAgent] = {}
        self.device_listeners: list[Callable[[SimAgent], None]] = []

    def add(self, agent: SimAgent) -> None:
        if agent.agent_id in self.agents or agent.extension in self.by_extension:
            raise ValueError(f"agent {agent.agent_id!r} or extension {agent.extension!r} exists")
        self.agents[agent.agent_id] = agent
        self.by_extension[agent.extension] = agent
        self.by_interface[agent.interface] = agent

    def get(self, agent_id: str) -> SimAgent:
        try:
            return self.agents[agent_id]
        except KeyError:
            raise KeyError(f"unknown agent {agent_id!r}") from None

    def attach(self, agent: SimAgent, leg: Channel) -> None:
        agent.legs.append(leg)

    def detach(self, agent: SimAgent, leg: Channel) -> None:
        if leg in agent.legs:
            agent.legs.remove(leg)

    def ring(self, agent: SimAgent, leg: Channel) -> None:
        """The phone answers the INVITE with 180 Ringing."""
        self.attach(agent, leg)
        self._core.set_state(leg, RINGING)
        self.refresh(agent)

    def refresh(self, agent: SimAgent) -> None:
        """Publish DeviceStateChange (then tell the roster) if the phone's state moved."""
        state = agent.compute_device_state()
        record = self._core.ledger.agents.get(agent.agent_id)
        if record is not None:
            record.active_calls = sum(1 for leg in agent.legs if leg.state == UP)
        if state == agent.device_state:
            return
        agent.device_state = state
        self.publish(agent)
        for listener in self.device_listeners:
            listener(agent)

    def publish(self, agent: SimAgent) -> None:
        body = f"Device: {agent.interface}{EOL}State: {agent.device_state}{EOL}"
        self._core.emit("DeviceStateChange", perms.CALL, body)
