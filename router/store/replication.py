"""Has a batch's Redis work reached a replica? Asked before a routing worker commits offsets.

Redis acknowledges a write before its replica has it, so a failover can lose the last
writes the old primary took. A routing worker commits an event's Kafka offset once the
event is applied; an event whose effect was lost would never be read again. The barrier
closes that gap (docs/operations.md, "Redis failover"):

- before the offsets of a batch are committed, one round trip writes a marker and asks
  ``WAIT 1 <ms>``: once the replica has acknowledged the marker, it has every write the
  primary took before it, and the offsets are committed (``REPLICATED``). A replica that
  did not answer in time (``NOT_YET``), or none connected (``NO_REPLICA``: the sentinels
  may still promote a replica that was cut off a moment ago, without those writes), means
  the offsets wait for a later batch; the events go on being applied meanwhile. While no
  replica is connected, the barrier does not wait at all (``WAIT`` would block its whole
  timeout for each batch); a primary that has had no replica in sync since it was first
  seen (``ALONE``: just promoted, say) has none that a failover could promote without its
  writes. Only replicas in sync count: one still copying the data set acknowledges nothing;
- the same round trip reads the primary's replication id, which a promotion changes. A
  different id than at the barrier before (``PRIMARY_CHANGED``) means the batch's writes
  may have gone to a primary that is gone: the worker reads again from the last committed
  offsets, and the watermarks make what did survive a no-op.
"""

from __future__ import annotations

import enum
import logging

from redis.asyncio import Redis

from router.store.errors import translates_redis_errors
from router.store.keys import Keys

logger = logging.getLogger(__name__)


class Settled(enum.Enum):
    REPLICATED = "replicated"
    NO_REPLICA = "no_replica"
    ALONE = "alone"  # no replica since this primary was first seen: none could be promoted
    NOT_YET = "not_yet"
    PRIMARY_CHANGED = "primary_changed"

    @property
    def committable(self) -> bool:
        """Whether the batch's offsets may be committed now."""
        return self is Settled.REPLICATED


def replication_fields(info: str | dict[str, object]) -> tuple[str, int]:
    """(``master_replid``, replicas online) from ``INFO replication``, as text or as redis-py
    parses it. A replica still copying the data set (a primary demoted after a failover,
    say) is not online: it acknowledges nothing until it has all of it."""
    if isinstance(info, dict):
        replicas = [value for key, value in info.items() if _is_replica(key)]
        online = sum(1 for value in replicas if isinstance(value, dict) and value.get("state") == "online")
        return str(info.get("master_replid", "")), online
    fields = dict(line.strip().split(":", 1) for line in info.splitlines() if ":" in line)
    online = sum(1 for key, value in fields.items() if _is_replica(key) and "state=online" in value.split(","))
    return fields.get("master_replid", ""), online


def _is_replica(key: str) -> bool:
    return key.startswith("slave") and key[5:].isdigit()


@translates_redis_errors
class ReplicationBarrier:
    """See the module docstring. One per worker: it remembers the primary it last saw."""

    def __init__(self, redis: Redis, site: str, *, wait_ms: int) -> None:
        self.redis = redis
        self.marker = Keys(site).prefix + "replicated"  # any write would do: WAIT needs one
        self.wait_ms = wait_ms
        self.primary: str | None = None  # master_replid at the last look
        self.replicas = 0  # online (in sync) with it then
        self.had_replica = False  # at any look since it became the primary seen
        self.generation = 0  # primary changes seen: what was decided before one may be lost

    async def start(self) -> None:
        """Note the primary before the first batch, so that a failover during it is seen."""
        await self.changed()

    async def changed(self) -> bool:
        """Whether the primary is another than at the last look (one ``INFO replication``)."""
        return self._look(await self.redis.info("replication"))

    def _look(self, info: str | dict[str, object]) -> bool:
        primary, self.replicas = replication_fields(info)
        before, self.primary = self.primary, primary
        changed = before is not None and primary != before
        self.generation += changed
        self.had_replica = (self.had_replica and not changed) or self.replicas > 0
        return changed

    async def settle(self) -> Settled:
        """One round trip: the marker, ``WAIT`` (while a replica was connected), and the
        primary's replication id and replicas."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(self.marker, "1", ex=60)
            if self.replicas:
                pipe.execute_command("WAIT", 1, self.wait_ms)
            pipe.info("replication")
            answers = await pipe.execute()
        acknowledged = int(answers[1]) if self.replicas else 0
        before = self.primary
        if self._look(answers[-1]):
            logger.warning("Redis primary changed (replication id %s -> %s): a failover", before, self.primary)
            return Settled.PRIMARY_CHANGED
        if acknowledged >= 1:
            return Settled.REPLICATED
        if self.replicas:
            return Settled.NOT_YET
        return Settled.NO_REPLICA if self.had_replica else Settled.ALONE
