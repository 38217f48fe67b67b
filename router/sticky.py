"""What affinity routing reads and writes around the pure rules of router.affinity: whom a
new call waits for, whether its agent is still worth waiting for, and the calls an agent's
logout releases."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Protocol

from router import affinity
from router.domain import Affinity, AgentCandidate, QueueConfig, Requirements, WaitingCall

logger = logging.getLogger(__name__)


class AffinityStore(Protocol):
    """The reads and writes affinity needs (router.store.RedisRoutingStore has them)."""

    async def last_agent(self, caller_number: str) -> str: ...

    async def agent_standing(self, agent_id: str) -> tuple[str, dict[str, int]]: ...

    async def agent_candidate(self, agent_id: str) -> AgentCandidate | None: ...

    async def held_for(self, agent_id: str, now: float) -> list[str]: ...

    async def release_affinity(self, call_id: str, agent_id: str) -> bool: ...


class StickyCalls:
    """Affinity's I/O: holds no state of its own."""

    def __init__(self, store: AffinityStore) -> None:
        self.store = store

    async def target(
        self,
        queue: QueueConfig,
        call: WaitingCall,
        *,
        preferred: str,
        caller_number: str,
        requirements: Requirements,
        now: float,
    ) -> Affinity | None:
        """The agent a new call waits for first, released at once when it is logged out or
        not qualified (so that the decision says why the call went elsewhere); None: nobody."""
        if not preferred and (queue.last_agent is None or not caller_number):
            return None
        last_seen = "" if preferred else await self.store.last_agent(caller_number)
        target = affinity.choose_target(queue, preferred, last_seen, call.entered_at, now)
        if target is None or await self._worth_waiting_for(target.agent_id, requirements):
            return target
        logger.info(
            "call %s: %s %s is logged out or not qualified; routing normally",
            call.call_id,
            target.kind,
            target.agent_id,
            extra={"call_id": call.call_id},
        )
        return replace(target, released=True)

    async def candidates(
        self, call: WaitingCall, requirements: Requirements
    ) -> tuple[WaitingCall, list[AgentCandidate] | None]:
        """For a call waiting for its agent: that agent if free now, [] to wait on; or None
        and the call released, when the agent is no longer worth waiting for."""
        aff = call.affinity
        if aff is None:
            return call, None
        agent = await self.store.agent_candidate(aff.agent_id)
        if agent is not None:
            return call, [agent]
        if await self._worth_waiting_for(aff.agent_id, requirements):
            return call, []
        await self.store.release_affinity(call.call_id, aff.agent_id)
        return replace(call, affinity=replace(aff, released=True)), None

    async def release_for(self, agent_id: str, now: float) -> list[str]:
        """Calls that were waiting for an agent who has just logged out, now released."""
        return [
            call_id
            for call_id in await self.store.held_for(agent_id, now)
            if await self.store.release_affinity(call_id, agent_id)
        ]

    async def _worth_waiting_for(self, agent_id: str, requirements: Requirements) -> bool:
        state, skills = await self.store.agent_standing(agent_id)
        return affinity.eligible(state, skills, requirements)
