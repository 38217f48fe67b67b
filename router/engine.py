"""The routing engine: applies domain events to the state store, then matches.

After every event the engine runs the follow-up matching for the current state, whether
or not the event itself was a redelivery: matching depends only on state, so a worker
that crashed between applying an event and matching leaves nothing stuck behind.
Matching itself is router.matching; overflow rules are router.overflow.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from router import affinity
from router.callback_flow import CallbackFlow
from router.catchup import GroupProgress, NoGroup
from router.clock import Clock
from router.closing import Closing
from router.commands import CommandSink, PauseCommand, RecordCommand
from router.context import RoutingContext
from router.domain import Affinity, AgentConfig, QueueConfig, Requirements, WaitingCall
from router.errors import AcdError
from router.events import (
    AgentAnswered,
    AgentDeclined,
    AgentDeviceChanged,
    AgentLegEnded,
    AgentPresenceChanged,
    AgentRang,
    CallerHeld,
    CallerHungUp,
    CallerLeftHold,
    CallQueued,
    CallTransferred,
    DomainEvent,
    OfferFailed,
    ResyncFinished,
)
from router.live_config import LiveConfig
from router.matching import Matcher
from router.metrics import RoutingMetrics
from router.overflow import Overflows, first_due
from router.policy import requirements_in_force
from router.settings import RoutingSettings
from router.store.callbacks import RedisCallbackStore
from router.store.params import NewCall, Position, ResyncGap
from router.store.replies import Answered, ClosedCall, Declined, ResyncListing, TransferStep
from router.store.routing import RedisRoutingStore
from router.store.schedule import RedisScheduleStore
from router.store.timers import RedisTimerStore

logger = logging.getLogger(__name__)


def ids(call_id: str = "", agent_id: str = "") -> dict[str, str]:
    """``extra=`` for log records: JSON logs carry the call and agent as fields."""
    fields = {"call_id": call_id, "agent_id": agent_id}
    return {name: value for name, value in fields.items() if value}


OFFER_STATES = frozenset({"offered", "dispatching", "ringing"})
UNSTAFFED_CHECK_EVERY_S = 2.0  # real seconds between "anybody logged in?" overflow checks
CATCHUP_RETRY_S = 0.5  # real seconds between looks at whether the group caught up with a listing


class RoutingEngine:
    """Routing decisions for one site; stateless itself, all state is in the stores.

    ``store`` takes the events and the decisions, ``timers`` the time-driven work (both
    best built over one script runner: router.store.shared_scripts).
    """

    def __init__(
        self,
        context: RoutingContext,
        *,
        store: RedisRoutingStore,
        timers: RedisTimerStore,
        callbacks: RedisCallbackStore | None = None,
        progress: GroupProgress | None = None,
    ) -> None:
        self.context = context
        self.store = store
        self.timers = timers
        # How far the routing group has applied its partitions (router.catchup).
        self.progress = progress or NoGroup()
        self.matcher = Matcher(context, store)
        self.overflows = Overflows(context, store, self.matcher)
        # Business hours (router/closing.py): its own store, on the same Redis and site.
        hours = RedisScheduleStore(store.redis, store.keys.site, timezone=store.days.timezone)
        self.closing = Closing(context, hours)
        self._last_unstaffed_check = 0.0
        self._handlers: dict[type, Callable[[Any, Position, float], Awaitable[None]]] = {
            CallQueued: self._on_call_queued,
            AgentRang: self._on_agent_rang,
            AgentAnswered: self._on_agent_answered,
            AgentDeclined: self._on_agent_declined,
            CallerHeld: self._on_caller_held,
            CallerLeftHold: self._on_caller_left_hold,
            CallerHungUp: self._on_caller_hung_up,
            CallTransferred: self._on_call_transferred,
            AgentLegEnded: self._on_agent_leg_ended,
            AgentPresenceChanged: self._on_presence,
            AgentDeviceChanged: self._on_device,
            ResyncFinished: self._on_resync,
            OfferFailed: self._on_offer_failed,
        }
        # Callbacks that keep the caller's place (router/callback_flow.py).
        self.callbacks = CallbackFlow(
            context, callbacks or RedisCallbackStore.beside(store), self.matcher, self._pause_in_asterisk
        )
        self._handlers.update(self.callbacks.handlers())

    @property
    def config(self) -> LiveConfig:
        return self.context.config

    @property
    def settings(self) -> RoutingSettings:
        return self.context.settings

    @property
    def clock(self) -> Clock:
        return self.context.clock

    @property
    def sink(self) -> CommandSink:
        return self.context.sink

    @property
    def metrics(self) -> RoutingMetrics:
        return self.context.metrics

    @property
    def queues(self) -> dict[str, QueueConfig]:
        return self.config.queues

    @property
    def agents(self) -> dict[str, AgentConfig]:
        return self.config.agents

    async def seed_agents(self, *, force: bool = False) -> None:
        """Write every configured agent's profile (skills, capacity, device) to the store;
        skills edited through the API are kept unless ``force``."""
        now = self.clock.now()
        for agent in self.agents.values():
            await self.store.upsert_agent(agent, now, force=force)

    async def apply_config(self, queues: dict[str, QueueConfig], agents: dict[str, AgentConfig]) -> None:
        """Swap in a reloaded (already validated) configuration of queues and agents.

        Calls in flight keep the service-level threshold and wrap-up they entered with;
        new requirements, relax steps and strategies apply from the next decision on. The
        file's skills replace any edited through the API (a reload is an explicit choice).
        """
        self.config.update(queues, agents, self.settings.unknown_queue)
        self.metrics.declare_queues(list(queues))
        await self.seed_agents(force=True)

    async def handle(self, event: DomainEvent, pos: Position, started: float) -> None:
        """Apply one event; ``started`` is when it was consumed (monotonic, for latency)."""
        await self._handlers[type(event)](event, pos, started)

    # -- calls ----------------------------------------------------------------------------

    async def _on_call_queued(self, event: CallQueued, pos: Position, started: float) -> None:
        queue = self.config.entry_queue(event.queue, event.call_id)
        if await self.closing.turned_away(event, queue, pos):  # business hours: closed now
            return
        priority = queue.priority if event.priority is None else event.priority
        waiting = WaitingCall(
            event.call_id, queue.name, priority, event.at, event.requirements, channel=event.channel
        )
        requirements = requirements_in_force(waiting, queue, self.clock.now())
        if (affinity := await self._affinity_for(event, queue, waiting, requirements)) is not None:
            waiting = replace(waiting, affinity=affinity)
        call = self._new_call(event, queue, requirements, waiting)
        limit = self.matcher.candidate_limit(queue)
        enqueued = await self.store.enqueue(
            call, pos, candidates_for=requirements, limit=limit, requeue_transferred=not event.resynced
        )
        if enqueued.status not in ("queued", "requeued"):  # a redelivery or a resync listing
            await self.matcher.match_call_id(event.call_id, started)
            return
        self.metrics.offered.labels(queue.name).inc()
        if enqueued.status == "requeued":
            waiting = replace(waiting, affinity=None)  # the store keeps none for it either
            await self._after_requeue(event.call_id, queue.name, enqueued.released_agent, started)
        logger.debug(
            "call %s queued in %s (priority %s)",
            event.call_id,
            queue.name,
            call.priority,
            extra=ids(event.call_id),
        )
        if not enqueued.candidates and await self.overflows.nobody_to_answer(queue, event.call_id):
            return
        await self.matcher.match_call(waiting, started, trigger="call", prefetched=enqueued.candidates)

    async def _after_requeue(self, call_id: str, queue: str, released: str, started: float) -> None:
        """A transferred caller is back in a queue; its transferring agent may have been
        released by this very announcement (its leg's end not seen yet)."""
        logger.info("call %s transferred back into %s", call_id, queue, extra=ids(call_id))
        if released:
            await self.matcher.match_agent(released, started)

    async def _affinity_for(
        self, event: CallQueued, queue: QueueConfig, call: WaitingCall, requirements: Requirements
    ) -> Affinity | None:
        """The agent the new call waits for first (router/affinity.py), if any."""
        return await self.matcher.sticky.target(
            queue,
            call,
            preferred=event.preferred_agent,
            caller_number=event.caller_number,
            requirements=requirements,
            now=self.clock.now(),
        )

    def _new_call(
        self, event: CallQueued, queue: QueueConfig, requirements: Requirements, call: WaitingCall
    ) -> NewCall:
        now = self.clock.now()
        next_relax = queue.next_relax_after(max(0.0, now - event.at))
        return NewCall(
            call_id=event.call_id,
            queue=queue.name,
            priority=queue.priority if event.priority is None else event.priority,
            priority_explicit=event.priority is not None,
            requirements=event.requirements,
            channel=event.channel,
            entered_at=event.at,
            relax_due=affinity.next_due(event.at, next_relax, call.affinity, now),
            overflow_due=first_due(queue, event.at),
            sl_threshold=queue.service_level.threshold_s,
            wrapup_s=queue.wrapup_s,
            caller_number=event.caller_number,
            caller_name=event.caller_name,
            requirements_in_force=requirements,
            qa=queue.qa,
            affinity=call.affinity,
            last_agent_window_s=queue.last_agent.window_s if queue.last_agent else None,
        )

    async def _on_agent_rang(self, event: AgentRang, pos: Position, started: float) -> None:
        agent_id = await self._agent_for_device(event.device)
        if agent_id is not None:
            await self.store.agent_rang(event.call_id, agent_id, event.at, pos)

    async def _on_agent_answered(self, event: AgentAnswered, pos: Position, started: float) -> None:
        agent_id = await self._agent_for_device(event.device)
        if agent_id is None:
            return
        answered = await self.store.agent_answered(
            event.call_id, agent_id, event.at, pos, qa_seed=self.context.qa_seed
        )
        if answered.status == "answered":
            self.metrics.answered.labels(answered.queue).inc()
            self.metrics.answer_wait.labels(answered.queue).observe(answered.waited_s)
            logger.info(
                "call %s answered by %s after %.1fs",
                event.call_id,
                agent_id,
                answered.waited_s,
                extra=ids(event.call_id, agent_id),
            )
            if answered.sampled:
                await self._sampled(event.call_id, agent_id, answered)
        # An agent with spare capacity (chat-style) may take another call right away.
        if answered.status != "answered" or answered.spare_capacity:
            await self.matcher.match_agent(agent_id, started)

    async def _sampled(self, call_id: str, agent_id: str, answered: Answered) -> None:
        """A call chosen for quality review: counted, and recorded if its queue records."""
        self.metrics.qa_sampled.labels(answered.queue, answered.qa_reason).inc()
        logger.info(
            "call %s sampled for quality review (%s), recording: %s",
            call_id,
            answered.qa_reason,
            answered.recording or "none",
            extra=ids(call_id, agent_id),
        )
        if answered.record_now and answered.channel:
            command = RecordCommand(
                call_id, answered.channel, answered.recording, agent_id, answered.queue, self.clock.now()
            )
            await self.sink.record(command)

    async def _on_agent_declined(self, event: AgentDeclined, pos: Position, started: float) -> None:
        agent_id = await self._agent_for_device(event.device)
        if agent_id is None:
            return
        rna = self.settings.ring_no_answer
        declined = await self.store.agent_declined(
            event.call_id, agent_id, event.at, rna.auto_pause, rna.reason, pos
        )
        await self._after_decline(declined, event.call_id, agent_id, event.dial_status, started)

    async def _on_caller_held(self, event: CallerHeld, pos: Position, started: float) -> None:
        rna = self.settings.ring_no_answer
        declined = await self.store.caller_held(event.call_id, event.at, rna.auto_pause, rna.reason, pos)
        if declined.status == "declined":
            await self._after_decline(declined, event.call_id, declined.agent_id, "CHANUNAVAIL", started)

    async def _on_caller_left_hold(self, event: CallerLeftHold, pos: Position, started: float) -> None:
        await self.store.caller_left_hold(event.call_id, event.at, pos)

    async def _after_decline(
        self, declined: Declined, call_id: str, agent_id: str, status: str, started: float
    ) -> None:
        """Pause the agent in Asterisk too (if auto-paused), then route the call again."""
        if declined.status == "declined":
            queue = (await self.store.call(call_id)).get("queue", "")
            self.metrics.declined.labels(queue).inc()
            logger.info(
                "agent %s did not take call %s (%s)", agent_id, call_id, status, extra=ids(call_id, agent_id)
            )
            if declined.paused:
                await self._pause_in_asterisk(agent_id)
        await self.matcher.match_call_id(call_id, started)
        await self.matcher.match_agent(agent_id, started)

    async def _pause_in_asterisk(self, agent_id: str) -> None:
        agent = self.agents.get(agent_id)
        device = agent.device if agent else (await self.store.agent(agent_id)).get("device", "")
        reason = self.settings.ring_no_answer.reason
        await self.sink.pause(PauseCommand(agent_id, device, reason, self.clock.now()))

    async def _on_caller_hung_up(self, event: CallerHungUp, pos: Position, started: float) -> None:
        hung_up = await self.store.caller_hung_up(
            event.call_id, event.at, pos, by_pbx_shutdown=event.by_pbx_shutdown
        )
        queue = hung_up.queue
        if hung_up.status == "pbx_restart":
            self.metrics.ended_by_pbx_restart.labels(queue).inc()
            logger.warning(
                "call %s cut off by Asterisk shutting down", event.call_id, extra=ids(event.call_id)
            )
        elif hung_up.status == "abandoned":
            self.metrics.abandoned.labels(queue).inc()
            self.metrics.abandon_wait.labels(queue).observe(hung_up.seconds)
            logger.info(
                "call %s abandoned after %.1fs", event.call_id, hung_up.seconds, extra=ids(event.call_id)
            )
        elif hung_up.status in ("completed", "transferred"):  # transferred: its leg's end was missed
            self.metrics.talk.labels(queue).observe(hung_up.seconds)
            self.metrics.agent_handling.inc(hung_up.seconds)
        if hung_up.agent_id and hung_up.free_agent is not None:
            await self.matcher.match_agent(hung_up.agent_id, started, known=hung_up.free_agent)

    async def _on_call_transferred(self, event: CallTransferred, pos: Position, started: float) -> None:
        agent_id = await self._agent_for_device(event.device) if event.device else None
        step = await self.store.call_transferred(
            event.call_id, agent_id or "", event.kind, event.target, event.at, pos
        )
        if step.status in ("marked", "transferred"):
            self.metrics.transferred.labels(step.queue).inc()
            logger.info(
                "call %s: %s transfer by %s to %s",
                event.call_id,
                event.kind,
                step.agent_id,
                event.target,
                extra=ids(event.call_id, step.agent_id),
            )
        await self._after_transfer_step(step, started)

    async def _on_agent_leg_ended(self, event: AgentLegEnded, pos: Position, started: float) -> None:
        agent_id = await self._agent_for_device(event.device)
        if agent_id is not None:
            step = await self.store.agent_leg_ended(event.call_id, agent_id, event.at, pos)
            await self._after_transfer_step(step, started)

    async def _after_transfer_step(self, step: TransferStep, started: float) -> None:
        """The transferring agent's talk ended (or a redelivery): count it, offer it a call."""
        if step.status == "transferred":
            self.metrics.talk.labels(step.queue).observe(step.seconds)
            self.metrics.agent_handling.inc(step.seconds)
        free = step.free_agent
        if step.agent_id and step.status in ("transferred", "duplicate") and free is not None:
            await self.matcher.match_agent(step.agent_id, started, known=free)

    async def _on_offer_failed(self, event: OfferFailed, pos: Position, started: float) -> None:
        failed = await self.store.offer_failed(
            event.call_id, event.offer_id, event.at, channel_gone=event.channel_gone, pos=pos
        )
        logger.info(
            "offer %s of call %s failed (%s): %s", event.offer_id, event.call_id, event.reason, failed.status
        )
        if failed.status == "abandoned":
            self.metrics.abandoned.labels(failed.queue).inc()
            self.metrics.abandon_wait.labels(failed.queue).observe(failed.waited_s)
        self.callbacks.count_attempt_ended(failed.status, failed.queue, event.call_id)
        await self.matcher.match_call_id(event.call_id, started)
        if event.agent_id:
            await self.matcher.match_agent(event.agent_id, started)

    # -- agents ---------------------------------------------------------------------------

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
        presence = await self.store.agent_presence(
            agent_id, event.state, event.reason, event.at, pos, event.device_state, pause_known=event.pause_known
        )
        if presence.status == "device_changed":
            self.metrics.agent_available.inc(presence.available_s)
            logger.info("agent %s phone %s", agent_id, event.device_state, extra=ids(agent_id=agent_id))
        if presence.status == "changed":
            self.metrics.agent_available.inc(presence.available_s)
            logger.info(
                "agent %s: %s -> %s %s",
                agent_id,
                presence.previous_state,
                event.state,
                event.reason,
                extra=ids(agent_id=agent_id),
            )
            if event.state == "logged_out":
                await self._release_held(agent_id, started)
        await self.matcher.match_agent(agent_id, started)

    async def _release_held(self, agent_id: str, started: float) -> None:
        """Calls waiting for this agent first (router/affinity.py) are routed normally now."""
        for call_id in await self.matcher.sticky.release_for(agent_id, self.clock.now()):
            logger.info("call %s: %s logged out; routing normally", call_id, agent_id, extra=ids(call_id))
            await self.matcher.match_call_id(call_id, started, trigger="affinity")

    async def _on_device(self, event: AgentDeviceChanged, pos: Position, started: float) -> None:
        agent_id = await self._agent_for_device(event.device)
        if agent_id is None:
            return  # a phone that is not an agent's, or a Queue:/custom device state
        device = await self.store.agent_device(agent_id, event.state, event.at, pos)
        if device.status == "changed":
            logger.info("agent %s phone %s: %s", agent_id, event.state, "busy" if device.busy else "free")
        await self.matcher.match_agent(agent_id, started)

    async def _agent_for_device(self, device: str, *, member_name: str = "") -> str | None:
        agent_id = self.config.devices.get(device)
        if agent_id is None and member_name in self.agents:
            agent_id = member_name
        if agent_id is None:
            agent_id = await self.store.agent_for_device(device)
        return agent_id

    # -- recovery and timers --------------------------------------------------------------

    async def _on_resync(self, event: ResyncFinished, pos: Position, started: float) -> None:
        """Close what the listing no longer shows once the routing group has applied every
        event sent before it (router.catchup), and a grace period has passed."""
        now, scale = self.clock.now(), self.clock.time_scale
        listing = ResyncListing(
            event.snapshot_at,
            list(event.live_call_ids),
            ResyncGap(event.link_lost_at, event.pbx_restart),
            dict(event.marks),
            now + self.settings.resync_catchup_max_s * scale,
        )
        await self.timers.schedule_resync(listing, now + self.settings.resync_grace_s * scale)

    async def _close_after_resync(self, started: float) -> None:
        now = self.clock.now()
        for listing in await self.timers.due_resyncs(now):
            if behind := await self._group_behind(listing, now):
                if not listing.waited:
                    logger.info("resync: closing waits until the group has applied %s", behind)
                retry = now + CATCHUP_RETRY_S * self.clock.time_scale
                await self.timers.schedule_resync(replace(listing, waited=True), retry)
                continue
            closed = await self.timers.resync_close(
                listing.snapshot_at, listing.live_call_ids, gap=listing.gap
            )
            for call in closed:
                self._count_closed(call)
            if closed:
                self.metrics.calls_closed_by_resync.inc(len(closed))
                ids = [call.call_id for call in closed[:20]]
                logger.warning("resync: %d calls ended while AMI was disconnected: %s", len(closed), ids)
            await self.matcher.sweep(started)

    async def _group_behind(self, listing: ResyncListing, now: float) -> list[str]:
        """The partitions to wait for before closing: events sent before the listing that
        the group has not applied yet (or Kafka cannot say), unless the wait is over."""
        if not listing.marks:
            return []
        try:
            behind = await self.progress.behind(listing.marks)
        except AcdError as exc:
            if not exc.retriable:
                raise
            behind = [f"unknown ({exc})"]
        if behind and listing.give_up_at is not None and now >= listing.give_up_at:
            logger.warning(
                "resync: partitions %s still behind the listing after %ss; closing its missing calls anyway",
                behind,
                self.settings.resync_catchup_max_s,
            )
            return []
        return behind

    def _count_closed(self, call: ClosedCall) -> None:
        if call.outcome == "abandoned":
            self.metrics.abandoned.labels(call.queue).inc()
            self.metrics.abandon_wait.labels(call.queue).observe(call.seconds)
        elif call.outcome == "pbx_restart":
            self.metrics.ended_by_pbx_restart.labels(call.queue).inc()
        else:
            self.metrics.talk.labels(call.queue).observe(call.seconds)

    async def tick(self, started: float) -> None:
        """Time-driven work: wrap-ups ending, offers expiring, requirements relaxing, overflow."""
        now = self.clock.now()
        wrapups, requeued = await self.timers.run_timers(now)
        for wrapup in wrapups:
            self.metrics.wrapup.labels(wrapup.queue).observe(wrapup.seconds)
            self.metrics.agent_handling.inc(wrapup.seconds)
        for call_id in requeued:
            logger.warning(
                "offer for call %s expired before it rang; back in line", call_id, extra=ids(call_id)
            )
        await self._close_after_resync(started)
        await self.overflows.run_due(await self.timers.overflow_due(self.clock.now()))
        await self.closing.close_out()  # business hours: queues that send waiting calls away
        if started - self._last_unstaffed_check >= UNSTAFFED_CHECK_EVERY_S:
            self._last_unstaffed_check = started
            await self.overflows.check_unstaffed()
        for call_id in await self.timers.relax_due(now):
            await self._relax(call_id, now, started)
        for call_id in requeued:
            await self.matcher.match_call_id(call_id, started)
        await self.callbacks.run_due(started)
        for wrapup in wrapups:
            await self.matcher.match_agent(wrapup.agent_id, started)
        await self._nudged(started)

    async def _nudged(self, started: float) -> None:
        """Agents the operator API changed (wrap-up finished, skills): look for a call now."""
        for nudge in await self.timers.take_nudges():
            if nudge.get("wrapup_s") is not None:
                self.metrics.wrapup.labels(str(nudge.get("queue", ""))).observe(float(nudge["wrapup_s"]))
                self.metrics.agent_handling.inc(float(nudge["wrapup_s"]))
            await self.matcher.match_agent(str(nudge.get("agent", "")), started)

    async def _relax(self, call_id: str, now: float, started: float) -> None:
        call = await self.store.waiting_call(call_id)
        if call is None:
            state = (await self.store.call(call_id)).get("state", "")
            # Being offered right now: look again shortly, the offer may come back.
            await self.timers.set_relax_due(call_id, now + 1.0 if state in OFFER_STATES else None)
            return
        queue = self.config.queue(call.queue)
        following = queue.next_relax_after(now - call.entered_at)
        due = affinity.next_due(call.entered_at, following, call.affinity, now)
        await self.timers.set_relax_due(call_id, due, requirements=requirements_in_force(call, queue, now))
        await self.matcher.match_call(call, started, trigger="relax")

    async def sweep(self, started: float) -> None:
        await self.matcher.sweep(started)

    async def match_agent(self, agent_id: str, started: float) -> None:
        await self.matcher.match_agent(agent_id, started)
