"""Staffing advice: live per queue (for the collector) and `acd staffing`.

The model is Erlang C (router/erlang.py), or Erlang A (router/erlang_a.py), which counts
callers who give up, when the callers' mean patience is known: `acd staffing --patience S`,
or a queue's ``staffing.patience_s`` for the live advice.

Live advice uses the queue's statistics in Redis: the arrival rate is the growth of
``offered`` over a sliding window, the average handle time (AHT) is talk time per
completed call over the same window plus the measured wrap-up per call (the queue's
configured ``wrapup_s`` until one is measured). Both are in simulated seconds, like every
other time the router measures.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from router import erlang, erlang_a
from router.domain import DEFAULT_SL_FORMULA, SL_FORMULAS, QueueConfig, SlFormula

DEFAULT_WINDOW_S = 900.0
MIN_SPAN_S = 60.0
# Erlang C and A approach but never reach 100 %: a target of 1.0 is advised as 99.9 %.
MAX_SL_TARGET = 0.999
ERLANG_C = "erlang-c"
ERLANG_A = "erlang-a"


@dataclass(frozen=True, slots=True)
class StatsSample:
    at: float
    offered: float
    completed: float
    talk_sum: float


@dataclass(frozen=True, slots=True)
class StaffingAdvice:
    """What one queue needs now, and what it was worked out from."""

    queue: str
    arrival_rate_per_s: float
    aht_s: float
    traffic_erlangs: float
    agents_needed: int
    model: str = ERLANG_C
    # Erlang A: the share of callers expected to give up with ``agents_needed`` agents.
    abandon_rate: float | None = None


class QueueWindow:
    """Samples of one queue's counters over the last ``window_s`` (simulated) seconds."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self.samples: deque[StatsSample] = deque()

    def add(self, sample: StatsSample) -> None:
        if self.samples and sample.offered < self.samples[-1].offered:
            self.samples.clear()  # statistics were reset: start a new window
        self.samples.append(sample)
        # Keep one sample at or beyond the window's start, so the window spans it fully.
        while len(self.samples) > 1 and self.samples[1].at <= sample.at - self.window_s:
            self.samples.popleft()

    @property
    def span_s(self) -> float:
        return self.samples[-1].at - self.samples[0].at if self.samples else 0.0

    def arrival_rate(self) -> float:
        return (self.samples[-1].offered - self.samples[0].offered) / self.span_s

    def talk_per_call(self) -> float | None:
        """Talk seconds per completed call in the window, else since the statistics began."""
        first, last = self.samples[0], self.samples[-1]
        if last.completed > first.completed:
            return (last.talk_sum - first.talk_sum) / (last.completed - first.completed)
        return last.talk_sum / last.completed if last.completed > 0 else None


class StaffingEstimator:
    """Erlang C (or A) agents needed per queue from the statistics the collector reads each tick."""

    def __init__(self, window_s: float = DEFAULT_WINDOW_S, min_span_s: float = MIN_SPAN_S) -> None:
        self.window_s = window_s
        self.min_span_s = min_span_s
        self.windows: dict[str, QueueWindow] = {}

    def observe(self, queue: QueueConfig, stats: Mapping[str, float], now: float) -> StaffingAdvice | None:
        """Add a sample; advice once the window spans ``min_span_s`` and a call has completed."""
        window = self.windows.setdefault(queue.name, QueueWindow(self.window_s))
        window.add(
            StatsSample(
                now, stats.get("offered", 0.0), stats.get("completed", 0.0), stats.get("talk_sum", 0.0)
            )
        )
        talk = window.talk_per_call()
        if window.span_s < self.min_span_s or talk is None:
            return None
        return advise(queue, window.arrival_rate(), talk + wrapup_per_call(queue, stats))


def wrapup_per_call(queue: QueueConfig, stats: Mapping[str, float]) -> float:
    """Measured after-call work per call (it can be ended early or extended through the API);
    the queue's configured wrap-up until one has been measured."""
    wrapups = stats.get("wrapups", 0.0)
    return stats.get("wrapup_sum", 0.0) / wrapups if wrapups > 0 else queue.wrapup_s


def advise(queue: QueueConfig, arrival_rate_per_s: float, aht_s: float) -> StaffingAdvice:
    """The fewest agents that meet the queue's SL target (0 when no calls arrive), by Erlang A
    with the queue's service-level formula when it configures a patience, else by Erlang C."""
    traffic = arrival_rate_per_s * aht_s
    patience = queue.staffing.patience_s
    model = ERLANG_C if patience is None else ERLANG_A
    if traffic <= 0:
        return StaffingAdvice(queue.name, arrival_rate_per_s, aht_s, traffic, 0, model)
    target = min(queue.service_level.target, MAX_SL_TARGET)
    threshold = queue.service_level.threshold_s
    if patience is None:
        needed = erlang.agents_needed(arrival_rate_per_s * 3600, aht_s, target, threshold).agents
        return StaffingAdvice(queue.name, arrival_rate_per_s, aht_s, traffic, needed)
    figures = erlang_a.agents_needed(
        arrival_rate_per_s * 3600, aht_s, patience, target, threshold, queue.service_level.formula
    )
    return StaffingAdvice(
        queue.name, arrival_rate_per_s, aht_s, traffic, figures.agents, model, figures.abandon_rate
    )


