"""Erlang A (router/erlang_a.py) against independent computations.

- A brute-force solution of the birth-death chain, truncated far out (numpy: the balance
  equations solved as a linear system), and the waiting times of a tagged caller from an
  absorbing Markov chain (uniformization for the shares within T, the fundamental matrix for
  the mean wait). It shares no formula with the module: no product form, no Beta law.
- Monte-Carlo simulation of the M/M/n+M queue, within sampling error.
- Erlang C, the limit of infinite patience.
"""

from __future__ import annotations

import heapq
import math
import random
import statistics
import time
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router import erlang, erlang_a
from router.erlang_a import ErlangAFigures, ErlangAInputError


@dataclass(frozen=True)
class Case:
    agents: int
    calls_per_hour: float
    aht_s: float
    patience_s: float
    threshold_s: float
    queue_cap: int  # the brute force's truncation: callers queued at most

    def figures(self) -> ErlangAFigures:
        return erlang_a.figures(
            self.agents, self.calls_per_hour, self.aht_s, self.patience_s, self.threshold_s
        )


CASES = [
    Case(1, 40, 60, 30, 10, 150),  # M/M/1+M
    Case(5, 200, 90, 45, 20, 200),  # A = 5 = n
    Case(20, 1980, 29.5, 60, 10, 250),  # the load tests' check queue, with patience
    Case(10, 600, 84, 40, 20, 250),  # A = 14: overloaded, abandonment keeps it stable
    Case(100, 2000, 171, 300, 20, 400),  # A = 95
    Case(8, 100, 180, 600, 30, 300),  # A = 5, patient callers: near Erlang C
]


def brute_force(case: Case) -> dict[str, float]:
    """The same figures from the truncated chain and a tagged caller's absorbing chain."""
    n, lam = case.agents, case.calls_per_hour / 3600
    mu, theta, cap = 1 / case.aht_s, 1 / case.patience_s, case.queue_cap
    size = n + cap + 1
    gen = np.zeros((size, size))
    for k in range(size):
        if k + 1 < size:
            gen[k, k + 1] = lam
        if k > 0:
            gen[k, k - 1] = min(k, n) * mu + max(0, k - n) * theta
        gen[k, k] = -gen[k].sum()
    system = np.vstack([gen.T, np.ones(size)])
    pi = np.linalg.lstsq(system, np.r_[np.zeros(size), 1.0], rcond=None)[0]
    # The mass at the cap must be negligible beside the 3 decimals compared; the solver's
    # round-off alone leaves about 1e-15 there (1.1e-15 was seen under OpenBLAS threads).
    assert pi[-1] < 1e-12, "truncate further out"
    queued = pi[n:-1]  # an arrival finding m = 0..cap-1 callers queued
    served_by, abandoned_by = tagged_within(n * mu, theta, cap, case.threshold_s)
    transient = tagged_generator(n * mu, theta, cap)
    fundamental = np.linalg.inv(-transient)
    to_served = np.zeros(cap)
    to_served[0] = n * mu
    p_served = fundamental @ to_served
    wait_served = fundamental @ p_served  # E[time to the answer; answered]
    abandoned = float(theta * sum((k - n) * pi[k] for k in range(n, size)) / lam)
    return {
        "p_wait": float(pi[n:].sum()),
        "abandon_rate": abandoned,
        "abandon_rate_from_tagged": float(queued @ (1 - p_served)),
        "answered_within": float(pi[:n].sum() + queued @ served_by),
        "abandoned_within": float(queued @ abandoned_by),
        "asa_seconds": float(queued @ wait_served) / (1 - abandoned),
        "occupancy": float(sum(min(k, n) * pi[k] for k in range(size)) / n),
    }


def tagged_generator(service: float, theta: float, cap: int) -> np.ndarray:
    """A queued caller with m callers ahead: m -> m - 1 at n mu + m theta; gone at theta."""
    gen = np.zeros((cap, cap))
    for m in range(cap):
        if m > 0:
            gen[m, m - 1] = service + m * theta
        gen[m, m] = -(service + m * theta + theta)
    return gen


