"""The figures a simulated run ends with: what the router measured, and the referee's verdict."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from load_tests.amisim.ledger import Ledger
from load_tests.referee import QUEUED, judge
from router import kpi
from router.domain import QueueConfig, parse_requirements
from router.store import RedisStateStore


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def queue_figures(stats: Mapping[str, float], queue: QueueConfig) -> dict[str, Any]:
    target = queue.service_level
    return {
        "offered": int(stats.get("offered", 0)),
        "answered": int(stats.get("answered", 0)),
        "abandoned": int(stats.get("abandoned", 0)),
        "asa_seconds": _rounded(kpi.asa_seconds(stats), 3),
        "service_level": _rounded(kpi.service_level(stats, target.formula), 4),
        "service_level_target": target.target,
        "service_level_threshold_s": target.threshold_s,
        "service_level_formula": target.formula,
        "abandon_rate": _rounded(kpi.abandon_rate(stats), 4),
    }


LISTED_CALLS = 20  # lost and mismatched calls a summary lists by id (all are counted)


@dataclass(frozen=True)
class RoutingLatency:
    """The routing loop's latencies over a run: every offer's ``decision_ms`` (read from the
    offers, load_tests.decision_tap) and the command-acknowledged quantiles (from the
    workers' histogram)."""

    decision_ms: Sequence[float] = ()
    acked_p50_ms: float | None = None
    acked_p99_ms: float | None = None


async def run_summary(
    store: RedisStateStore,
    queues: Mapping[str, QueueConfig],
    ledger: Ledger,
    *,
    listed: int | None = LISTED_CALLS,
    latency: RoutingLatency = RoutingLatency(),
) -> dict[str, Any]:
    """Router measurements (Redis) next to the simulator's ground truth (ledger); the first
    ``listed`` lost and mismatched calls by id (None: all of them)."""
    per_queue = {name: await store.queue_stats(name) for name in queues}
    total = kpi.combine(per_queue.values())
    parts = [kpi.service_level_parts(per_queue[n], q.service_level.formula) for n, q in queues.items()]
    numerator, denominator = sum(p[0] for p in parts), sum(p[1] for p in parts)
    latencies = latency.decision_ms
    states = await store.call_states(list(ledger.calls))
    verdict = judge(ledger, states)
    return {
        # A call overflowing to another queue is offered to both; the site saw it once.
        # So is a caller transferred back into a queue (transfer_in).
        "offered": int(total.get("offered", 0) - total.get("overflow_in", 0) - total.get("transfer_in", 0)),
        "answered": int(total.get("answered", 0)),
        "abandoned": int(total.get("abandoned", 0)),
        "overflowed": int(total.get("overflowed", 0)),
        "transferred": int(total.get("transferred", 0)),
        "transferred_back": int(total.get("transfer_in", 0)),
        "waiting_at_end": sum(1 for state in states.values() if state in QUEUED),
        "asa_seconds": _rounded(kpi.asa_seconds(total), 3),
        "service_level": _rounded(numerator / denominator if denominator else None, 4),
        "routing_latency_p50_ms": _rounded(percentile(latencies, 50), 3),
        "routing_latency_p99_ms": _rounded(percentile(latencies, 99), 3),
        # The same decisions until Kafka acknowledged their command (acks=all): the broker's share.
        "routing_latency_acked_p50_ms": latency.acked_p50_ms,
        "routing_latency_acked_p99_ms": latency.acked_p99_ms,
        "double_assignments": verdict.double_assignments,
        "lost_calls": len(verdict.lost),
        "state_mismatches": len(verdict.mismatched),
        "abandon_rate": _rounded(kpi.abandon_rate(total), 4),
        "decisions": len(latencies),
        "queues": {name: queue_figures(per_queue[name], queue) for name, queue in queues.items()},
        "ground_truth": ledger.summary(),
        "lost_call_ids": verdict.lost[:listed],
        "mismatched_calls": [list(m) for m in verdict.mismatched[:listed]],
    }


async def write_assignments(path: Path, store: RedisStateStore, call_ids: Sequence[str]) -> int:
    """One JSON line per answered call: who took it, after how long, and why. Returns lines."""
    decisions = {record.get("offer_id"): record for record in await store.decisions()}
    lines = 0
    with path.open("w") as out:
        for call_id in call_ids:
            call = await store.call(call_id)
            record = decisions.get(call.get("offer_id"))
            if not call.get("answered_at") or record is None:
                continue
            out.write(json.dumps(assignment_line(call_id, call, record)) + "\n")
            lines += 1
    return lines


def assignment_line(call_id: str, call: Mapping[str, str], record: Mapping[str, Any]) -> dict[str, Any]:
    requirements = parse_requirements(record.get("requirements", ""))
    return {
        "call_id": call_id,
        "queue": call.get("queue", ""),
        "priority": int(float(call.get("priority", 0))),
        "agent_id": call.get("agent", ""),
        "wait_s": round(float(call["answered_at"]) - float(call["entered_at"]), 3),
        "requirements_in_force": [term.model_dump(mode="json") for term in requirements],
        "agent_skills": record.get("agent_skills", {}),
        "strategy": record.get("strategy", ""),
        "reason": record.get("reason", ""),
        "trigger": record.get("trigger", ""),
        "offer_waited_s": record.get("waited_s"),
    }
