"""The routing engine: applies domain events to the state store and makes offers.

Two directions of matching, both ending in the store's atomic reservation:

- a call becomes waiting (arrives, is declined, relaxes) -> best available agent;
- an agent becomes available (logs in, unpauses, finishes a call) -> first call in line.

After every event the engine runs the follow-up matching for the current state, whether
or not the event itself was a redelivery: matching depends only on state, so a worker
that crashed between applying an event and matching leaves nothing stuck behind.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from router.clock import Clock
from router.commands import OfferCommand, PauseCommand
from router.domain import AgentCandidate, AgentConfig, QueueConfig, WaitingCall, format_requirements
from router.events import (
    AgentAnswered,
    AgentDeclined,
    AgentPresenceChanged,
    AgentRang,
    CallerHeld,
    CallerHungUp,
    CallQueued,
    DomainEvent,
    OfferFailed,
    ResyncFinished,
)
from router.metrics import RoutingMetrics
from router.policy import Decision, choose_agent, choose_call, requirements_in_force
from router.settings import RoutingSettings
from router.store import Outcome, Position, RedisStateStore

logger = logging.getLogger(__name__)

MAX_RESERVE_ATTEMPTS = 5
WAITING_PAGE = 200


class CommandSink(Protocol):
    """Where the engine's commands go (Kafka in production, a list in unit tests)."""

    async def offer(self, command: OfferCommand, started: float) -> None: ...

    async def pause(self, command: PauseCommand) -> None: ...