def tagged_within(service: float, theta: float, cap: int, t: float) -> tuple[np.ndarray, np.ndarray]:
    """P(answered by t), P(abandoned by t) from each m, by uniformization."""
    rate = service + cap * theta
    step = np.eye(cap) + tagged_generator(service, theta, cap) / rate
    served, gone = np.zeros(cap), np.full(cap, theta / rate)
    served[0] = service / rate
    # Absorbed by t = sum over jumps k of P(Poisson(rate t) > k) * P(absorbed at jump k + 1).
    p_served, p_gone = np.zeros(cap), np.zeros(cap)
    weight, tail = math.exp(-rate * t), 1.0
    for k in range(100_000):
        tail -= weight
        if tail < 1e-17:
            break
        p_served += tail * served
        p_gone += tail * gone
        served, gone = step @ served, step @ gone
        for vector in (served, gone):
            vector[np.abs(vector) < 1e-200] = 0.0  # no subnormals: they are slow
        weight *= rate * t / (k + 1)
    return p_served, p_gone


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"n{c.agents}-A{c.calls_per_hour * c.aht_s / 3600:g}")
def test_agrees_with_a_brute_force_solution_of_the_chain(case: Case) -> None:
    ours, truth = case.figures(), brute_force(case)
    assert truth["abandon_rate"] == pytest.approx(truth["abandon_rate_from_tagged"], abs=1e-10)
    for name in ("p_wait", "abandon_rate", "answered_within", "abandoned_within", "occupancy"):
        assert getattr(ours, name) == pytest.approx(truth[name], abs=1e-9), name
    assert ours.asa_seconds == pytest.approx(truth["asa_seconds"], rel=1e-9)
    # Default service level: answered within T / (answered + abandoned after T).
    expected_sl = truth["answered_within"] / (1 - truth["abandoned_within"])
    assert ours.service_level() == pytest.approx(expected_sl, abs=1e-9)


def test_the_three_service_level_formulas() -> None:
    f = CASES[3].figures()
    assert f.service_level("answered_within_over_answered") == pytest.approx(
        f.answered_within / (1 - f.abandon_rate)
    )
    assert f.service_level("answered_within_over_answered_and_abandoned") == pytest.approx(f.answered_within)
    assert f.service_level() == pytest.approx(f.answered_within / (1 - f.abandoned_within))
    # Leaving short abandons out ranks between the other two.
    assert (
        f.service_level("answered_within_over_answered_and_abandoned")
        < f.service_level()
        < f.service_level("answered_within_over_answered")
    )


@pytest.mark.parametrize("agents", [16, 22])
def test_reduces_to_erlang_c_as_patience_grows(agents: int) -> None:
    traffic, aht = 12.0, 180.0
    for patience, tolerance in ((1e6, 5e-5), (1e9, 5e-8)):
        f = erlang_a.figures(agents, 240, aht, patience, 20)
        assert f.p_wait == pytest.approx(erlang.p_wait(agents, traffic), abs=tolerance)
        assert f.service_level() == pytest.approx(
            erlang.service_level(agents, traffic, aht, 20), abs=tolerance
        )
        c_asa = erlang.asa_seconds(agents, traffic, aht)
        assert f.asa_seconds == pytest.approx(c_asa, rel=tolerance * 10)
        assert f.abandon_rate == pytest.approx(c_asa / patience, rel=1e-3)  # P(ab) = theta E[wait]


def test_overloaded_patient_callers_all_wait_and_the_excess_gives_up() -> None:
    # Erlang C has no answer for 10 agents and 12 Erlangs; Erlang A's queue settles where
    # the callers giving up match the excess: 2 of 12 Erlangs.
    f = erlang_a.figures(10, 240, 180, 1e5, 20)
    assert f.p_wait == pytest.approx(1.0, abs=1e-9)
    assert f.abandon_rate == pytest.approx(2 / 12, rel=1e-3)
    assert f.occupancy == pytest.approx(1.0, abs=1e-9)


def simulate(case: Case, calls: int, seed: int) -> list[tuple[float, bool]]:
    """FCFS M/M/n+M: (wait, answered) per caller after a warm-up. A caller's offered wait
    depends only on earlier callers, and one who gives up takes no agent time."""
    rng = random.Random(seed)
    lam, free_at = case.calls_per_hour / 3600, [0.0] * case.agents
    now, out = 0.0, []
    for i in range(calls):
        now += rng.expovariate(lam)
        offered = max(0.0, free_at[0] - now)
        patience = rng.expovariate(1 / case.patience_s)
        if offered < patience:
            heapq.heapreplace(free_at, now + offered + rng.expovariate(1 / case.aht_s))
        if i >= calls // 20:
            out.append((offered, True) if offered < patience else (patience, False))
    return out


