"""What every store of a site's routing state shares: its keys and its script runner."""

from __future__ import annotations

from typing import Any, ClassVar

from redis.asyncio import Redis

from router.store.errors import translates_redis_errors
from router.store.keys import Keys
from router.store.params import SiteDays
from router.store.scripts import Arg, LuaScripts


@translates_redis_errors
class RedisSiteStore:
    """Base of the stores: ``SCRIPTS`` names the Lua scripts a store runs (next to the
    methods that shape their arguments); a subclass runs its bases' scripts too.

    Stores given the same ``scripts`` runner share its batching: what they ask for while
    the event loop is busy goes to Redis in one round trip (see ``shared_scripts``).
    """

    SCRIPTS: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self, redis: Redis, site: str, *, scripts: LuaScripts | None = None, timezone: str = "UTC"
    ) -> None:
        self.redis = redis
        self.keys = Keys(site)
        # The site's days, for the statistics the scripts also count per day.
        self.days = SiteDays(timezone)
        names = self.script_names()
        if scripts is None:
            scripts = LuaScripts(redis, self.keys, names)
        elif missing := sorted(set(names) - scripts.names):
            raise ValueError(f"{type(self).__name__}: the shared runner lacks scripts {missing}")
        self.scripts = scripts

    @classmethod
    def script_names(cls) -> tuple[str, ...]:
        names: dict[str, None] = {}
        for klass in reversed(cls.__mro__):
            names.update(dict.fromkeys(vars(klass).get("SCRIPTS", ())))
        return tuple(names)

    async def _run(self, name: str, *args: Arg) -> Any:
        return await self.scripts.run(name, *args)


def shared_scripts(redis: Redis, site: str, *stores: type[RedisSiteStore]) -> LuaScripts:
    """One runner for several stores of a site (pass it to each as ``scripts=``)."""
    names: dict[str, None] = {}
    for store in stores:
        names.update(dict.fromkeys(store.script_names()))
    return LuaScripts(redis, Keys(site), names)
