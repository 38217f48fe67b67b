"""Test doubles shared by the engine tests: a settable clock and a command recorder."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from router.commands import CallbackCommand, OfferCommand, OverflowCommand, PauseCommand, RecordCommand
from router.context import RoutingContext
from router.domain import AgentConfig, QueueConfig
from router.engine import RoutingEngine
from router.events import AgentPresenceChanged, CallQueued
from router.live_config import LiveConfig
from router.metrics import RoutingMetrics
from router.settings import RoutingSettings
from router.store import NO_POSITION, Position, RedisStateStore

T0 = 1_800_000_000.0


@dataclass
class FakeClock:
    t: float = T0
    time_scale: float = 1.0

    def now(self) -> float:
        return self.t

    def real_seconds(self, simulated_seconds: float) -> float:
        return simulated_seconds


@dataclass
class RecordingSink:
    offers: list[OfferCommand] = field(default_factory=list)
    pauses: list[PauseCommand] = field(default_factory=list)
    overflows: list[OverflowCommand] = field(default_factory=list)
    records: list[RecordCommand] = field(default_factory=list)
    callbacks: list[CallbackCommand] = field(default_factory=list)

    async def offer(self, command: OfferCommand, started: float) -> None:
        self.offers.append(command)

    async def pause(self, command: PauseCommand) -> None:
        self.pauses.append(command)

    async def overflow(self, command: OverflowCommand) -> None:
        self.overflows.append(command)

    async def record(self, command: RecordCommand) -> None:
        self.records.append(command)

    async def callback(self, command: CallbackCommand, started: float) -> None:
        self.callbacks.append(command)

    def last(self) -> tuple[str, str]:
        return self.offers[-1].call_id, self.offers[-1].agent_id


class EngineHarness:
    """A RoutingEngine on a real Redis with a fake clock and recorded commands."""

    def __init__(
        self,
        redis: Redis,
        queues: list[QueueConfig],
        agents: list[AgentConfig],
        settings: RoutingSettings | None = None,
    ) -> None:
        self.clock = FakeClock()
        self.sink = RecordingSink()
        self.metrics = RoutingMetrics(CollectorRegistry())
        settings = settings or RoutingSettings()
        config = LiveConfig({q.name: q for q in queues}, {a.id: a for a in agents}, settings.unknown_queue)
        context = RoutingContext(config, settings, self.clock, self.sink, self.metrics)
        self.store = RedisStateStore(redis, "e")  # the whole site: tests read what the engine wrote
        self.engine = RoutingEngine(context, store=self.store, timers=self.store)

    async def start(self) -> EngineHarness:
        await self.engine.seed_agents()
        return self

    async def presence(self, agent_id: str, state: str = "available", reason: str = "") -> None:
        device = self.engine.agents[agent_id].device
        event = AgentPresenceChanged(device, agent_id, state, reason, self.clock.now())
        await self.engine.handle(event, NO_POSITION, 0)

    async def arrive(
        self, call_id: str, queue: str, pos: Position = NO_POSITION, priority: int | None = None
    ) -> None:
        event = CallQueued(call_id, f"PJSIP/trunk-{call_id}", queue, self.clock.now(), priority=priority)
        await self.engine.handle(event, pos, 0)

    async def state(self, call_id: str) -> str:
        return (await self.store.call(call_id)).get("state", "")

    async def advance(self, seconds: float) -> None:
        """Let simulated time pass and run the timers, as the lease holder would."""
        self.clock.t += seconds
        await self.engine.tick(time.monotonic())
