"""Time-driven work and recovery: wrap-ups ending, offers expiring, requirements relaxing,
overflows falling due, resync listings closing what ended unseen, operator nudges; and the
leases that let one process at a time do such work."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, ClassVar, cast

from router.domain import Requirements
from router.store.base import RedisSiteStore
from router.store.codec import optional_arg, record_requirements_arg
from router.store.errors import translates_redis_errors
from router.store.params import ResyncGap
from router.store.replies import ClosedCall, LeaseGrant, ResyncListing, WrapUpEnded, timers_in


@translates_redis_errors
class RedisLeaseStore(RedisSiteStore):
    """Named leases: one holder at a time (the active ingest, the timer runner, the state
    collector); router/lease.py keeps one held."""

    SCRIPTS: ClassVar[tuple[str, ...]] = ("lease", "lease_release")

    async def hold_lease(self, name: str, owner: str, ttl_s: float) -> bool:
        """Take or keep the lease ``name`` for ``owner``; False while someone else holds it."""
        return bool((await self.fenced_lease(name, owner, ttl_s)).token)

    async def fenced_lease(self, name: str, owner: str, ttl_s: float) -> LeaseGrant:
        """Take or keep the lease ``name`` for ``owner``: its fencing token (raised each time
        the lease is taken), or 0 while someone else holds it."""
        return LeaseGrant.parse(await self._run("lease", name, owner, int(ttl_s * 1000)))

    async def release_lease(self, name: str, owner: str) -> bool:
        """Give the lease up if ``owner`` holds it (a clean stop: no wait for the TTL)."""
        return bool(await self._run("lease_release", name, owner))


@translates_redis_errors
class RedisTimerStore(RedisLeaseStore):
    """What falls due with time, and recovery after an AMI gap; run under the timer lease."""

    SCRIPTS: ClassVar[tuple[str, ...]] = ("timers", "resync_close", "call_relax")

    async def run_timers(self, now: float, limit: int = 500) -> tuple[list[WrapUpEnded], list[str]]:
        """Finish due wrap-ups and requeue expired offers: (wrap-ups ended, calls requeued)."""
        return timers_in(await self._run("timers", now, limit, self.days.window(now)))

    async def take_nudges(self, limit: int = 500) -> list[dict[str, Any]]:
        """Agents changed by the operator API since the last tick (see _lib.lua nudge)."""
        raw = cast(list[str] | None, await self.redis.lpop(self.keys.nudges, limit))
        return [json.loads(item) for item in raw or []]

    async def relax_due(self, now: float, limit: int = 500) -> list[str]:
        found = await self.redis.zrangebyscore(self.keys.relax_due, "-inf", now, start=0, num=limit)
        return [str(call_id) for call_id in found]

    async def set_relax_due(
        self, call_id: str, due: float | None, *, requirements: Requirements | None = None
    ) -> None:
        """When the call's requirements relax next; with ``requirements``, also those in force
        now (a relaxation: the call's record keeps them), in the same round trip."""
        if requirements is not None:
            await self._run("call_relax", call_id, optional_arg(due), record_requirements_arg(requirements))
        elif due is None:
            await self.redis.zrem(self.keys.relax_due, call_id)
        else:
            await self.redis.zadd(self.keys.relax_due, {call_id: due})

    async def overflow_due(self, now: float, limit: int = 500) -> list[str]:
        found = await self.redis.zrangebyscore(self.keys.overflow_due, "-inf", now, start=0, num=limit)
        return [str(call_id) for call_id in found]

    async def schedule_resync(self, listing: ResyncListing, due: float) -> None:
        """Remember a resync listing, to close what it misses once ``due`` (again, when the
        routing group had not caught up with it: router.catchup)."""
        await self.redis.zadd(self.keys.resync_due, {listing.dump(): due})

    async def due_resyncs(self, now: float) -> list[ResyncListing]:
        """Resync listings whose grace period is over (each taken by exactly one caller)."""
        taken = []
        payloads = cast(list[str], await self.redis.zrangebyscore(self.keys.resync_due, "-inf", now))
        for payload in payloads:
            if await self.redis.zrem(self.keys.resync_due, payload):
                taken.append(ResyncListing.parse(payload))
        return taken

    async def resync_close(
        self, snapshot_at: float, live_call_ids: Iterable[str], *, gap: ResyncGap | None = None
    ) -> list[ClosedCall]:
        """Close open calls the snapshot no longer lists (they ended while AMI was down).

        They end at ``gap.link_lost_at`` when known (the last moment they are known to have
        existed; the snapshot time overstated waits by the whole gap), and a waiting call
        ends ``pbx_restart`` rather than abandoned when Asterisk's restart opened the gap.
        """
        ended_at = "" if gap is None or gap.link_lost_at is None else gap.link_lost_at
        cut = "1" if gap is not None and gap.pbx_restart else "0"
        live = json.dumps(sorted(live_call_ids))
        days = self.days.window(snapshot_at)
        return ClosedCall.parse_all(await self._run("resync_close", snapshot_at, live, ended_at, cut, days))
