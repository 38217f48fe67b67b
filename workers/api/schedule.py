"""Supervisors override a queue's business hours now ("close billing for 30 minutes").

The override is kept in Redis (router/store/schedule.py), where every routing worker reads
it (within a second, router/closing.py); the queue's hours decide again when it expires or
is cleared. Only queues with ``hours`` can be overridden: a queue without them has no
closed target to send callers to.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Literal

from aiohttp import web
from pydantic import ConfigDict, Field

from router.clock import Clock
from router.domain import Frozen, QueueConfig
from router.schedule import ManualOverride, queue_status
from router.store.schedule import RedisScheduleStore
from workers.api.errors import ApiError, read_body

logger = logging.getLogger(__name__)

MAX_OVERRIDE_MINUTES = 7 * 24 * 60


class OverrideBody(Frozen):
    model_config = ConfigDict(strict=True)  # as every body (workers/api/handlers.py, Body)

    state: Literal["open", "closed"]
    minutes: float | None = Field(default=None, gt=0, le=MAX_OVERRIDE_MINUTES)
    reason: str = Field(default="", max_length=200)


def schedule_json(queue: QueueConfig, override: ManualOverride | None, now: float) -> dict[str, Any]:
    """The queue's ``schedule`` as the API shows it: open or closed now, why, until when,
    and the supervisor's override in force (null when none)."""
    active = override if override is not None and override.active(now) else None
    status = queue_status(queue.hours, now, active).as_json()
    status["override"] = None if active is None else {
        "state": active.state,
        "until": active.until,
        "reason": active.reason,
        "set_at": active.set_at,
    }
    return status


class ScheduleHandlers:
    """POST and DELETE /api/v1/queues/{queue}/schedule-override."""

    def __init__(
        self, queues: Callable[[], dict[str, QueueConfig]], store: RedisScheduleStore, clock: Clock
    ) -> None:
        self.queues = queues  # the configured queues now (a reload replaces them)
        self.store = store
        self.clock = clock

    def _queue(self, request: web.Request) -> QueueConfig:
        name = request.match_info["queue"]
        queues = self.queues()
        queue = queues.get(name)
        if queue is None:
            raise ApiError(404, "unknown_queue", f"no queue {name!r} is configured; configured: {sorted(queues)}")
        if queue.hours is None:
            raise ApiError(
                409,
                "no_business_hours",
                f"queue {name!r} has no business hours, so it is always open and has no closed target: "
                f"add 'hours:' with a closed_target to the queue in the configuration (docs/routing.md)",
            )
        return queue

    async def put_override(self, request: web.Request) -> web.Response:
        body = await read_body(request, OverrideBody)
        queue = self._queue(request)
        now = self.clock.now()
        until = None if body.minutes is None else now + body.minutes * 60
        override = ManualOverride(body.state, until, body.reason, now)
        await self.store.set_override(queue.name, override)
        logger.info(
            "queue %s: %s by a supervisor until %s (%s)", queue.name, body.state, until or "cleared", body.reason
        )
        return web.json_response({"queue": queue.name, "schedule": schedule_json(queue, override, now)})

    async def clear_override(self, request: web.Request) -> web.Response:
        queue = self._queue(request)
        cleared = await self.store.clear_override(queue.name)
        if cleared:
            logger.info("queue %s: supervisor override cleared", queue.name)
        now = self.clock.now()
        return web.json_response(
            {"queue": queue.name, "cleared": cleared, "schedule": schedule_json(queue, None, now)}
        )
