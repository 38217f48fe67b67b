"""Site-wide figures for the state collector and the API: read-only, never decides anything."""

from __future__ import annotations

from typing import ClassVar, cast

from router.store.base import RedisSiteStore
from router.store.errors import translates_redis_errors
from router.store.replies import CollectorSummary, StateSummary


@translates_redis_errors
class RedisSummaryStore(RedisSiteStore):
    """Calls waiting and agents by state, each read in one pass; a queue's counters."""

    SCRIPTS: ClassVar[tuple[str, ...]] = ("state_summary", "collector_summary")

    async def state_summary(self) -> StateSummary:
        """Calls waiting and oldest entry time per queue, agents per state."""
        return StateSummary.parse(await self._run("state_summary"))

    async def collector_summary(self) -> CollectorSummary:
        """What the state collector exports, read in one pass (read-only)."""
        return CollectorSummary.parse(await self._run("collector_summary"))

    async def queue_stats(self, queue: str) -> dict[str, float]:
        raw = cast(dict[str, str], await self.redis.hgetall(self.keys.stats(queue)))
        return {name: float(value) for name, value in raw.items()}
