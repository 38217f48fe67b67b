"""The site's record outbox (docs/records.md): what the relay reads, acknowledges and takes over.

The Lua scripts append records to the stream ``acd:{site}:outbox`` in the transitions that
make them. Relays read it through one consumer group (``relay``): each entry goes to one
relay, which publishes it and then acknowledges *and deletes* it in one MULTI, so the
stream holds only records not published yet (no length cap could tell those apart on
Redis before 8.2). Entries a relay read and never acknowledged (it died) stay pending in
the group until another relay claims them (XAUTOCLAIM, after an idle time).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from router.store.errors import translates_redis_errors
from router.store.keys import Keys

GROUP = "relay"


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One outbox entry: its stream id and its fields (``t``: the record kind)."""

    entry_id: str
    fields: dict[str, str]


def _entries(raw: Any) -> list[OutboxEntry]:
    """(id, fields) pairs as redis-py parses a stream's entries."""
    return [OutboxEntry(str(pair[0]), dict(pair[1] or {})) for pair in raw or () if pair[0]]


@translates_redis_errors
class RedisOutboxStore:
    """The relay's side of a site's outbox."""

    def __init__(self, redis: Redis, site: str) -> None:
        self.redis = redis
        self.keys = Keys(site)
        self.key = self.keys.outbox

    async def ensure_group(self) -> None:
        """Create the relay group (and the stream) unless they exist: from the first entry on."""
        try:
            await self.redis.xgroup_create(self.key, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read(self, consumer: str, count: int, block_ms: int | None) -> list[OutboxEntry]:
        """Entries no relay has read yet, now pending on ``consumer`` (waits up to ``block_ms``;
        None: answers at once)."""
        return await self._read_group(consumer, ">", count, block_ms)

    async def pending(self, consumer: str, count: int) -> list[OutboxEntry]:
        """Entries ``consumer`` read and has not acknowledged, oldest first."""
        return await self._read_group(consumer, "0", count, None)

    async def _read_group(
        self, consumer: str, start: str, count: int, block_ms: int | None
    ) -> list[OutboxEntry]:
        try:
            reply = await self.redis.xreadgroup(
                GROUP, consumer, {self.key: start}, count=count, block=block_ms
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            # Redis lost the stream (a restart without persistence): start over.
            await self.ensure_group()
            return []
        streams = cast(list[Any], reply or [])  # [[stream, entries]]: one stream asked for
        return [entry for stream in streams for entry in _entries(stream[1])]

    async def claim(self, consumer: str, min_idle_ms: int, count: int) -> list[OutboxEntry]:
        """Take over up to ``count`` entries pending on any relay for ``min_idle_ms`` or more."""
        try:
            reply = await self.redis.xautoclaim(self.key, GROUP, consumer, min_idle_ms, "0-0", count=count)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await self.ensure_group()
            return []
        return _entries(reply[1])

    async def ack(self, entry_ids: Sequence[str]) -> None:
        """The entries are published: acknowledge and delete them, atomically."""
        if not entry_ids:
            return
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xack(self.key, GROUP, *entry_ids)
            pipe.xdel(self.key, *entry_ids)
            await pipe.execute()

    async def leave(self, consumer: str) -> bool:
        """Remove ``consumer`` from the group, unless entries are pending on it (deleting a
        consumer drops its pending entries from the group, and nobody would claim them).
        A relay stopping cleanly leaves; a killed one's name stays, with nothing pending
        once its entries were claimed."""
        try:
            if await self.redis.xpending_range(self.key, GROUP, "-", "+", 1, consumername=consumer):
                return False
            await self.redis.xgroup_delconsumer(self.key, GROUP, consumer)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
        return True

    async def backlog(self) -> int:
        """Records not published yet (pending or never read)."""
        return int(await self.redis.xlen(self.key))
