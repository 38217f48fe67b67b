"""Callbacks in the routing engine: the request, the steps of each attempt, the waits
between attempts (router/callback.py has the pure part, router/store/callbacks.py the
scripts). The reservation is the ordinary one (``reserve.lua``); the matcher sends a
callback command instead of an offer for a call whose caller asked to be called back.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from router.context import RoutingContext
from router.events import CallbackEnded, CallbackLegAnswered, CallbackLegFailed, CallbackRequested
from router.matching import Matcher
from router.store.callbacks import RedisCallbackStore
from router.store.params import Position
from router.store.replies import CallbackStep

logger = logging.getLogger(__name__)

Handler = Callable[[Any, Position, float], Awaitable[None]]
# Statuses of an attempt that ended without a conversation (callback_step.lua, offer_failed.lua).
ATTEMPT_ENDED = frozenset({"retry", "callback_failed"})


class CallbackFlow:
    """Applies callback events and the retry timer; stateless, all state is in Redis."""

    def __init__(
        self,
        context: RoutingContext,
        store: RedisCallbackStore,
        matcher: Matcher,
        pause_in_asterisk: Callable[[str], Awaitable[None]],
    ) -> None:
        self.context = context
        self.store = store
        self.matcher = matcher
        self.pause_in_asterisk = pause_in_asterisk  # the engine's, as after any ring-no-answer

    def handlers(self) -> dict[type, Handler]:
        return {
            CallbackRequested: self._on_requested,
            CallbackLegAnswered: self._on_leg_answered,
            CallbackLegFailed: self._on_leg_failed,
            CallbackEnded: self._on_ended,
        }

    async def _on_requested(self, event: CallbackRequested, pos: Position, started: float) -> None:
        queue_name = await self.store.queue_of(event.call_id)
        queue = self.context.config.queues.get(queue_name)
        if queue is None or queue.callback is None:
            logger.warning(
                "call %s asked for a callback but queue %r offers none (add callback: to the queue, "
                "or set ACD_CALLBACK_AFTER only for queues that have it); it counts as abandoned",
                event.call_id,
                queue_name,
            )
            return
        if not event.number:
            logger.warning("call %s asked for a callback without a number that can be dialled", event.call_id)
            return
        requested = await self.store.request(event.call_id, event.number, event.at, pos, queue.callback)
        if requested.status == "requested":
            self.context.metrics.callbacks_requested.labels(queue.name).inc()
            logger.info("call %s: callback requested; it keeps its place in %s", event.call_id, queue.name)

    async def _on_leg_answered(self, event: CallbackLegAnswered, pos: Position, started: float) -> None:
        await self._step(event.call_id, event.offer_id, f"answered{event.leg}", event.at, pos, started)

    async def _on_leg_failed(self, event: CallbackLegFailed, pos: Position, started: float) -> None:
        logger.info("callback of call %s: leg %d not answered (%s)", event.call_id, event.leg, event.reason)
        await self._step(event.call_id, event.offer_id, f"failed{event.leg}", event.at, pos, started)

    async def _on_ended(self, event: CallbackEnded, pos: Position, started: float) -> None:
        await self._step(event.call_id, event.offer_id, "ended", event.at, pos, started)

    async def _step(
        self, call_id: str, offer_id: str, step: str, at: float, pos: Position, started: float
    ) -> None:
        rna = self.context.settings.ring_no_answer
        done = await self.store.step(
            call_id, offer_id, step, at, pos, auto_pause=rna.auto_pause, reason=rna.reason
        )
        self._count(done, call_id)
        if done.paused:
            await self.pause_in_asterisk(done.agent_id)
        if done.status == "rejected":
            await self.matcher.match_call_id(call_id, started)
        if done.agent_id and done.free_agent is not None:
            await self.matcher.match_agent(done.agent_id, started, known=done.free_agent)

    def _count(self, done: CallbackStep, call_id: str) -> None:
        metrics, queue = self.context.metrics, done.queue
        if done.status == "answered":
            metrics.answered.labels(queue).inc()
            metrics.answer_wait.labels(queue).observe(done.seconds)
            metrics.callback_attempts.labels(queue, "answered").inc()
            logger.info("callback of call %s answered after %.1fs", call_id, done.seconds)
        elif done.status == "completed":
            metrics.talk.labels(queue).observe(done.seconds)
            metrics.agent_handling.inc(done.seconds)
        elif done.status == "rejected":
            metrics.callback_attempts.labels(queue, "rejected").inc()
            metrics.declined.labels(queue).inc()
        else:
            self.count_attempt_ended(done.status, queue, call_id)

    def count_attempt_ended(self, status: str, queue: str, call_id: str) -> None:
        """An attempt that came to nothing (also an Originate the PBX refused)."""
        if status not in ATTEMPT_ENDED:
            return
        self.context.metrics.callback_attempts.labels(queue, "unanswered").inc()
        if status == "callback_failed":
            self.context.metrics.callbacks_failed.labels(queue).inc()
            logger.info("callback of call %s failed: its last attempt was not answered", call_id)
        else:
            logger.info("callback of call %s not answered; retried later", call_id)

    async def run_due(self, started: float) -> None:
        """Timer: calls whose wait between attempts is over are back in line; route them."""
        for call_id in await self.store.due(self.context.clock.now()):
            await self.matcher.match_call_id(call_id, started, trigger="callback")
