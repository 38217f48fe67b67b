"""The Lua scripts of router/store/lua/, loaded once per client, each with the shared prelude."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from router.store.errors import translates_redis_errors
from router.store.keys import Keys

logger = logging.getLogger(__name__)


def script_text(name: str) -> str:
    """``_lib.lua`` (helpers every script uses) followed by the script itself."""
    package = resources.files("router.store") / "lua"
    return (package / "_lib.lua").read_text() + "\n" + (package / f"{name}.lua").read_text()


@translates_redis_errors
class LuaScripts:
    """Runs a site's scripts by name. Redis keeps them by SHA; after a Redis restart emptied
    its script cache they are sent again on first use (redis-py's Script does that)."""

    def __init__(self, redis: Redis, keys: Keys, names: Iterable[str]) -> None:
        self.keys = keys
        self._scripts: dict[str, AsyncScript] = {
            name: redis.register_script(script_text(name)) for name in names
        }

    async def run(self, name: str, *args: str | int | float) -> Any:
        # The site's anchor key is declared so that Redis Cluster routes to the site's slot.
        result = await self._scripts[name](keys=[self.keys.anchor], args=[self.keys.prefix, *args])
        if isinstance(result, list) and result and result[0] == "duplicate":
            logger.debug("%s: redelivery ignored %s", name, args)
        return result
