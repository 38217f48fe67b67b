"""Traffic generator: drives the AMI simulator's PBX the way a scenario says.

Poisson arrivals per traffic line (rate shaped by the scenario's phases), handle times and
caller patience drawn from the scenario's distributions, agents that log in, answer after
a delay (or not), and come back from a ring-no-answer pause after a while.
"""

from __future__ import annotations

import asyncio
import logging
import random

from load_tests.amisim.calls import TransferPlan
from load_tests.amisim.pbx import Pbx, PbxRefusedCallError
from load_tests.scenario import Breaks, Scenario, TrafficLine, Transfers
from router.clock import Clock
from router.domain import format_requirements

logger = logging.getLogger(__name__)

RNA_REASON = "ring-no-answer"


MAX_REMEMBERED_CALLERS = 10_000


class TrafficGenerator:
    """Places the scenario's calls into ``pbx`` until stopped."""

    def __init__(self, scenario: Scenario, pbx: Pbx, clock: Clock, *, seed: int | None = None) -> None:
        self.scenario = scenario
        self.pbx = pbx
        self.clock = clock
        self.rng = random.Random(scenario.seed if seed is None else seed)
        self.placed = 0
        self.refused = 0  # calls a restarting PBX turned away
        self.breaks_taken = 0
        self._started_at = clock.now()
        self._callers: list[str] = []  # numbers that called, for returning callers

    def add_agents(self) -> None:
        behaviour = self.scenario.agent_behaviour
        for agent in self.scenario.all_agents():
            self.pbx.add_agent(
                agent.id,
                extension=agent.dial_extension,
                interface=agent.device,
                capacity=agent.capacity,
                answer_delay_s=lambda: behaviour.answer_delay_s.sample(self.rng),
                answer_probability=behaviour.answer_probability,
            )

    def login_agents(self) -> None:
        for agent in self.scenario.all_agents():
            self.pbx.login(agent.id)

    async def run(self, stop: asyncio.Event, *, arrivals_stop: asyncio.Event | None = None) -> None:
        """Place calls until ``stop`` is set (or ``arrivals_stop``: agents keep working, calls drain)."""
        self._started_at = self.clock.now()
        async with asyncio.TaskGroup() as group:
            for line in self.scenario.traffic:
                group.create_task(self._arrivals(line, stop if arrivals_stop is None else arrivals_stop))
            group.create_task(self._return_from_rna_pauses(stop))
            breaks = self.scenario.agent_behaviour.breaks
            if breaks is not None:
                for agent in self.scenario.all_agents():
                    group.create_task(self._take_breaks(agent.id, breaks, stop))

    async def _arrivals(self, line: TrafficLine, stop: asyncio.Event) -> None:
        rate_per_s = line.calls_per_hour / 3600.0
        while not stop.is_set():
            factor = self.scenario.rate_factor_at(self.clock.now() - self._started_at)
            if factor <= 0:
                await self._sleep_sim(1.0, stop)
                continue
            if await self._sleep_sim(self.rng.expovariate(rate_per_s * factor), stop):
                return
            self._place(line)

    def _place(self, line: TrafficLine) -> None:
        patience = line.patience_s.sample(self.rng) if line.patience_s else None
        try:
            call = self.pbx.place_call(
                line.queue,
                priority=line.priority,
                requirements=format_requirements(line.requirements)
                if line.requirements is not None
                else None,
                handle_time_s=max(1.0, line.handle_time_s.sample(self.rng)),
                patience_s=patience,
                transfer=self._transfer_plan(line),
                caller_id=self._returning_caller(line),
                preferred_agent=self._preferred_agent(line),
            )
        except PbxRefusedCallError:
            self.refused += 1  # Asterisk restarting: the call never got in, as on a real PBX
            return
        self.placed += 1
        if line.returning_share > 0 and len(self._callers) < MAX_REMEMBERED_CALLERS:
            self._callers.append(call.record.caller_number)

    # Drawn only when the line asks for them, so that other scenarios keep their random sequence.
    def _returning_caller(self, line: TrafficLine) -> str | None:
        """A number that called before (a returning caller), or None for a new one."""
        if line.returning_share <= 0 or not self._callers or self.rng.random() >= line.returning_share:
            return None
        return self.rng.choice(self._callers)

    def _preferred_agent(self, line: TrafficLine) -> str | None:
        if line.preferred_agent_share <= 0 or self.rng.random() >= line.preferred_agent_share:
            return None
        return self.rng.choice(self.scenario.all_agents()).id

    def _transfer_plan(self, line: TrafficLine) -> TransferPlan | None:
        """Whether the agent who answers transfers this call, and where to."""
        transfers = self.scenario.agent_behaviour.transfers
        if transfers.share <= 0 or self.rng.random() >= transfers.share:
            return None
        kind = self.rng.choices(
            ("blind_out", "attended_out", "back_to_queue"),
            weights=(transfers.blind_out, transfers.attended_out, transfers.back_to_queue),
        )[0]
        stay = transfers.stay_s.sample(self.rng)
        if kind == "back_to_queue":
            return TransferPlan("blind", ("acd-inbound", "5000"), stay)
        return TransferPlan("blind" if kind == "blind_out" else "attended", _target(transfers), stay)

    async def _return_from_rna_pauses(self, stop: asyncio.Event) -> None:
        """Agents auto-paused after a missed call come back after ``unpause_after_s``."""
        paused_since: dict[str, float] = {}
        delay = self.scenario.agent_behaviour.unpause_after_s
        while not await self._sleep_sim(1.0, stop):
            now = self.clock.now()
            for record in self.pbx.ledger.agents.values():
                if record.paused and record.paused_reason == RNA_REASON:
                    since = paused_since.setdefault(record.agent_id, now)
                    if now - since >= delay:
                        self.pbx.unpause(record.agent_id)
                        paused_since.pop(record.agent_id)
                else:
                    paused_since.pop(record.agent_id, None)

    async def _take_breaks(self, agent_id: str, breaks: Breaks, stop: asyncio.Event) -> None:
        """Step away now and then (pause or log out), and come back."""
        while not await self._sleep_sim(breaks.every_s.sample(self.rng), stop):
            logout = self.rng.random() < breaks.logout_share
            if logout:
                self.pbx.logout(agent_id)
            else:
                self.pbx.pause(agent_id, breaks.reason)
            self.breaks_taken += 1
            stopped = await self._sleep_sim(breaks.duration_s.sample(self.rng), stop)
            if logout:
                self.pbx.login(agent_id)
            else:
                self.pbx.unpause(agent_id)
            if stopped:
                return

    async def _sleep_sim(self, sim_seconds: float, stop: asyncio.Event) -> bool:
        """Sleep ``sim_seconds`` of simulated time; True if stopped meanwhile."""
        try:
            await asyncio.wait_for(stop.wait(), self.clock.real_seconds(sim_seconds))
        except TimeoutError:
            return False
        return True


def _target(transfers: Transfers) -> tuple[str, str]:
    context, _, exten = transfers.target.partition(",")
    return context, exten
