"""Matching calls and agents, both directions, ending in the store's atomic reservation.

- a call becomes waiting (arrives, is declined, relaxes) -> the best available agent;
- an agent becomes available (logs in, unpauses, finishes) -> the first call in line.

The policy (router.policy) chooses from what the store reads; the reservation script
makes the choice stick only if the call still waits and the agent is still free, so
workers racing for the same agent or call cannot both win. A lost race is retried.

A worker applies the keys of one poll side by side, so a burst (calls arriving together,
agents freed together) searches at once and reads the same heads. Within a worker nobody
races for what another search is reserving right now: those agents and calls are skipped
(``Matcher.reserving``; agents only once their free places are taken), and the store hands
a longest-idle agent to as many searches per round trip as it has free places (``HANDED``
in router/store/lua/_lib.lua).
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Iterable, Sequence
from typing import Protocol

import orjson

from router import affinity
from router.commands import CallbackCommand, OfferCommand
from router.context import RoutingContext
from router.domain import AgentCandidate, QueueConfig, Requirements, Strategy, WaitingCall
from router.policy import Decision, call_order_key, choose_agent, choose_call, requirements_in_force
from router.sticky import AffinityStore, StickyCalls
from router.store.replies import Reserved

logger = logging.getLogger(__name__)

MAX_RESERVE_ATTEMPTS = 5
WAITING_PAGE = 200
SHORTLIST = 5
# How deep into each queue an agent's search reads: the heads almost always decide; a
# queue is read deeper only when none of what was read of it qualified and it may hide a
# call ahead of the one chosen (the agent declined its head, or the head is a later,
# higher-priority call not yet relaxed enough).
LINE_DEPTHS = (1, 8, 64, 100_000)


class MatchingStore(AffinityStore, Protocol):
    """What matching reads and writes (router.store.RedisRoutingStore has it)."""

    async def waiting_call(self, call_id: str) -> WaitingCall | None: ...

    async def waiting_calls(self, start: int = 0, count: int = 100) -> list[WaitingCall]: ...

    async def line_for_agent(self, queues: Sequence[str], per_queue: int, count: int) -> list[WaitingCall]: ...

    async def candidates(
        self, requirements: Requirements, *, exclude: Iterable[str] = (), limit: int = 64, max_scan: int = ...
    ) -> list[AgentCandidate]: ...

    async def agent_candidate(self, agent_id: str) -> AgentCandidate | None: ...

    async def any_agent_available(self) -> bool: ...

    async def round_robin_last(self, queue: str) -> str: ...

    async def reserve(
        self, call_id: str, agent_id: str, offer_id: str, now: float, deadline: float, record: str
    ) -> Reserved: ...


class Matcher:
    """Makes offers; holds no state of its own (but a counter for offer ids)."""

    def __init__(self, context: RoutingContext, store: MatchingStore) -> None:
        self.context = context
        self.store = store
        self.sticky = StickyCalls(store)
        # Offer ids: unique across workers and restarts (random prefix), cheap to make.
        self._offer_prefix, self._offer_seq = os.urandom(8).hex(), itertools.count(1)
        self.reserving = Reserving()

    async def match_call_id(self, call_id: str, started: float, trigger: str = "call") -> None:
        call = await self.store.waiting_call(call_id)
        if call is not None:
            await self.match_call(call, started, trigger=trigger)

    async def match_call(
        self,
        call: WaitingCall,
        started: float,
        *,
        trigger: str,
        prefetched: list[AgentCandidate] | None = None,
    ) -> bool:
        """Offer ``call`` to the best available agent; False when nobody qualifies now.

        ``prefetched``: candidates already read for this call (by the enqueue script).
        """
        queue = self.context.config.queue(call.queue)
        for _ in range(MAX_RESERVE_ATTEMPTS):
            now = self.context.clock.now()
            requirements = requirements_in_force(call, queue, now)
            if affinity.holds(call, now):  # waiting for one agent first (router/affinity.py)
                call, held = await self.sticky.candidates(call, requirements)
                prefetched = held if held is not None else prefetched
            if prefetched is None:
                limit = self.candidate_limit(queue)
                exclude = self.reserving.full() | set(call.declined_by)
                candidates = await self.store.candidates(requirements, exclude=exclude, limit=limit)
            else:
                candidates, prefetched = prefetched, None
            if not candidates:
                return False
            candidates = [c for c in candidates if self.reserving.has_room(c)]
            if not candidates:
                continue  # each is being offered other calls of this batch: read again without them
            round_robin = queue.strategy is Strategy.ROUND_ROBIN
            rr_after = await self.store.round_robin_last(queue.name) if round_robin else ""
            decision = choose_agent(call, queue, candidates, now, rr_after=rr_after)
            if decision is None:
                return False
            outcome = await self._reserve(decision, call, candidates, started, trigger)
            if outcome.status == "ok":
                return True
            if outcome.status in ("call_taken", "unknown_call"):
                return False
            self.context.metrics.conflicts.inc()
        return False

    def candidate_limit(self, queue: QueueConfig) -> int:
        """Longest idle needs only the first candidate: the store returns them in that order."""
        return 1 if queue.strategy is Strategy.LONGEST_IDLE else self.context.settings.candidate_limit

    async def match_agent(self, agent_id: str, started: float, known: AgentCandidate | None = None) -> None:
        """Give a newly free agent the first call in line it may take (several, if capacity allows).

        ``known``: the agent as a script just returned it, saving a read.
        """
        for _ in range(MAX_RESERVE_ATTEMPTS):
            agent, known = known or await self.store.agent_candidate(agent_id), None
            if agent is None:
                return
            decision, call = await self._first_call_for(agent)
            if decision is None or call is None:
                return
            outcome = await self._reserve(decision, call, [agent], started, "agent")
            if outcome.status not in ("ok", "call_taken"):
                return
            if outcome.status == "ok" and agent.active + 1 >= agent.capacity:
                return  # this offer took its last free place: reading it again would say so
            if outcome.status == "call_taken":
                self.context.metrics.conflicts.inc()

    async def _first_call_for(self, agent: AgentCandidate) -> tuple[Decision | None, WaitingCall | None]:
        """Read only the heads of the queues the agent could serve, deeper only if needed."""
        queues = self.context.config.eligible_queues(agent.skills)
        for per_queue in LINE_DEPTHS:
            calls = await self.store.line_for_agent(queues, per_queue, per_queue * (len(queues) + 1))
            if not calls:
                return None, None
            free = [call for call in calls if call.call_id not in self.reserving.calls]
            decision = choose_call(agent, free, self.context.config.queues, self.context.clock.now())
            chosen = next((c for c in calls if decision and c.call_id == decision.call_id), None)
            if per_queue == LINE_DEPTHS[-1] or not _may_hide_an_earlier_call(calls, chosen, per_queue):
                return decision, chosen
        return None, None

    async def _reserve(
        self,
        decision: Decision,
        call: WaitingCall,
        candidates: list[AgentCandidate],
        started: float,
        trigger: str,
    ) -> Reserved:
        now = self.context.clock.now()
        offer_id = f"{self._offer_prefix}{next(self._offer_seq):08x}"
        deadline = now + self.context.settings.offer_timeout_s * self.context.clock.time_scale
        agent = next((c for c in candidates if c.agent_id == decision.agent_id), None)
        record = self._record(decision, call, candidates, agent, offer_id, now, trigger)
        places = agent.capacity - agent.active if agent else 1
        self.reserving.take(call.call_id, decision.agent_id, places)
        try:
            outcome = await self.store.reserve(call.call_id, decision.agent_id, offer_id, now, deadline, record)
        finally:
            self.reserving.give_back(call.call_id, decision.agent_id)
        if outcome.status != "ok":
            return outcome
        self.context.metrics.decisions.labels(decision.queue, trigger).inc()
        self.context.metrics.agent_available.inc(outcome.available_s)
        if outcome.callback_number:  # the caller asked to be called back (router/callback.py)
            await self.context.sink.callback(self._callback(decision, call, offer_id, outcome, now), started)
        else:
            await self.context.sink.offer(self._offer(decision, call, offer_id, outcome.device, now), started)
        logger.debug(
            "offered call %s to %s: %s",
            call.call_id,
            decision.agent_id,
            decision.reason,
            extra={"call_id": call.call_id, "agent_id": decision.agent_id},
        )
        return outcome

    def _record(
        self,
        decision: Decision,
        call: WaitingCall,
        candidates: list[AgentCandidate],
        agent: AgentCandidate | None,
        offer_id: str,
        now: float,
        trigger: str,
    ) -> str:
        """The audit record: requirements in force, who was considered, why this agent."""
        skills = agent.skills if agent else {}
        return orjson.dumps(
            decision.record()
            | {
                "offer_id": offer_id,
                "priority": call.priority,
                "decided_at": round(now, 3),
                "agent_skills": skills,
                "trigger": trigger,
                "shortlist": [c.agent_id for c in candidates[:SHORTLIST]],
                "declined_by": sorted(call.declined_by),
            }
        ).decode()

    def _offer(
        self, decision: Decision, call: WaitingCall, offer_id: str, device: str, now: float
    ) -> OfferCommand:
        agent = self.context.config.agents.get(decision.agent_id)
        return OfferCommand(
            offer_id=offer_id,
            call_id=call.call_id,
            channel=call.channel,
            agent_id=decision.agent_id,
            device=device,
            context=self.context.settings.connect_context,
            exten=agent.dial_extension if agent else decision.agent_id,
            queue=decision.queue,
            decided_at=now,
        )

    def _callback(
        self, decision: Decision, call: WaitingCall, offer_id: str, reserved: Reserved, now: float
    ) -> CallbackCommand:
        agent = self.context.config.agents.get(decision.agent_id)
        return CallbackCommand(
            offer_id=offer_id,
            call_id=call.call_id,
            agent_id=decision.agent_id,
            device=reserved.device,
            exten=agent.dial_extension if agent else decision.agent_id,
            number=reserved.callback_number,
            caller_name=reserved.caller_name,
            queue=decision.queue,
            agent_first=reserved.agent_first,
            decided_at=now,
        )

    async def sweep(self, started: float, *, limit: int = 10_000) -> None:
        """Safety net: try waiting calls (line order, up to ``limit``) against available agents."""
        calls: list[WaitingCall] = []
        while len(calls) < limit and (page := await self.store.waiting_calls(len(calls), WAITING_PAGE)):
            calls.extend(page)
        for call in calls:
            if not await self.store.any_agent_available():
                return
            await self.match_call(call, started, trigger="sweep")


class Reserving:
    """The calls and agents this worker's reservations are being made for right now (an
    agent may be in two at once: its own search for a call and a call's for it)."""

    def __init__(self) -> None:
        # Plain dicts read with .get: a Counter's __missing__ is a Python call per absent key.
        self.calls: dict[str, int] = {}
        self.agents: dict[str, int] = {}
        self._places: dict[str, int] = {}  # each agent's free places, as read for its latest hold

    def has_room(self, agent: AgentCandidate) -> bool:
        """Whether ``agent`` (as read) has a free place beyond the reservations in flight."""
        return agent.active + self.agents.get(agent.agent_id, 0) < agent.capacity

    def full(self) -> set[str]:
        """The agents whose every free place a reservation in flight is taking."""
        return {agent_id for agent_id, held in self.agents.items() if held >= self._places.get(agent_id, 1)}

    # take and give_back, not a context manager: a generator per reservation showed in a
    # saturated worker's profile (docs/performance.md).
    def take(self, call_id: str, agent_id: str, places: int = 1) -> None:
        """A reservation of ``agent_id`` (``places`` free, as read) for ``call_id`` is being made."""
        self.calls[call_id] = self.calls.get(call_id, 0) + 1
        self.agents[agent_id] = self.agents.get(agent_id, 0) + 1
        self._places[agent_id] = places

    def give_back(self, call_id: str, agent_id: str) -> None:
        """That reservation is made or refused: ``take``'s hold ends (once per take)."""
        for held, key in ((self.calls, call_id), (self.agents, agent_id)):
            held[key] -= 1
            if held[key] <= 0:
                del held[key]
        if agent_id not in self.agents:
            self._places.pop(agent_id, None)


def _may_hide_an_earlier_call(calls: list[WaitingCall], chosen: WaitingCall | None, per_queue: int) -> bool:
    """Whether reading deeper could find a call ahead of ``chosen`` in line: some queue (or
    the calls with their own requirements) gave ``per_queue`` calls, none of them chosen,
    and its last one stands ahead of the chosen call (or nothing was chosen)."""
    by_line: dict[str, list[WaitingCall]] = {}
    for call in calls:
        line = "" if call.requirements_override is not None else call.queue
        by_line.setdefault(line, []).append(call)
    for line_calls in by_line.values():
        if len(line_calls) < per_queue or (chosen is not None and chosen in line_calls):
            continue
        last = max(line_calls, key=call_order_key)
        if chosen is None or call_order_key(last) < call_order_key(chosen):
            return True
    return False
