"""Business hours in the routing engine: callers who arrive while their queue is closed are
turned away to its closed target (never offered, counted ``closed``), and a queue that
closes with ``on_close: send_to_closed`` sends its waiting callers there too.

Whether a queue is open is router.schedule's (its hours, and a supervisor's override that
the API keeps in Redis). The overrides are read from Redis at most every ``refresh_s``
real seconds per worker, so a supervisor's change takes effect within that time, and a
site whose queues have no hours reads nothing at all.
"""

from __future__ import annotations

import logging
import time

from router.commands import OverflowCommand
from router.context import RoutingContext
from router.domain import QueueConfig
from router.events import CallQueued
from router.schedule import ManualOverride, is_open
from router.store.params import Position
from router.store.schedule import RedisScheduleStore

logger = logging.getLogger(__name__)

OVERRIDES_REFRESH_S = 1.0  # real seconds a worker trusts the overrides it read
CLOSE_OUT_BATCH = 500


class Closing:
    """Carries out the queues' business hours for one routing worker."""

    def __init__(
        self, context: RoutingContext, store: RedisScheduleStore, *, refresh_s: float = OVERRIDES_REFRESH_S
    ) -> None:
        self.context = context
        self.store = store
        self.refresh_s = refresh_s
        self._overrides: dict[str, ManualOverride] = {}
        self._read_at: float | None = None

    async def _override(self, queue: str) -> ManualOverride | None:
        now = time.monotonic()
        if self._read_at is None or now - self._read_at >= self.refresh_s:
            self._overrides = await self.store.overrides()
            self._read_at = now
        return self._overrides.get(queue)

    async def is_open(self, queue: QueueConfig, at: float) -> bool:
        """A queue without hours is always open (it has no closed target to send callers to)."""
        if queue.hours is None:
            return True
        return is_open(queue.hours, at, await self._override(queue.name))

    async def turned_away(self, event: CallQueued, queue: QueueConfig, pos: Position) -> bool:
        """True when the caller arrived while ``queue`` is closed and was sent to its closed
        target (or is a redelivery of such an arrival); False: route it as usual."""
        if queue.hours is None or await self.is_open(queue, event.at):
            return False
        priority = queue.priority if event.priority is None else event.priority
        outcome = await self.store.turn_away(
            event.call_id,
            queue.name,
            priority,
            event.channel,
            event.at,
            pos,
            sl_threshold=queue.service_level.threshold_s,
            caller=(event.caller_number, event.caller_name),
        )
        if outcome.state != "closed":
            return False  # already in the ACD (a resync listing, a caller transferred back): it stays
        if outcome.status == "closed":
            self.context.metrics.closed.labels(queue.name).inc()
            logger.info("call %s arrived while %s is closed", event.call_id, queue.name)
        elif event.resynced:
            return True  # listed again after a reconnect: it was sent away before
        # A redelivered arrival may be one whose Redirect never went out: send it (again).
        await self._send(event.call_id, outcome.channel, queue)
        return True

    async def close_out(self) -> None:
        """Queues that send their waiting callers away when they close, and are closed now."""
        now = self.context.clock.now()
        for queue in self.context.config.queues.values():
            if queue.hours is None or queue.hours.on_close != "send_to_closed":
                continue
            if await self.is_open(queue, now):
                continue
            for call in await self.store.waiting_in(queue.name, CLOSE_OUT_BATCH):
                out = await self.store.close_out(call, queue.name, now)
                if out.status == "target":
                    self.context.metrics.overflowed.labels(queue.name).inc()
                    logger.info("call %s sent to the closed target: %s closed", call, queue.name)
                    await self._send(call, out.channel, queue)

    async def _send(self, call_id: str, channel: str, queue: QueueConfig) -> None:
        assert queue.hours is not None
        context, exten, priority = queue.hours.closed_target.split(",")
        command = OverflowCommand(call_id, channel, queue.name, context, exten, priority, self.context.clock.now())
        await self.context.sink.overflow(command)
