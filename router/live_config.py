"""The queues and agents a routing worker works with, swappable by a configuration reload."""

from __future__ import annotations

import logging

from router.domain import AgentConfig, QueueConfig, requirements_met

logger = logging.getLogger(__name__)


class LiveConfig:
    """Queues and agents by name, plus the agent for each device; updated in place on reload."""

    def __init__(
        self, queues: dict[str, QueueConfig], agents: dict[str, AgentConfig], unknown_queue: str | None = None
    ) -> None:
        self.queues: dict[str, QueueConfig] = {}
        self.agents: dict[str, AgentConfig] = {}
        self.devices: dict[str, str] = {}
        self.fallback = ""
        self.update(queues, agents, unknown_queue)

    def update(
        self, queues: dict[str, QueueConfig], agents: dict[str, AgentConfig], unknown_queue: str | None = None
    ) -> None:
        if not queues:
            raise ValueError("routing needs at least one queue")
        self.queues = queues
        self.agents = agents
        self.devices = {agent.device: agent.id for agent in agents.values()}
        self.fallback = unknown_queue if unknown_queue in queues else next(iter(queues))
        self._eligible: dict[frozenset[tuple[str, int]], tuple[str, ...]] = {}

    def eligible_queues(self, skills: dict[str, int]) -> tuple[str, ...]:
        """Queues whose requirements, at some stage of relaxation, these skills meet."""
        key = frozenset(skills.items())
        found = self._eligible.get(key)
        if found is None:
            found = tuple(name for name, queue in self.queues.items() if _could_serve(queue, skills))
            self._eligible[key] = found
        return found

    def queue(self, name: str) -> QueueConfig:
        """The named queue, or the fallback queue for a name that is not (or no longer) configured."""
        return self.queues.get(name) or self.queues[self.fallback]

    def entry_queue(self, name: str, call_id: str) -> QueueConfig:
        """The queue a new call enters; an unknown name is logged with how to fix it."""
        queue = self.queues.get(name)
        if queue is None:
            logger.error(
                "call %s names queue %r, which is not configured (configured: %s); routing it via "
                "%r. Fix ACD_QUEUE in the dialplan or add the queue to the configuration.",
                call_id,
                name,
                sorted(self.queues),
                self.fallback,
            )
            queue = self.queues[self.fallback]
        return queue


def _could_serve(queue: QueueConfig, skills: dict[str, int]) -> bool:
    stages = [queue.requirements, *(step.requirements for step in queue.relax)]
    return any(requirements_met(stage, skills) for stage in stages)
