"""What the lab reads after a run (load-test reports, chaos checks): plain reads, no scripts."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, cast

from router.store.base import RedisSiteStore
from router.store.errors import translates_redis_errors


@translates_redis_errors
class RedisReportStore(RedisSiteStore):
    """Every call's state, every routing decision, the agents and calls a site knows."""

    async def call_states(self, call_ids: Sequence[str]) -> dict[str, str]:
        """Each call's state ('' for a call the router never heard of)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for call_id in call_ids:
                pipe.hget(self.keys.call(call_id), "state")
            states = await pipe.execute()
        return {call_id: state or "" for call_id, state in zip(call_ids, states, strict=True)}

    async def decisions(self, count: int = 100_000) -> list[dict[str, Any]]:
        entries = cast(
            list[tuple[str, dict[str, str]]], await self.redis.xrange(self.keys.decisions, count=count)
        )
        return [json.loads(fields["d"]) for _, fields in entries]

    async def agent_ids(self) -> list[str]:
        return sorted(cast(set[str], await self.redis.smembers(self.keys.agents)))

    async def open_call_ids(self) -> list[str]:
        return sorted(cast(set[str], await self.redis.smembers(self.keys.open_calls)))
