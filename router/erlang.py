"""Erlang C: the queueing model contact centres staff by. Pure functions.

Traffic A = arrival rate x AHT (Erlangs). With N agents (N > A):

- P(wait) = Erlang C formula (probability an arriving call has to queue),
- SL(t) = 1 - P(wait) * exp(-(N - A) * t / AHT),
- ASA = P(wait) * AHT / (N - A),
- occupancy = A / N.

Assumes Poisson arrivals, exponential handle times, no abandonment and first-come
first-served service; real centres abandon, so Erlang C is slightly pessimistic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def traffic_erlangs(calls_per_hour: float, aht_s: float) -> float:
    return calls_per_hour * aht_s / 3600.0


def p_wait(agents: int, traffic: float) -> float:
    """Erlang C probability of waiting; 1.0 when the queue is unstable (agents <= traffic)."""
    if traffic <= 0:
        return 0.0
    if agents <= traffic:
        return 1.0
    # C = B / (1 - rho (1 - B)), from Erlang B.
    blocking = erlang_b(agents, traffic)
    rho = traffic / agents
    return blocking / (1 - rho * (1 - blocking))


def erlang_b(agents: int, traffic: float) -> float:
    """Erlang B (the loss system M/M/n/n's blocking probability), by the stable recurrence
    B(n) = A B(n-1) / (n + A B(n-1)), B(0) = 1; it may underflow to 0.0 for n far above A."""
    blocking = 1.0
    for n in range(1, agents + 1):
        blocking = traffic * blocking / (n + traffic * blocking)
    return blocking


def service_level(agents: int, traffic: float, aht_s: float, threshold_s: float) -> float:
    """Fraction of calls answered within ``threshold_s``."""
    if agents <= traffic:
        return 0.0
    return 1.0 - p_wait(agents, traffic) * math.exp(-(agents - traffic) * threshold_s / aht_s)


def asa_seconds(agents: int, traffic: float, aht_s: float) -> float:
    """Average speed of answer; infinite when the queue is unstable."""
    if agents <= traffic:
        return math.inf
    return p_wait(agents, traffic) * aht_s / (agents - traffic)


@dataclass(frozen=True)
class Staffing:
    agents: int
    traffic_erlangs: float
    p_wait: float
    service_level: float
    asa_seconds: float
    occupancy: float


def staffing(agents: int, calls_per_hour: float, aht_s: float, threshold_s: float) -> Staffing:
    traffic = traffic_erlangs(calls_per_hour, aht_s)
    return Staffing(
        agents=agents,
        traffic_erlangs=traffic,
        p_wait=p_wait(agents, traffic),
        service_level=service_level(agents, traffic, aht_s, threshold_s),
        asa_seconds=asa_seconds(agents, traffic, aht_s),
        occupancy=min(1.0, traffic / agents) if agents else 1.0,
    )


def agents_needed(calls_per_hour: float, aht_s: float, sl_target: float, threshold_s: float) -> Staffing:
    """The fewest agents whose Erlang C service level meets ``sl_target``."""
    if not 0 < sl_target < 1:
        raise ValueError(f"sl_target must be between 0 and 1 (exclusive), got {sl_target}")
    traffic = traffic_erlangs(calls_per_hour, aht_s)
    agents = max(1, math.floor(traffic) + 1)
    while service_level(agents, traffic, aht_s, threshold_s) < sl_target:
        agents += 1
    return staffing(agents, calls_per_hour, aht_s, threshold_s)