class RoutingEngine:
    """Routing decisions for one site; stateless itself, all state is in the store."""

    def __init__(
        self,
        *,
        store: RedisStateStore,
        queues: dict[str, QueueConfig],
        agents: dict[str, AgentConfig],
        settings: RoutingSettings,
        clock: Clock,
        sink: CommandSink,
        metrics: RoutingMetrics,
    ) -> None:
        if not queues:
            raise ValueError("the routing engine needs at least one queue")
        self.store = store
        self.queues = queues
        self.agents = agents
        self.devices = {agent.device: agent.id for agent in agents.values()}
        self.settings = settings
        self.clock = clock
        self.sink = sink
        self.metrics = metrics
        self.fallback_queue = settings.unknown_queue or next(iter(queues))
        self._handlers: dict[type, Callable[[Any, Position, float], Awaitable[None]]] = {
            CallQueued: self._on_call_queued,
            AgentRang: self._on_agent_rang,
            AgentAnswered: self._on_agent_answered,
            AgentDeclined: self._on_agent_declined,
            CallerHeld: self._on_caller_held,
            CallerHungUp: self._on_caller_hung_up,
            AgentPresenceChanged: self._on_presence,
            ResyncFinished: self._on_resync,
            OfferFailed: self._on_offer_failed,
        }

    async def seed_agents(self) -> None:
        """Write every configured agent's profile (skills, capacity, device) to the store."""
        now = self.clock.now()
        for agent in self.agents.values():
            await self.store.upsert_agent(agent, now)

    async def apply_config(self, queues: dict[str, QueueConfig], agents: dict[str, AgentConfig]) -> None:
        """Swap in a reloaded (already validated) configuration of queues and agents.

        Calls in flight keep the service-level threshold and wrap-up they entered with;
        new requirements, relax steps and strategies apply from the next decision on.
        """
        if not queues:
            raise ValueError("a configuration reload needs at least one queue")
        self.queues = queues
        self.agents = agents
        self.devices = {agent.device: agent.id for agent in agents.values()}
        if self.fallback_queue not in queues:
            self.fallback_queue = self.settings.unknown_queue or next(iter(queues))
        await self.seed_agents()

    async def handle(self, event: DomainEvent, pos: Position, started: float) -> None:
        """Apply one event; ``started`` is when it was consumed (monotonic, for latency)."""
        await self._handlers[type(event)](event, pos, started)

    # -- event handlers -------------------------------------------------------------------

    async def _on_call_queued(self, event: CallQueued, pos: Position, started: float) -> None:
        queue = self._queue_for(event)
        priority = queue.priority if event.priority is None else event.priority
        next_relax = queue.next_relax_after(max(0.0, self.clock.now() - event.at))
        outcome = await self.store.enqueue(
            event.call_id,
            queue=queue.name,
            priority=priority,
            requirements=event.requirements,
            channel=event.channel,
            entered_at=event.at,
            relax_due=None if next_relax is None else event.at + next_relax,
            sl_threshold=queue.service_level.threshold_s,
            wrapup_s=queue.wrapup_s,
            pos=pos,
        )
        if outcome.status == "queued":
            self.metrics.offered.labels(queue.name).inc()
            logger.debug("call %s queued in %s (priority %s)", event.call_id, queue.name, priority)
            call = WaitingCall(
                event.call_id, queue.name, priority, event.at, event.requirements, channel=event.channel
            )
            await self.match_call(call, started, trigger="call")
        else:  # a redelivery or a resync listing: match whatever state the call is in now
            await self._match_call_id(event.call_id, started)

    def _queue_for(self, event: CallQueued) -> QueueConfig:
        queue = self.queues.get(event.queue)
        if queue is None:
            logger.error(
                "call %s names queue %r, which is not configured (configured: %s); routing it via "
                "%r. Fix ACD_QUEUE in the dialplan or add the queue to the configuration.",
                event.call_id,
                event.queue,
                sorted(self.queues),
                self.fallback_queue,
            )
            queue = self.queues[self.fallback_queue]
        return queue

    async def _on_agent_rang(self, event: AgentRang, pos: Position, started: float) -> None:
        agent_id = await self._agent_for_device(event.device)
        if agent_id is not None:
            await self.store.agent_rang(event.call_id, agent_id, event.at, pos)

    async def _on_agent_answered(self, event: AgentAnswered, pos: Position, started: float) -> None:
        agent_id = await self._agent_for_device(event.device)
        if agent_id is None:
            return
        outcome = await self.store.agent_answered(event.call_id, agent_id, event.at, pos)
        if outcome.status == "answered":
            queue = outcome.detail(1)
            self.metrics.answered.labels(queue).inc()
            self.metrics.answer_wait.labels(queue).observe(outcome.number(0))
            logger.info("call %s answered by %s after %.1fs", event.call_id, agent_id, outcome.number(0))
        # An agent with spare capacity (chat-style) may take another call right away.
        await self.match_agent(agent_id, started)

    async def _on_agent_declined(self, event: AgentDeclined, pos: Position, started: float) -> None:
        agent_id = await self._agent_for_device(event.device)
        if agent_id is None:
            return
        rna = self.settings.ring_no_answer
        outcome = await self.store.agent_declined(
            event.call_id, agent_id, event.at, rna.auto_pause, rna.reason, pos
        )
        await self._after_decline(outcome, event.call_id, agent_id, event.dial_status, started)

    async def _on_caller_held(self, event: CallerHeld, pos: Position, started: float) -> None:
        rna = self.settings.ring_no_answer
        outcome = await self.store.caller_held(event.call_id, event.at, rna.auto_pause, rna.reason, pos)
        if outcome.status == "declined":
            await self._after_decline(outcome, event.call_id, outcome.detail(1), "CHANUNAVAIL", started)

    async def _after_decline(
        self, outcome: Outcome, call_id: str, agent_id: str, status: str, started: float
    ) -> None:
        """Pause the agent in Asterisk too (if auto-paused), then route the call again."""
        if outcome.status == "declined":
            queue = (await self.store.call(call_id)).get("queue", "")
            self.metrics.declined.labels(queue).inc()
            logger.info("agent %s did not take call %s (%s)", agent_id, call_id, status)
            if outcome.detail(0) == "1":
                await self._pause_in_asterisk(agent_id)
        await self._match_call_id(call_id, started)
        await self.match_agent(agent_id, started)

    async def _pause_in_asterisk(self, agent_id: str) -> None:
        agent = self.agents.get(agent_id)
        device = agent.device if agent else (await self.store.agent(agent_id)).get("device", "")
        reason = self.settings.ring_no_answer.reason
        await self.sink.pause(PauseCommand(agent_id, device, reason, self.clock.now()))

    async def _on_caller_hung_up(self, event: CallerHungUp, pos: Position, started: float) -> None:
        outcome = await self.store.caller_hung_up(event.call_id, event.at, pos)
        queue, agent_id = outcome.detail(1), outcome.detail(2)
        if outcome.status == "abandoned":
            self.metrics.abandoned.labels(queue).inc()
            self.metrics.abandon_wait.labels(queue).observe(outcome.number(0))
            logger.info("call %s abandoned after %.1fs", event.call_id, outcome.number(0))
        elif outcome.status == "completed":
            self.metrics.talk.labels(queue).observe(outcome.number(0))
            self.metrics.agent_handling.inc(outcome.number(0))
        if agent_id:
            await self.match_agent(agent_id, started)

    async def _on_presence(self, event: AgentPresenceChanged, pos: Position, started: float) -> None:
        agent_id = await self._agent_for_device(event.device, member_name=event.member_name)
        if agent_id is None:
            logger.warning(
                "roster event for %s (member %r) matches no configured agent; add it under 'agents:' "
                "with interface: %s",
                event.device,
                event.member_name,
                event.device,
            )
            return
        outcome = await self.store.agent_presence(agent_id, event.state, event.reason, event.at, pos)
        if outcome.status == "changed":
            self.metrics.agent_available.inc(outcome.number(1))
            logger.info("agent %s: %s -> %s %s", agent_id, outcome.detail(0), event.state, event.reason)
        await self.match_agent(agent_id, started)

    async def _on_resync(self, event: ResyncFinished, pos: Position, started: float) -> None:
        closed = await self.store.resync_close(event.snapshot_at, event.live_call_ids)
        if closed:
            self.metrics.calls_closed_by_resync.inc(len(closed))
            logger.warning("resync: %d calls ended while AMI was disconnected: %s", len(closed), closed[:20])
        await self.sweep(started)

    async def _on_offer_failed(self, event: OfferFailed, pos: Position, started: float) -> None:
        outcome = await self.store.offer_failed(
            event.call_id, event.offer_id, event.at, channel_gone=event.channel_gone, pos=pos
        )
        logger.info(
            "offer %s of call %s failed (%s): %s", event.offer_id, event.call_id, event.reason, outcome.status
        )
        if outcome.status == "abandoned":
            call = await self.store.call(event.call_id)
            self.metrics.abandoned.labels(call.get("queue", "")).inc()
        await self._match_call_id(event.call_id, started)
        if event.agent_id:
            await self.match_agent(event.agent_id, started)

    async def _agent_for_device(self, device: str, *, member_name: str = "") -> str | None:
        agent_id = self.devices.get(device)
        if agent_id is None and member_name in self.agents:
            agent_id = member_name
        if agent_id is None:
            agent_id = await self.store.agent_for_device(device)
        return agent_id

    # -- matching -------------------------------------------------------------------------

    async def _match_call_id(self, call_id: str, started: float) -> None:
        call = await self.store.waiting_call(call_id)
        if call is not None:
            await self.match_call(call, started, trigger="call")

    async def match_call(self, call: WaitingCall, started: float, *, trigger: str) -> bool:
        """Offer ``call`` to the best available agent; False when nobody qualifies now."""
        queue = self.queues.get(call.queue) or self.queues[self.fallback_queue]
        for _ in range(MAX_RESERVE_ATTEMPTS):
            now = self.clock.now()
            requirements = requirements_in_force(call, queue, now)
            candidates = await self.store.candidates(
                requirements, exclude=call.declined_by, limit=self.settings.candidate_limit
            )
            rr_after = (
                await self.store.round_robin_last(queue.name) if queue.strategy == "round-robin" else ""
            )
            decision = choose_agent(call, queue, candidates, now, rr_after=rr_after)
            if decision is None:
                return False
            outcome = await self._reserve(decision, call, candidates, started, trigger)
            if outcome.status == "ok":
                return True
            if outcome.status in ("call_taken", "unknown_call"):
                return False
            self.metrics.conflicts.inc()
        return False

    async def match_agent(self, agent_id: str, started: float) -> None:
        """Give a newly free agent the first call in line it may take (several, if capacity allows)."""
        for _ in range(MAX_RESERVE_ATTEMPTS):
            agent = await self.store.agent_candidate(agent_id)
            if agent is None:
                return
            decision, call = await self._first_call_for(agent)
            if decision is None or call is None:
                return
            outcome = await self._reserve(decision, call, [agent], started, "agent")
            if outcome.status not in ("ok", "call_taken"):
                return
            if outcome.status == "call_taken":
                self.metrics.conflicts.inc()

    async def _first_call_for(self, agent: AgentCandidate) -> tuple[Decision | None, WaitingCall | None]:
        start = 0
        while True:
            calls = await self.store.waiting_calls(start, WAITING_PAGE)
            if not calls:
                return None, None
            decision = choose_call(agent, calls, self.queues, self.clock.now())
            if decision is not None:
                return decision, next(c for c in calls if c.call_id == decision.call_id)
            start += WAITING_PAGE

    async def _reserve(
        self,
        decision: Decision,
        call: WaitingCall,
        candidates: list[AgentCandidate],
        started: float,
        trigger: str,
    ) -> Outcome:
        now = self.clock.now()
        offer_id = uuid.uuid4().hex
        deadline = now + self.settings.offer_timeout_s * self.clock.time_scale
        skills = next((c.skills for c in candidates if c.agent_id == decision.agent_id), {})
        record = decision.record() | {
            "offer_id": offer_id,
            "priority": call.priority,
            "decided_at": round(now, 3),
            "agent_skills": skills,
            "trigger": trigger,
        }
        outcome = await self.store.reserve(
            call.call_id, decision.agent_id, offer_id, now, deadline, json.dumps(record)
        )
        if outcome.status != "ok":
            return outcome
        self.metrics.decisions.labels(decision.queue, trigger).inc()
        self.metrics.agent_available.inc(outcome.number(1))
        agent = self.agents.get(decision.agent_id)
        command = OfferCommand(
            offer_id=offer_id,
            call_id=call.call_id,
            channel=call.channel,
            agent_id=decision.agent_id,
            device=outcome.detail(0),
            context=self.settings.connect_context,
            exten=agent.dial_extension if agent else decision.agent_id,
            queue=decision.queue,
            decided_at=now,
        )
        await self.sink.offer(command, started)
        logger.debug(
            "offered call %s to %s: %s [%s]",
            call.call_id,
            decision.agent_id,
            decision.reason,
            format_requirements(decision.requirements),
        )
        return outcome

    # -- timers ---------------------------------------------------------------------------

    async def tick(self, started: float) -> None:
        """Time-driven work: wrap-ups ending, offers expiring, requirements relaxing."""
        now = self.clock.now()
        wrapups, requeued = await self.store.run_timers(now)
        for wrapup in wrapups:
            self.metrics.wrapup.labels(wrapup.queue).observe(wrapup.seconds)
            self.metrics.agent_handling.inc(wrapup.seconds)
        for call_id in requeued:
            logger.warning("offer for call %s expired before it rang; back in line", call_id)
        for call_id in await self.store.relax_due(now):
            await self._relax(call_id, now, started)
        for call_id in requeued:
            await self._match_call_id(call_id, started)
        for wrapup in wrapups:
            await self.match_agent(wrapup.agent_id, started)

    async def _relax(self, call_id: str, now: float, started: float) -> None:
        call = await self.store.waiting_call(call_id)
        if call is None:
            await self.store.set_relax_due(call_id, None)
            return
        queue = self.queues.get(call.queue) or self.queues[self.fallback_queue]
        following = queue.next_relax_after(now - call.entered_at)
        await self.store.set_relax_due(call_id, None if following is None else call.entered_at + following)
        await self.match_call(call, started, trigger="relax")

    async def sweep(self, started: float, *, limit: int = 10_000) -> None:
        """Safety net: try waiting calls (line order, up to ``limit``) against available agents."""
        calls: list[WaitingCall] = []
        while len(calls) < limit and (page := await self.store.waiting_calls(len(calls), WAITING_PAGE)):
            calls.extend(page)
        for call in calls:
            if not await self.store.any_agent_available():
                return
            await self.match_call(call, started, trigger="sweep")