# -- `acd staffing` ---------------------------------------------------------------------


def add_staffing_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--calls-per-hour", type=float, required=True, help="arrival rate (calls per hour)")
    parser.add_argument(
        "--aht", type=float, required=True, help="average handle time, seconds (talk + wrap-up)"
    )
    parser.add_argument(
        "--sl-target", type=float, default=0.8, help="service-level target, 0-1 exclusive (default 0.8)"
    )
    parser.add_argument(
        "--threshold", type=float, default=20.0, help="service-level threshold, seconds (default 20)"
    )
    parser.add_argument(
        "--patience",
        metavar="S",
        help="callers' mean patience, seconds: Erlang A, which counts callers who give up (default: "
        "Erlang C, nobody gives up)",
    )
    parser.add_argument(
        "--sl-formula",
        choices=SL_FORMULAS,
        default=DEFAULT_SL_FORMULA,
        metavar="FORMULA",
        help="how the service level counts abandons, with --patience: "
        f"{', '.join(SL_FORMULAS)} (default {DEFAULT_SL_FORMULA}; docs/metrics.md)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def patience_seconds(args: argparse.Namespace) -> float | None:
    """--patience as a number (checked by ``staffing_problem`` first), None without it."""
    return None if args.patience is None else float(args.patience)


def _patience_ok(text: str | None) -> bool:
    try:
        return text is None or (math.isfinite(float(text)) and float(text) > 0)
    except ValueError:
        return False


def staffing_problem(args: argparse.Namespace) -> str | None:
    """Why the arguments cannot be answered, or None."""
    checks = [
        (math.isfinite(args.calls_per_hour) and args.calls_per_hour > 0, "--calls-per-hour must be > 0"),
        (math.isfinite(args.aht) and args.aht > 0, "--aht must be > 0 seconds"),
        (0 < args.sl_target < 1, "--sl-target must be between 0 and 1 (exclusive), e.g. 0.8"),
        (math.isfinite(args.threshold) and args.threshold > 0, "--threshold must be > 0 seconds"),
        (
            _patience_ok(args.patience),
            f"--patience {args.patience!r}: expected the callers' mean patience, a number of seconds > 0, "
            "e.g. 120",
        ),
    ]
    return next((message for ok, message in checks if not ok), None)


def staffing_figures(args: argparse.Namespace) -> dict[str, float | int | str]:
    """The answer's fields: Erlang C's as they always were, then Erlang A's additions."""
    patience = patience_seconds(args)
    if patience is None:
        result = erlang.agents_needed(args.calls_per_hour, args.aht, args.sl_target, args.threshold)
        return {**asdict(result), "model": ERLANG_C}
    formula: SlFormula = args.sl_formula
    found = erlang_a.agents_needed(
        args.calls_per_hour, args.aht, patience, args.sl_target, args.threshold, formula
    )
    return {
        "agents": found.agents,
        "traffic_erlangs": found.traffic_erlangs,
        "p_wait": found.p_wait,
        "service_level": found.service_level(formula),
        "asa_seconds": found.asa_seconds,
        "occupancy": found.occupancy,
        "abandon_rate": found.abandon_rate,
        "model": ERLANG_A,
    }


def run_staffing_command(args: argparse.Namespace) -> int:
    """`acd staffing`: the minimum Erlang C (or, with --patience, Erlang A) staffing that meets the target."""
    problem = staffing_problem(args)
    if problem is not None:
        print(f"acd staffing: error: {problem}", file=sys.stderr)
        return 2
    figures = staffing_figures(args)
    if args.json:
        print(json.dumps({k: round(v, 6) if isinstance(v, float) else v for k, v in figures.items()}))
        return 0
    line = (
        f"{figures['agents']} agents: traffic {figures['traffic_erlangs']:.2f} Erlangs, "
        f"service level {figures['service_level']:.1%} within {args.threshold:g}s "
        f"(target {args.sl_target:.0%}), ASA {figures['asa_seconds']:.1f}s, "
        f"occupancy {figures['occupancy']:.1%}, P(wait) {figures['p_wait']:.1%}"
    )
    if args.patience is not None:
        patience = patience_seconds(args)
        line += f", abandoned {figures['abandon_rate']:.1%} (Erlang A, mean patience {patience:g}s)"
    print(line)
    return 0
