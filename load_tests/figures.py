"""The load test's own figures, next to the demo's summary (load_tests.summary.run_summary).

- ``occupancy``: the router's definition (router.kpi.occupancy) over every agent, from the
  agent hashes in Redis: handling (talk + wrap-up, ``handled_s``) / (handling + idle while
  available, ``avail_s``, plus the idle stretch still open when it is read). Read when the
  traffic stops; a call still in progress then has not been added to ``handled_s`` yet.
- ``decisions_per_second``: routing decisions made while the traffic ran (one latency entry
  per decision, counted when the arrivals stop) / real seconds of traffic.
- ``erlang_c``: the queueing-theory check (load_tests.erlang_check) when it applies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from load_tests.erlang_check import CallTimes, call_times
from router import kpi
from router.store import RedisStateStore

# The issue's contract: these keys are always in `acd loadtest --json`'s object.
CONTRACT_FIELDS = (
    "offered",
    "answered",
    "abandoned",
    "service_level",
    "asa_seconds",
    "abandon_rate",
    "occupancy",
    "routing_latency_p50_ms",
    "routing_latency_p99_ms",
    "decisions_per_second",
    "double_assignments",
    "lost_calls",
)


@dataclass(frozen=True, slots=True)
class OccupancyInputs:
    """Seconds summed over all agents: handling (talk + wrap-up) and idle while available."""

    handling_s: float
    available_s: float

    @property
    def occupancy(self) -> float | None:
        return kpi.occupancy(self.handling_s, self.available_s)


async def occupancy_inputs(store: RedisStateStore, now: float) -> OccupancyInputs:
    """Sum the agents' occupancy inputs; an idle stretch still open counts up to ``now``."""
    ids = await store.agent_ids()
    fields = ("handled_s", "avail_s", "avail_mark")
    async with store.redis.pipeline(transaction=False) as pipe:
        for agent_id in ids:
            pipe.hmget(store.keys.agent(agent_id), list(fields))
        rows = await pipe.execute()
    handling = available = 0.0
    for handled, avail, mark in rows:
        handling += _number(handled)
        available += _number(avail)
        if mark:
            available += max(0.0, now - _number(mark))
    return OccupancyInputs(handling, available)


async def router_call_times(store: RedisStateStore, call_ids: Sequence[str]) -> list[CallTimes]:
    """Each call's timestamps as the router recorded them (calls it never saw are left out)."""
    async with store.redis.pipeline(transaction=False) as pipe:
        for call_id in call_ids:
            pipe.hgetall(store.keys.call(call_id))
        hashes = await pipe.execute()
    found = (call_times(call_id, fields) for call_id, fields in zip(call_ids, hashes, strict=True))
    return [times for times in found if times is not None]


def decisions_per_second(decisions: int, traffic_real_s: float) -> float | None:
    return round(decisions / traffic_real_s, 3) if traffic_real_s > 0 else None


def contract_view(summary: dict[str, Any]) -> dict[str, Any]:
    """The contract fields first, in the issue's order, then everything else."""
    return {key: summary.get(key) for key in CONTRACT_FIELDS} | summary


def _number(text: str | None) -> float:
    try:
        return float(text or 0)
    except ValueError:
        return 0.0
