"""Site-wide figures for the state collector and the API: read-only, never decides anything."""

from __future__ import annotations

from collections.abc import Iterable
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
        """A queue's counters since the statistics began (what staffing's windows difference)."""
        raw = cast(dict[str, str], await self.redis.hgetall(self.keys.stats(queue)))
        return {name: float(value) for name, value in raw.items()}

    async def day_stats(self, queues: Iterable[str], day: str) -> dict[str, dict[str, float]]:
        """Each queue's counters of one day (``YYYY-MM-DD`` in the site's time zone, see
        ``self.days``); kept for a few days after it ended (DAY_KEEP_S in _lib.lua)."""
        names = list(queues)
        async with self.redis.pipeline(transaction=False) as pipe:
            for queue in names:
                pipe.hgetall(self.keys.day_stats(day, queue))
            raw = cast(list[dict[str, str]], await pipe.execute())
        return {
            queue: {field: float(value) for field, value in stats.items()}
            for queue, stats in zip(names, raw, strict=True)
        }
