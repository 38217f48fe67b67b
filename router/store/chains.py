"""Where each key's envelope chain stands, in Redis (the ``ChainStore`` of router.sequencing)."""

from __future__ import annotations

from collections.abc import Iterable

from redis.asyncio import Redis

from router.sequencing import Link
from router.store.errors import translates_redis_errors
from router.store.keys import Keys
from router.store.scripts import LuaScripts

CHAIN_TTL_S = 7 * 86400  # a key silent for longer starts a fresh chain (nothing to wait for)


@translates_redis_errors
class RedisChainStore:
    """Each key's chain position, advanced atomically by one script."""

    def __init__(self, redis: Redis, site: str, ttl_s: float = CHAIN_TTL_S) -> None:
        self.redis = redis
        self.keys = Keys(site)
        self.ttl_ms = int(ttl_s * 1000)
        self._scripts = LuaScripts(redis, self.keys, ("chain_advance",))

    async def positions(self, keys: Iterable[str]) -> dict[str, Link]:
        wanted = list(keys)
        values = await self.redis.mget([self.keys.chain(key) for key in wanted]) if wanted else []
        found = {}
        for key, value in zip(wanted, values, strict=True):
            if value:
                session, _, seq = str(value).partition(":")
                found[key] = (int(session), int(seq))
        return found

    async def advance(self, links: dict[str, Link]) -> None:
        args: list[str | int] = []
        for key, (session, seq) in links.items():
            args += [key, session, seq]
        if args:
            await self._scripts.run("chain_advance", self.ttl_ms, *args)
