"""Business hours in Redis: supervisors' schedule overrides, which every routing worker and
the API read, and the turning away of a caller who arrives while its queue is closed."""

from __future__ import annotations

import json
import logging
from typing import ClassVar, cast

from router.schedule import ManualOverride
from router.store.base import RedisSiteStore
from router.store.errors import translates_redis_errors
from router.store.params import Position
from router.store.replies import Overflowed, TurnedAway

logger = logging.getLogger(__name__)


def override_json(override: ManualOverride) -> str:
    return json.dumps(
        {"state": override.state, "until": override.until, "reason": override.reason, "set_at": override.set_at}
    )


def override_from_json(queue: str, text: str) -> ManualOverride | None:
    """An override as stored; None (logged) for a value no API wrote."""
    try:
        data = json.loads(text)
        state, until = data["state"], data.get("until")
        if state not in ("open", "closed"):
            raise ValueError(f"state {state!r}")
        return ManualOverride(
            state, None if until is None else float(until), str(data.get("reason", "")), float(data["set_at"])
        )
    except (ValueError, KeyError, TypeError) as exc:
        logger.error("schedule override of queue %s ignored: not an override (%s): %r", queue, exc, text[:200])
        return None


@translates_redis_errors
class RedisScheduleStore(RedisSiteStore):
    """Schedule overrides by queue, and closed arrivals (``call_closed.lua``)."""

    SCRIPTS: ClassVar[tuple[str, ...]] = ("call_closed", "call_close_out")

    async def set_override(self, queue: str, override: ManualOverride) -> None:
        await self.redis.hset(self.keys.schedule_overrides, queue, override_json(override))

    async def clear_override(self, queue: str) -> bool:
        """Remove the queue's override; False when it had none."""
        return bool(await self.redis.hdel(self.keys.schedule_overrides, queue))

    async def overrides(self) -> dict[str, ManualOverride]:
        """Every queue's override as stored (expired ones included: ``active`` says)."""
        raw = cast(dict[str, str], await self.redis.hgetall(self.keys.schedule_overrides))
        found = {queue: override_from_json(queue, text) for queue, text in raw.items()}
        return {queue: override for queue, override in found.items() if override is not None}

    async def turn_away(
        self,
        call_id: str,
        queue: str,
        priority: int,
        channel: str,
        at: float,
        pos: Position,
        *,
        sl_threshold: float,
        caller: tuple[str, str] = ("", ""),
    ) -> TurnedAway:
        """End a caller who arrived while ``queue`` is closed (outcome ``closed``)."""
        number, name = caller
        days = self.days.window(at)
        raw = await self._run(
            "call_closed", call_id, queue, priority, channel, at, *pos.args(), sl_threshold, number, name, days
        )
        return TurnedAway.parse(raw)

    async def close_out(self, call_id: str, queue: str, at: float) -> Overflowed:
        """Send a waiting call of a queue that has closed to its closed target: ``target``
        (with the channel), or ``skipped`` (being offered, or gone: the next tick looks again)."""
        return Overflowed.parse(await self._run("call_close_out", call_id, queue, at, self.days.window(at)))

    async def waiting_in(self, queue: str, limit: int = 500) -> list[str]:
        """The first ``limit`` calls in ``queue``'s line."""
        return [str(call) for call in await self.redis.zrange(self.keys.waiting_in(queue), 0, limit - 1)]
