"""Callbacks that keep the caller's place (router/callback.py): the request, the attempts'
steps, the waits between attempts, and what the API and the collector read of them."""

from __future__ import annotations

from typing import ClassVar

from router.domain import CallbackPolicy
from router.store.base import RedisSiteStore
from router.store.codec import flag_arg, texts
from router.store.errors import translates_redis_errors
from router.store.params import Position
from router.store.replies import CallbackStep, StateChange, WaitingCallback

STEPS = ("answered1", "answered2", "failed1", "failed2", "ended")
LISTED_FIELDS = (
    "state",
    "queue",
    "cb_num",
    "caller_name",
    "entered_at",
    "cb_req_at",
    "cb_attempts",
    "cb_max",
    "agent",
)


@translates_redis_errors
class RedisCallbackStore(RedisSiteStore):
    """The callback scripts; the engine's callback flow and the API use it."""

    SCRIPTS: ClassVar[tuple[str, ...]] = ("callback_request", "callback_step", "callback_due")

    @classmethod
    def beside(cls, store: RedisSiteStore) -> RedisCallbackStore:
        """A callback store of the same site, Redis and time zone as ``store``."""
        return cls(store.redis, store.keys.site, timezone=store.days.timezone)

    async def request(
        self, call_id: str, number: str, at: float, pos: Position, policy: CallbackPolicy
    ) -> StateChange:
        """``requested`` (state: the queue), or ``ignored`` with the call's state."""
        args = (
            flag_arg(policy.agent_first),
            policy.attempts,
            policy.retry_after_s,
            flag_arg(policy.sl_from_entry),
        )
        days = self.days.window(at)
        return StateChange.parse(
            await self._run("callback_request", call_id, number, at, *pos.args(), days, *args)
        )

    async def step(
        self,
        call_id: str,
        offer_id: str,
        step: str,
        at: float,
        pos: Position,
        *,
        auto_pause: bool,
        reason: str,
    ) -> CallbackStep:
        if step not in STEPS:
            raise ValueError(f"unknown callback step {step!r}, expected one of {STEPS}")
        days = self.days.window(at)
        flag = flag_arg(auto_pause)
        raw = await self._run("callback_step", call_id, offer_id, step, at, *pos.args(), days, flag, reason)
        return CallbackStep.parse(raw)

    async def due(self, now: float, limit: int = 500) -> list[str]:
        """Calls whose wait between attempts is over, back in line now."""
        return [str(call_id) for call_id in await self._run("callback_due", now, limit)]

    async def queue_of(self, call_id: str) -> str:
        return str(await self.redis.hget(self.keys.call(call_id), "queue") or "")

    async def waiting_callbacks(self) -> list[WaitingCallback]:
        """Every open call whose caller asked to be called back, oldest entry first."""
        call_ids = sorted(texts(await self.redis.smembers(self.keys.callbacks)))
        async with self.redis.pipeline(transaction=False) as pipe:
            for call_id in call_ids:
                pipe.hmget(self.keys.call(call_id), LISTED_FIELDS)
            rows = await pipe.execute()
        listed = [
            found
            for call_id, row in zip(call_ids, rows, strict=True)
            if (found := WaitingCallback.parse(call_id, row))
        ]
        return sorted(listed, key=lambda callback: (callback.entered_at, callback.call_id))

    async def waiting_by_queue(self) -> dict[str, int]:
        """How many callers wait to be called back, per queue (in line or between attempts)."""
        counts: dict[str, int] = {}
        for callback in await self.waiting_callbacks():
            counts[callback.queue] = counts.get(callback.queue, 0) + 1
        return counts
