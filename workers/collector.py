"""State collector: the site-wide gauges (calls waiting, oldest wait, agents by state and
by queue, queue targets, live staffing advice).

They are read from Redis by exactly one collector at a time (a Redis lease), so that
running several collectors for availability does not multiply them; a collector that
does not hold the lease exports no state gauges at all.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterable, Sequence

from router.clock import Clock
from router.domain import AgentState, QueueConfig, requirements_met
from router.errors import AcdError
from router.metrics import StateGauges, bucket_label
from router.schedule import is_open
from router.settings import AcdSettings
from router.store import RedisCallbackStore, RedisLeaseStore, RedisSummaryStore
from router.store.replies import AgentProfileCount, CollectorSummary
from router.store.schedule import RedisScheduleStore
from workers.lifecycle import Component, ProcessContext, process_main
from workers.runtime import wait_or_stop
from workers.staffing import StaffingEstimator

logger = logging.getLogger(__name__)

AGENT_STATES = [state.value for state in AgentState]
# Agents who could take a call of the queue now or after their current one.
NOT_STAFFED = frozenset({AgentState.LOGGED_OUT.value, AgentState.PAUSED.value})
MAX_CACHED_PROFILES = 10_000

SkillProfile = frozenset[tuple[str, int]]


class StateCollector:
    """Reads site-wide state from Redis each tick and exports it while holding the lease."""

    def __init__(
        self,
        store: RedisSummaryStore,
        leases: RedisLeaseStore,
        gauges: StateGauges,
        queues: Sequence[QueueConfig],
        clock: Clock,
        staffing: StaffingEstimator | None = None,
        schedule: RedisScheduleStore | None = None,
        callbacks: RedisCallbackStore | None = None,
    ) -> None:
        self.store = store
        self.schedule = schedule or RedisScheduleStore(store.redis, store.keys.site)
        self.callbacks = callbacks
        self.leases = leases
        self.gauges = gauges
        self.queues = list(queues)
        self.clock = clock
        self.staffing = staffing or StaffingEstimator()
        self.owner = f"collector-{uuid.uuid4().hex[:8]}"
        self.leader = False
        self._qualified: dict[SkillProfile, tuple[str, ...]] = {}

    async def collect_once(self, interval_s: float) -> None:
        self.leader = await self.leases.hold_lease("collector_lease", self.owner, interval_s * 3)
        if not self.leader:
            self._clear()
            return
        summary = await self.store.collector_summary()
        now = self.clock.now()
        self._export_calls(summary, now)
        if self.callbacks is not None:
            waiting = await self.callbacks.waiting_by_queue()
            for queue in sorted({q.name for q in self.queues} | set(waiting)):
                self.gauges.callbacks_waiting.labels(queue).set(waiting.get(queue, 0))
        by_queue = self.agents_by_queue(summary.profiles)
        self._export_agents(summary, by_queue)
        self._export_targets()
        await self._export_open(now)
        await self._export_staffing(by_queue, now)

    def _export_calls(self, summary: CollectorSummary, now: float) -> None:
        for queue in sorted({q.name for q in self.queues} | set(summary.waiting)):
            self.gauges.waiting.labels(queue).set(summary.waiting.get(queue, 0))
            oldest = summary.oldest_entered_at.get(queue)
            self.gauges.oldest_wait.labels(queue).set(max(0.0, now - oldest) if oldest else 0.0)

    def _export_agents(self, summary: CollectorSummary, by_queue: dict[str, dict[str, int]]) -> None:
        agents = summary.agents
        for state in sorted(set(AGENT_STATES) | set(agents)):
            self.gauges.agents.labels(state).set(agents.get(state, 0))
        for queue, states in by_queue.items():
            for state, count in states.items():
                self.gauges.queue_agents.labels(queue, state).set(count)

    def agents_by_queue(self, profiles: Iterable[AgentProfileCount]) -> dict[str, dict[str, int]]:
        """Agents meeting each queue's base requirements, by state (every state present)."""
        counts = {queue.name: dict.fromkeys(AGENT_STATES, 0) for queue in self.queues}
        for profile in profiles:
            for queue in self._queues_for(profile.skills):
                counts[queue][profile.state] = counts[queue].get(profile.state, 0) + profile.count
        return counts

    def _queues_for(self, skills: dict[str, int]) -> tuple[str, ...]:
        # Few distinct skill sets, checked every second: remember the answer per set.
        key = frozenset(skills.items())
        found = self._qualified.get(key)
        if found is None:
            if len(self._qualified) >= MAX_CACHED_PROFILES:
                self._qualified.clear()
            found = tuple(q.name for q in self.queues if requirements_met(q.requirements, skills))
            self._qualified[key] = found
        return found

    def _export_targets(self) -> None:
        for queue in self.queues:
            target = queue.service_level
            self.gauges.sl_target.labels(queue.name).set(target.target)
            self.gauges.sl_threshold.labels(queue.name, bucket_label(target.threshold_s)).set(
                target.threshold_s
            )
            self.gauges.sl_formula.labels(queue.name, target.formula).set(1)

    async def _export_open(self, now: float) -> None:
        """Business hours: 1 while the queue takes calls (router/schedule.py)."""
        overrides = await self.schedule.overrides() if any(q.hours for q in self.queues) else {}
        for queue in self.queues:
            opened = queue.hours is None or is_open(queue.hours, now, overrides.get(queue.name))
            self.gauges.queue_open.labels(queue.name).set(1 if opened else 0)

    async def _export_staffing(self, by_queue: dict[str, dict[str, int]], now: float) -> None:
        gauges = self.gauges.staffing
        for queue in self.queues:
            staffed = sum(n for state, n in by_queue[queue.name].items() if state not in NOT_STAFFED)
            gauges.agents_staffed.labels(queue.name).set(staffed)
            advice = self.staffing.observe(queue, await self.store.queue_stats(queue.name), now)
            if advice is None:
                continue
            gauges.agents_needed.labels(queue.name).set(advice.agents_needed)
            gauges.arrival_rate.labels(queue.name).set(advice.arrival_rate_per_s)
            gauges.handle_time.labels(queue.name).set(advice.aht_s)
            gauges.traffic.labels(queue.name).set(advice.traffic_erlangs)
            gauges.model.labels(queue.name, advice.model).set(1)
            if advice.abandon_rate is not None:
                gauges.abandon_rate.labels(queue.name).set(advice.abandon_rate)

    def _clear(self) -> None:
        for gauge in self.gauges.all():
            gauge.clear()

    def apply_config(self, fresh: AcdSettings) -> None:
        """A reload's queues: their gauges and targets from the next tick on."""
        self.queues = list(fresh.queues)
        self._qualified.clear()
        self._clear()  # a queue no longer configured leaves no stale series behind
        logger.info("configuration reloaded: queues %s", sorted(q.name for q in self.queues))

    async def run(self, stop: asyncio.Event, interval_s: float = 1.0) -> None:
        while True:
            try:
                await self.collect_once(interval_s)
            except AcdError as exc:
                if not exc.retriable:
                    raise
                logger.warning("state collection skipped: %s", exc)
            if await wait_or_stop(stop, interval_s):
                return



async def open_collector(ctx: ProcessContext) -> Component:
    """Redis only; ready while it answers."""
    redis = await ctx.redis()
    site = ctx.settings.site
    # Staffing differences the all-time counters over its window: no day boundary in them.
    summary, leases = RedisSummaryStore(redis, site), RedisLeaseStore(redis, site)
    callbacks = RedisCallbackStore(redis, site)
    collector = StateCollector(
        summary, leases, StateGauges(ctx.registry), ctx.settings.queues, ctx.clock, callbacks=callbacks
    )

    async def reload(fresh: AcdSettings) -> None:
        collector.apply_config(fresh)

    return Component(draining=[collector.run], reload=reload)


run_collector = process_main("collect", open_collector)
