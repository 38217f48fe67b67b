"""Supervisor views, as JSON documents: queues, agents by state, the wallboard.

Waiting calls and oldest wait come from the same state summary the collector exports. The
queues' counts (offered, answered, abandoned, service level with each queue's configured
formula, ASA) are today's: since midnight in the site's time zone, from the per-day
statistics the routing scripts keep (router/store/lua/_lib.lua, ``stat``); every document
says which day (``day``, ``since``, ``timezone``). Prometheus' counters stay all-time.
"""

from __future__ import annotations

from typing import Any

from router import kpi
from router.clock import Clock
from router.domain import AgentState, QueueConfig
from router.store import RedisCallbackStore, RedisSummaryStore
from router.store.admin import AdminStore, AgentView, CallView
from router.store.schedule import RedisScheduleStore
from workers.api.schedule import schedule_json

# Every AgentState, in the order a wallboard shows them.
AGENT_ACTIVITIES = tuple(
    state.value
    for state in (
        AgentState.AVAILABLE,
        AgentState.ON_CALL,
        AgentState.RESERVED,
        AgentState.WRAP_UP,
        AgentState.PAUSED,
        AgentState.LOGGED_OUT,
    )
)


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


class Views:
    """Reads Redis for the API's GET endpoints and the live feed."""

    def __init__(
        self,
        store: RedisSummaryStore,
        admin: AdminStore,
        queues: dict[str, QueueConfig],
        clock: Clock,
        schedule: RedisScheduleStore | None = None,
        callbacks: RedisCallbackStore | None = None,
    ) -> None:
        self.store = store
        self.callbacks = callbacks or RedisCallbackStore.beside(store)
        self.admin = admin
        self.queues = queues
        self.clock = clock
        self.schedule = schedule or RedisScheduleStore(store.redis, store.keys.site)

    def today(self) -> dict[str, Any]:
        """Which day the queues' figures cover: its label, when it began, the time zone."""
        day = self.store.days.day(self.clock.now())
        return {"day": day.label, "since": day.start, "timezone": self.store.days.timezone}

    async def queue_summaries(self, day: str | None = None) -> list[dict[str, Any]]:
        """Every queue now, with the figures of ``day`` (default: today)."""
        summary = await self.store.state_summary()
        now = self.clock.now()
        stats = await self.store.day_stats(self.queues, day or self.store.days.day(now).label)
        overrides = await self.schedule.overrides()
        callbacks = await self.callbacks.waiting_by_queue()
        out = []
        for name, queue in self.queues.items():
            figures = stats.get(name, {})
            oldest = summary.oldest_entered_at.get(name)
            target = queue.service_level
            level = kpi.service_level(figures, target.formula)
            out.append(
                {
                    "name": name,
                    "waiting": summary.waiting.get(name, 0),
                    "oldest_wait_s": _round(max(0.0, now - oldest) if oldest else 0.0, 1),
                    "service_level": _round(level, 4),
                    "service_level_target": target.target,
                    "service_level_threshold_s": target.threshold_s,
                    "service_level_formula": target.formula,
                    "service_level_met": None if level is None else level >= target.target,
                    "offered": int(figures.get("offered", 0)),
                    "answered": int(figures.get("answered", 0)),
                    "abandoned": int(figures.get("abandoned", 0)),
                    "asa_s": _round(kpi.asa_seconds(figures), 1),
                    "abandon_rate": _round(kpi.abandon_rate(figures), 4),
                    "closed": int(figures.get("closed", 0)),
                    "schedule": schedule_json(queue, overrides.get(name), now),
                    # Callbacks (router/callback.py): waiting now (also in ``waiting``), today's counts.
                    "callbacks_waiting": callbacks.get(name, 0),
                    "callbacks_requested": int(figures.get("cb_requested", 0)),
                    "callbacks_answered": int(figures.get("cb_answered", 0)),
                    "callbacks_failed": int(figures.get("cb_failed", 0)),
                }
            )
        return out

    async def agents_by_activity(self) -> dict[str, int]:
        summary = await self.store.state_summary()
        return {activity: summary.agents.get(activity, 0) for activity in AGENT_ACTIVITIES}

    async def wallboard(self) -> dict[str, Any]:
        today = self.today()
        return {
            "at": round(self.clock.now(), 3),
            **today,
            "queues": await self.queue_summaries(today["day"]),
            "agents": await self.agents_by_activity(),
        }

    async def agents(self, activity: str | None = None) -> list[AgentView]:
        agents = await self.admin.agents()
        return [a for a in agents if activity is None or activity in (a.activity, a.state)]

    async def calls(self, queue: str | None = None) -> list[CallView]:
        calls = await self.admin.queued_calls()
        return [call for call in calls if queue is None or call.queue == queue]

    async def callbacks_json(self, queue: str | None = None) -> list[dict[str, Any]]:
        """Callers waiting to be called back, oldest entry first (docs/api.md)."""
        now = self.clock.now()
        return [
            {
                "call_id": c.call_id,
                "queue": c.queue,
                "state": c.state,
                "number": c.number,
                "caller_name": c.caller_name,
                "entered_at": c.entered_at,
                "requested_at": c.requested_at,
                "waited_s": round(max(0.0, now - c.entered_at), 1),
                "attempts": c.attempts,
                "max_attempts": c.max_attempts,
                "agent_id": c.agent_id,
            }
            for c in await self.callbacks.waiting_callbacks()
            if queue is None or c.queue == queue
        ]

    def calls_json(self, calls: list[CallView]) -> list[dict[str, Any]]:
        now = self.clock.now()
        return [call.as_json(now) for call in calls]
