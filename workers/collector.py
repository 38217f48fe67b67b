"""State collector: the site-wide gauges (calls waiting, oldest wait, agents by state).

They are read from Redis by exactly one collector at a time (a Redis lease), so that
running several collectors for availability does not multiply them; a collector that
does not hold the lease exports no state gauges at all.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from prometheus_client import CollectorRegistry
from redis.exceptions import RedisError

from router.clock import Clock
from router.domain import AgentState
from router.metrics import StateGauges
from router.settings import AcdSettings
from router.store import RedisStateStore
from router.store.connect import open_redis
from workers.runtime import ProcessEndpoints, wait_or_stop

logger = logging.getLogger(__name__)

AGENT_STATES = [state.value for state in AgentState]


class StateCollector:
    def __init__(self, store: RedisStateStore, gauges: StateGauges, queues: list[str], clock: Clock) -> None:
        self.store = store
        self.gauges = gauges
        self.queues = queues
        self.clock = clock
        self.owner = f"collector-{uuid.uuid4().hex[:8]}"
        self.leader = False

    async def collect_once(self, interval_s: float) -> None:
        self.leader = await self.store.hold_lease("collector_lease", self.owner, interval_s * 3)
        if not self.leader:
            self._clear()
            return
        summary = await self.store.state_summary()
        now = self.clock.now()
        for queue in sorted(set(self.queues) | set(summary.waiting)):
            self.gauges.waiting.labels(queue).set(summary.waiting.get(queue, 0))
            oldest = summary.oldest_entered_at.get(queue)
            self.gauges.oldest_wait.labels(queue).set(max(0.0, now - oldest) if oldest else 0.0)
        for state in sorted(set(AGENT_STATES) | set(summary.agents)):
            self.gauges.agents.labels(state).set(summary.agents.get(state, 0))

    def _clear(self) -> None:
        for gauge in (self.gauges.waiting, self.gauges.oldest_wait, self.gauges.agents):
            gauge.clear()

    async def run(self, stop: asyncio.Event, interval_s: float = 1.0) -> None:
        while True:
            try:
                await self.collect_once(interval_s)
            except (RedisError, OSError) as exc:
                logger.warning("state collection skipped: %s", exc)
            if await wait_or_stop(stop, interval_s):
                return


async def run_collector(settings: AcdSettings, clock: Clock, stop: asyncio.Event) -> None:
    """The `acd collect` process."""
    registry = CollectorRegistry()
    redis = await open_redis(settings.redis)
    collector = StateCollector(
        RedisStateStore(redis, settings.site), StateGauges(registry), [q.name for q in settings.queues], clock
    )
    endpoints = ProcessEndpoints(settings.http, registry, ready=lambda: True)
    await endpoints.start()
    try:
        await collector.run(stop)
    finally:
        await endpoints.stop()
        await redis.aclose()
