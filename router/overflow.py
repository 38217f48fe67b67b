"""Overflow: a queue sends its calls elsewhere after a wait limit, or when nobody who
could answer them is logged in — to another queue, or out of the ACD to a dialplan target.

To another queue, the call is a new entry there (that queue's requirements, priority,
service-level threshold and relax steps apply from the moment it moves) and the caller
simply keeps waiting. To a target, the call's ACD life ends (state ``overflowed``) and the
dispatcher redirects the caller to ``context,exten,priority`` (voicemail, a callback IVR).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Protocol

from router.commands import OverflowCommand
from router.context import RoutingContext
from router.domain import QueueConfig, Requirements, WaitingCall
from router.matching import Matcher
from router.policy import requirements_in_force
from router.store.params import OverflowMove
from router.store.replies import Overflowed

logger = logging.getLogger(__name__)


def first_due(queue: QueueConfig, entered_at: float) -> float | None:
    """When a call entering ``queue`` at ``entered_at`` overflows by wait limit (None: never)."""
    if queue.overflow is None or queue.overflow.after_s is None:
        return None
    return entered_at + queue.overflow.after_s


class OverflowStore(Protocol):
    """What overflow reads and writes (router.store.RedisRoutingStore has it)."""

    async def call(self, call_id: str) -> dict[str, str]: ...

    async def waiting_call(self, call_id: str) -> WaitingCall | None: ...

    async def waiting_calls(self, start: int = 0, count: int = 100) -> list[WaitingCall]: ...

    async def any_logged_in(self, requirements: Requirements) -> bool: ...

    async def overflow(self, call_id: str, at: float, from_queue: str, move: OverflowMove | None) -> Overflowed: ...


class Overflows:
    """Carries out the queues' overflow rules."""

    def __init__(self, context: RoutingContext, store: OverflowStore, matcher: Matcher) -> None:
        self.context = context
        self.store = store
        self.matcher = matcher

    async def nobody_to_answer(self, queue: QueueConfig, call_id: str) -> bool:
        """True (and the call overflowed) when the queue overflows on no qualified agent logged in."""
        if queue.overflow is None or not queue.overflow.when_no_agents:
            return False
        call = await self.store.waiting_call(call_id)
        if call is None:
            return False
        if await self.store.any_logged_in(requirements_in_force(call, queue, self.context.clock.now())):
            return False
        return await self.overflow(call_id, queue, "no qualified agent logged in")

    async def run_due(self, call_ids: Iterable[str]) -> None:
        """Overflow these calls, whose wait limit has passed (the timer store lists them)."""
        for call_id in call_ids:
            call = await self.store.call(call_id)
            await self.overflow(call_id, self.context.config.queue(call.get("queue", "")), "wait limit reached")

    async def check_unstaffed(self) -> None:
        """Waiting calls of queues that overflow when nobody qualified is logged in."""
        queues = [q for q in self.context.config.queues.values() if q.overflow and q.overflow.when_no_agents]
        if not queues:
            return
        names = {q.name for q in queues}
        for call in await self.store.waiting_calls(0, 10_000):
            if call.queue in names:
                await self.nobody_to_answer(self.context.config.queue(call.queue), call.call_id)

    async def overflow(self, call_id: str, queue: QueueConfig, why: str) -> bool:
        """Move the call as ``queue``'s overflow rule says; True when it moved."""
        rule = queue.overflow
        if rule is None:
            return False
        now = self.context.clock.now()
        target_queue = self.context.config.queues.get(rule.to_queue or "")
        move = self._move_to(target_queue, now) if target_queue else None
        outcome = await self.store.overflow(call_id, now, queue.name, move)
        if outcome.status not in ("queued", "target"):
            return False
        self.context.metrics.overflowed.labels(queue.name).inc()
        logger.info(
            "call %s overflowed from %s (%s) to %s", call_id, queue.name, why, rule.to_queue or rule.to_target
        )
        if target_queue is not None:
            self.context.metrics.offered.labels(target_queue.name).inc()
            started = self.context.clock.now()
            if not await self.nobody_to_answer(target_queue, call_id):
                await self.matcher.match_call_id(call_id, started, trigger="overflow")
        else:
            await self._send_out(call_id, outcome.channel, queue, rule.to_target or "", now)
        return True

    def _move_to(self, queue: QueueConfig, now: float) -> OverflowMove:
        next_relax = queue.next_relax_after(0.0)
        return OverflowMove(
            queue=queue.name,
            priority=queue.priority,
            sl_threshold=queue.service_level.threshold_s,
            wrapup_s=queue.wrapup_s,
            relax_due=None if next_relax is None else now + next_relax,
            overflow_due=first_due(queue, now),
            requirements_in_force=queue.requirements_at(0.0),
            qa=queue.qa,
        )

    async def _send_out(
        self, call_id: str, channel: str, queue: QueueConfig, target: str, now: float
    ) -> None:
        context, exten, priority = target.split(",")
        command = OverflowCommand(call_id, channel, queue.name, context, exten, priority, now)
        await self.context.sink.overflow(command)
