"""Contact-centre KPIs from queue statistics, by the industry definitions.

- ASA = total queue wait of answered calls / answered calls.
- Service level within T, three variants (the queue's ``service_level.formula``):
  answered within T / answered; / (answered + abandoned); / (answered + abandoned after T),
  the last being the default: short abandons (before T) are left out.
- Abandonment rate = abandoned in queue / entered queue (a call overflowing into a queue
  has entered it: ``offered`` counts it there, and ``overflow_in`` says how many did).
- Occupancy = handling (talk + wrap-up) / (handling + available idle).

Statistics are the per-queue counters the store keeps (``acd:{site}:stats:<queue>``):
offered, answered, answered_within, answer_wait_sum, abandoned, abandoned_after, ...
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from router.domain import DEFAULT_SL_FORMULA, SlFormula

Stats = Mapping[str, float]


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator > 0 else None


def service_level_parts(stats: Stats, formula: SlFormula = DEFAULT_SL_FORMULA) -> tuple[float, float]:
    """(numerator, denominator) of the service level, so that queues can be summed."""
    within = stats.get("answered_within", 0.0)
    answered = stats.get("answered", 0.0)
    if formula == "answered_within_over_answered":
        return within, answered
    if formula == "answered_within_over_answered_and_abandoned":
        return within, answered + stats.get("abandoned", 0.0)
    return within, answered + stats.get("abandoned_after", 0.0)


def service_level(stats: Stats, formula: SlFormula = DEFAULT_SL_FORMULA) -> float | None:
    """Fraction answered within the threshold; None before any call counts."""
    return _ratio(*service_level_parts(stats, formula))


def asa_seconds(stats: Stats) -> float | None:
    return _ratio(stats.get("answer_wait_sum", 0.0), stats.get("answered", 0.0))


def abandon_rate(stats: Stats) -> float | None:
    return _ratio(stats.get("abandoned", 0.0), stats.get("offered", 0.0))


def occupancy(handling_s: float, available_s: float) -> float | None:
    return _ratio(handling_s, handling_s + available_s)


def combine(all_stats: Iterable[Stats]) -> dict[str, float]:
    """Sum per-queue statistics into site totals."""
    total: dict[str, float] = {}
    for stats in all_stats:
        for name, value in stats.items():
            total[name] = total.get(name, 0.0) + value
    return total
