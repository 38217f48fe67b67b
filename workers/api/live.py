"""Live updates for wallboards and agent desktops, as server-sent events.

One poller per API process reads Redis every ``push_interval_s`` while anybody listens
and pushes what changed to every subscriber, so N open wallboards cost one set of reads.
Event kinds:

- ``wallboard``: queues (waiting, oldest wait, service level vs target) and agents by
  state; sent when any figure changes;
- ``agent``: one agent's view, when it changes (``?agent=ID`` follows one agent only);
- ``calls``: the calls whose callers still wait, when the line changes.

A new subscriber gets the full picture from the next poll, which it triggers at once. A
subscriber that cannot keep up (its buffer fills) is closed; the client reconnects (SSE
clients do that by themselves) and starts from a full picture again.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from router.errors import AcdError
from workers.api.views import Views

logger = logging.getLogger(__name__)

TOPICS = frozenset({"wallboard", "agent", "calls"})
BUFFER = 256


@dataclass(frozen=True, slots=True)
class LiveEvent:
    kind: str
    data: dict[str, Any]
    agent_id: str | None = None

    def frame(self, event_id: int) -> bytes:
        payload = json.dumps(self.data, separators=(",", ":"), default=str)
        return f"id: {event_id}\nevent: {self.kind}\ndata: {payload}\n\n".encode()


@dataclass(eq=False)
class Subscription:
    topics: frozenset[str]
    agent_id: str | None = None
    queue: asyncio.Queue[LiveEvent | None] = field(default_factory=lambda: asyncio.Queue(BUFFER))
    fresh: bool = True  # wants the full picture on the next poll
    closed: bool = False
    sent: int = 0

    def wants(self, event: LiveEvent) -> bool:
        if event.kind not in self.topics:
            return False
        return self.agent_id is None or event.agent_id in (None, self.agent_id)

    def push(self, event: LiveEvent) -> None:
        if self.closed or not self.wants(event):
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            logger.warning("live-update subscriber too slow (%d events behind): closing it", BUFFER)
            self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(None)

    async def next(self) -> LiveEvent | None:
        """The next event, or None once closed."""
        return await self.queue.get()


class LiveFeed:
    """Polls Redis while anybody listens; fans changes out to subscribers."""

    def __init__(self, views: Views, interval_s: float) -> None:
        self.views = views
        self.interval_s = interval_s
        self._subscribers: set[Subscription] = set()
        self._wake = asyncio.Event()
        self._wallboard: dict[str, Any] | None = None
        self._agents: dict[str, dict[str, Any]] = {}
        self._calls_key: list[tuple[Any, ...]] | None = None
        self.polls = 0
        self.stopped = False
        self._failing = False

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def subscribe(self, topics: Iterable[str], agent_id: str | None = None) -> Subscription:
        subscription = Subscription(frozenset(topics), agent_id)
        if self.stopped:
            subscription.close()
            return subscription
        self._subscribers.add(subscription)
        self._wake.set()
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscribers.discard(subscription)
        subscription.close()

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop``; then close every subscription so their streams end."""
        try:
            while not stop.is_set():
                if not self._subscribers:
                    await self._idle(stop)
                    continue
                self._wake.clear()
                try:
                    await self.poll()
                    self._failing = False
                except AcdError as exc:
                    if not exc.retriable:
                        raise
                    if not self._failing:  # once per outage, not once per tick
                        logger.warning("live updates: Redis read failed (%s); retrying", exc)
                    self._failing = True
                await self._sleep(stop)
        finally:
            self.stopped = True
            for subscription in list(self._subscribers):
                self.unsubscribe(subscription)

    async def _idle(self, stop: asyncio.Event) -> None:
        self._wallboard, self._agents, self._calls_key = None, {}, None
        await self._wait(stop, None)

    async def _sleep(self, stop: asyncio.Event) -> None:
        """One interval, cut short by a new subscriber (it wants its picture now) or stop."""
        await self._wait(stop, self.interval_s)

    async def _wait(self, stop: asyncio.Event, within_s: float | None) -> None:
        waiters = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait(waiters, timeout=within_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)

    async def poll(self) -> None:
        """Read everything once; push changes, and the full picture to new subscribers."""
        self.polls += 1
        fresh = [s for s in self._subscribers if s.fresh]
        for subscription in fresh:
            subscription.fresh = False
        topics = set().union(*(s.topics for s in self._subscribers)) if self._subscribers else set()
        if "wallboard" in topics:
            self._publish_wallboard(await self.views.wallboard(), fresh)
        if "agent" in topics:
            agents = {agent.agent_id: agent.as_json() for agent in await self.views.agents()}
            self._publish_agents(agents, fresh)
        if "calls" in topics:
            calls = self.views.calls_json(await self.views.calls())
            self._publish_calls(calls, fresh)

    def _broadcast(self, event: LiveEvent, fresh: list[Subscription], changed: bool) -> None:
        targets = self._subscribers if changed else fresh
        for subscription in list(targets):
            subscription.push(event)

    def _publish_wallboard(self, wallboard: dict[str, Any], fresh: list[Subscription]) -> None:
        comparable = {k: v for k, v in wallboard.items() if k != "at"}
        changed = comparable != self._wallboard
        self._wallboard = comparable
        self._broadcast(LiveEvent("wallboard", wallboard), fresh, changed)

    def _publish_agents(self, agents: dict[str, dict[str, Any]], fresh: list[Subscription]) -> None:
        for agent_id, view in agents.items():
            changed = self._agents.get(agent_id) != view
            self._broadcast(LiveEvent("agent", view, agent_id), fresh, changed)
        self._agents = agents

    def _publish_calls(self, calls: list[dict[str, Any]], fresh: list[Subscription]) -> None:
        key = [(c["call_id"], c["state"], c["position"], c["agent_id"], c["priority"]) for c in calls]
        changed = key != self._calls_key
        self._calls_key = key
        at = round(self.views.clock.now(), 3)
        self._broadcast(LiveEvent("calls", {"at": at, "calls": calls}), fresh, changed)
