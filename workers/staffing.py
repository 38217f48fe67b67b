"""Staffing advice by Erlang C: live per queue (for the collector) and `acd staffing`.

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

from router import erlang
from router.domain import QueueConfig

DEFAULT_WINDOW_S = 900.0
MIN_SPAN_S = 60.0
# Erlang C approaches but never reaches 100 %: a target of 1.0 is advised as 99.9 %.
MAX_SL_TARGET = 0.999


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
    """Erlang C agents needed per queue from the statistics the collector reads each tick."""

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
    """The fewest agents that meet the queue's SL target (0 when no calls arrive)."""
    traffic = arrival_rate_per_s * aht_s
    needed = 0
    if traffic > 0:
        target = min(queue.service_level.target, MAX_SL_TARGET)
        staffing = erlang.agents_needed(
            arrival_rate_per_s * 3600, aht_s, target, queue.service_level.threshold_s
        )
        needed = staffing.agents
    return StaffingAdvice(queue.name, arrival_rate_per_s, aht_s, traffic, needed)


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
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def staffing_problem(args: argparse.Namespace) -> str | None:
    """Why the arguments cannot be answered, or None."""
    checks = [
        (math.isfinite(args.calls_per_hour) and args.calls_per_hour > 0, "--calls-per-hour must be > 0"),
        (math.isfinite(args.aht) and args.aht > 0, "--aht must be > 0 seconds"),
        (0 < args.sl_target < 1, "--sl-target must be between 0 and 1 (exclusive), e.g. 0.8"),
        (math.isfinite(args.threshold) and args.threshold > 0, "--threshold must be > 0 seconds"),
    ]
    return next((message for ok, message in checks if not ok), None)


def run_staffing_command(args: argparse.Namespace) -> int:
    """`acd staffing`: the minimum Erlang C staffing that meets the target."""
    problem = staffing_problem(args)
    if problem is not None:
        print(f"acd staffing: error: {problem}", file=sys.stderr)
        return 2
    result = erlang.agents_needed(args.calls_per_hour, args.aht, args.sl_target, args.threshold)
    figures = asdict(result)
    if args.json:
        print(json.dumps({name: round(value, 6) for name, value in figures.items()}))
        return 0
    print(
        f"{result.agents} agents: traffic {result.traffic_erlangs:.2f} Erlangs, "
        f"service level {result.service_level:.1%} within {args.threshold:g}s "
        f"(target {args.sl_target:.0%}), ASA {result.asa_seconds:.1f}s, "
        f"occupancy {result.occupancy:.1%}, P(wait) {result.p_wait:.1%}"
    )
    return 0