def batch_estimates(
    outcomes: list[tuple[float, bool]], t: float, batches: int = 20
) -> dict[str, tuple[float, float]]:
    """(estimate, standard error by batch means) of each figure."""
    size = len(outcomes) // batches
    per_batch: dict[str, list[float]] = {"abandon_rate": [], "service_level": [], "asa_seconds": []}
    for b in range(batches):
        part = outcomes[b * size : (b + 1) * size]
        answered = [w for w, ok in part if ok]
        short = sum(1 for w, ok in part if not ok and w <= t)
        per_batch["abandon_rate"].append(1 - len(answered) / len(part))
        per_batch["service_level"].append(sum(w <= t for w in answered) / (len(part) - short))
        per_batch["asa_seconds"].append(statistics.fmean(answered))
    return {
        name: (statistics.fmean(values), statistics.stdev(values) / math.sqrt(batches))
        for name, values in per_batch.items()
    }


@pytest.mark.parametrize("case", [CASES[2], CASES[3]], ids=["n20-A16.2", "n10-A14"])
def test_agrees_with_monte_carlo_simulation_within_sampling_error(case: Case) -> None:
    ours = case.figures()
    measured = batch_estimates(simulate(case, 200_000, seed=case.agents), case.threshold_s)
    for name, theory in (
        ("abandon_rate", ours.abandon_rate),
        ("service_level", ours.service_level()),
        ("asa_seconds", ours.asa_seconds),
    ):
        value, se = measured[name]
        assert abs(value - theory) <= 4 * se, (name, value, theory, se)
        assert se < 0.05 * max(theory, 0.05), (name, se)  # the check has teeth


def test_stable_and_fast_for_thousands_of_agents() -> None:
    started = time.perf_counter()
    for agents, traffic, patience in ((3000, 2950.0, 120.0), (3000, 3600.0, 300.0), (5000, 4000.0, 1e6)):
        f = erlang_a.figures(agents, traffic * 3600 / 180, 180, patience, 20)
        values = (f.p_wait, f.abandon_rate, f.answered_within, f.abandoned_within, f.service_level())
        assert all(0.0 <= v <= 1.0 for v in values), f
        assert math.isfinite(f.asa_seconds) and f.asa_seconds >= 0
        # Flow balance: callers who give up are those beyond the agents' capacity.
        assert f.occupancy * agents == pytest.approx(traffic * (1 - f.abandon_rate), rel=1e-9)
    overloaded = erlang_a.figures(3000, 3600 * 3600 / 180, 180, 300, 20)
    assert overloaded.abandon_rate == pytest.approx(600 / 3600, rel=0.01)  # the excess gives up
    assert time.perf_counter() - started < 5


@settings(deadline=None, max_examples=60)
@given(
    st.integers(1, 40),
    st.floats(0.2, 60.0),
    st.floats(5.0, 600.0),
    st.sampled_from(["answered_within_over_answered", "answered_within_over_answered_and_abandoned", None]),
)
def test_more_agents_never_hurt(agents: int, traffic: float, patience: float, formula: str | None) -> None:
    fewer = erlang_a.figures(agents, traffic * 20, 180, patience, 20)
    more = erlang_a.figures(agents + 1, traffic * 20, 180, patience, 20)
    assert more.p_wait <= fewer.p_wait + 1e-12
    assert more.abandon_rate <= fewer.abandon_rate + 1e-12
    chosen = formula or "answered_within_over_answered_and_abandoned_after_threshold"
    assert more.service_level(chosen) >= fewer.service_level(chosen) - 1e-12  # type: ignore[arg-type]


def test_minimum_staffing_meets_the_target_and_one_fewer_does_not() -> None:
    for calls_per_hour, aht, patience in ((240, 180, 120), (36_000, 300, 120), (100, 300, 30)):
        needed = erlang_a.agents_needed(calls_per_hour, aht, patience, 0.8, 20)
        assert needed.service_level() >= 0.8
        if needed.agents > 1:
            fewer = erlang_a.figures(needed.agents - 1, calls_per_hour, aht, patience, 20)
            assert fewer.service_level() < 0.8
        # Abandonment takes load off: never more agents than Erlang C.
        assert needed.agents <= erlang.agents_needed(calls_per_hour, aht, 0.8, 20).agents


def test_inputs_it_cannot_answer() -> None:
    with pytest.raises(ErlangAInputError, match="agents"):
        erlang_a.figures(0, 100, 180, 60, 20)
    with pytest.raises(ErlangAInputError, match="patience"):
        erlang_a.figures(5, 100, 180, math.inf, 20)
    with pytest.raises(ErlangAInputError, match="overloaded"):
        erlang_a.figures(1, 36_000, 300, 1e9, 20)
    quiet = erlang_a.figures(3, 0, 180, 60, 20)
    assert (quiet.p_wait, quiet.abandon_rate, quiet.service_level()) == (0.0, 0.0, 1.0)
