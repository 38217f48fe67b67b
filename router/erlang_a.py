"""Erlang A (Palm's M/M/n+M): the queueing model that counts callers who give up. Pure functions.

The model: calls arrive as a Poisson stream (rate lambda), n agents serve them first come,
first served, handle times are exponential (mean AHT = 1/mu), and each caller's patience
is exponential (mean P = 1/theta): a caller who has not been answered when their
patience runs out hangs up. Erlang C is its limit as P -> infinity (no one abandons).

Every figure is per arriving ("offered") caller, as router/kpi.py counts them:

- ``p_wait``: P(an arriving caller finds every agent busy and queues).
- ``abandon_rate``: P(the caller hangs up before an agent answers) = abandoned / offered.
- ``answered_within``: P(answered, and the wait <= T); callers answered at once count.
- ``abandoned_within``: P(abandoned, and the wait (until hanging up) <= T).
- ``service_level(formula)``: router/kpi.py's three formulas on those shares: answered
  within T / answered, / (answered + abandoned), and the default / (answered + abandoned
  after T) = answered_within / (1 - abandoned_within): short abandons are left out.
- ``asa_seconds``: the mean wait of the answered callers (router/kpi.py's ASA), abandons
  left out.
- ``occupancy``: carried traffic / agents = A (1 - abandon_rate) / n: callers who give up
  take no agent time.

Method: the state probabilities of the birth-death chain of calls in the system (Palm
1943; Garnett, Mandelbaum & Reiman, "Designing a call center with impatient customers",
M&SOM 4(3), 2002, section 3; Mandelbaum & Zeltyn, "Service engineering in action: the
Palm/Erlang-A queue, with applications to call centers", 2007). Births at rate lambda,
deaths at k mu for k <= n and n mu + (k - n) theta above n, so relative to pi_n:
pi_k = pi_n n! A^(k-n) / k! for k < n (their sum is 1/B(n, A) - 1, B = Erlang B) and
pi_(n+j) = pi_n prod_(i=1..j) lambda / (n mu + i theta).
An arriving caller who finds j callers queued (PASTA) would be answered after the offered
wait V_j, the sum of exponentials of rates n mu + i theta for i = 0..j; with c = n mu / theta,
U = exp(-theta V_j) has the Beta(c, j + 1) law (the Laplace transform of V_j is
prod (c + i) / (c + i + s / theta) = B(c + s / theta, j + 1) / B(c, j + 1)). The caller is
answered when V_j < its patience, so with w = exp(-theta T) and I the regularized
incomplete beta function:

- P(answered | j) = E[U] = c / (c + j + 1),
- P(answered, V_j <= T | j) = E[U; U >= w] = c / (c + j + 1) (1 - I_w(c + 1, j + 1)),
- P(abandoned after T | j) = E[(w - U)+] = w I_w(c, j + 1) - c / (c + j + 1) I_w(c + 1, j + 1),
- E[V_j; answered | j] = c / (c + j + 1) sum_(i=1..j+1) 1 / (n mu + i theta).

I_w(a, j + 1) is the distribution function of a negative binomial (a successes, success
probability w) at j, so it grows over j by its probability mass, a recurrence of positive
terms. Summed over j with the chain's weights these are Garnett, Mandelbaum & Reiman's
closed forms in incomplete gamma functions (e.g. P(V > t) = pi_n c e^x x^-c
gamma(c, x e^(-theta t)) with x = lambda / theta).

Numerically: one pass over j, every term positive (but the abandoned-after-T difference,
whose error is absolute, not relative), the chain's weights and the negative binomial's
masses in logarithms with the running sums rescaled to the largest weight so far, so that
nothing overflows for thousands of agents and heavy traffic. The pass stops past the
queue length's mode once the weights' geometric tail bound is below 1e-17 of their sum;
its length is about the mode (lambda - n mu) / theta plus a few hundred.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from router.domain import DEFAULT_SL_FORMULA, SlFormula
from router.erlang import erlang_b, traffic_erlangs

TAIL_EPSILON = 1e-17
# Beyond this many queue lengths the model is not evaluated (heavy overload with very long
# patience: lambda - n mu over theta callers queued): a staffing search never needs it.
MAX_QUEUE_TERMS = 5_000_000


class ErlangAInputError(ValueError):
    """The model cannot be evaluated for these inputs."""


@dataclass(frozen=True, slots=True)
class ErlangAFigures:
    """One staffing level under Erlang A; shares are of every arriving caller."""

    agents: int
    traffic_erlangs: float
    patience_s: float
    threshold_s: float
    p_wait: float
    abandon_rate: float
    answered_within: float
    abandoned_within: float
    asa_seconds: float
    occupancy: float

    @property
    def answered(self) -> float:
        return 1.0 - self.abandon_rate

    def service_level(self, formula: SlFormula = DEFAULT_SL_FORMULA) -> float:
        """The share answered within T by router/kpi.py's ``formula``."""
        if formula == "answered_within_over_answered":
            return _ratio(self.answered_within, self.answered)
        if formula == "answered_within_over_answered_and_abandoned":
            return self.answered_within  # every caller is answered or abandons
        return _ratio(self.answered_within, 1.0 - self.abandoned_within)


def _ratio(numerator: float, denominator: float) -> float:
    return min(1.0, numerator / denominator) if denominator > 0 else 0.0


@dataclass(slots=True)
class QueueSums:
    """Sums over the queue length j seen by an arrival, each weighted by pi_(n+j) / pi_n,
    all scaled by exp(-log_scale)."""

    log_scale: float = 0.0
    weight: float = 0.0  # sum of the weights: P(wait) once normalised
    abandoned: float = 0.0  # P(abandoned | j)
    answered_within: float = 0.0  # P(answered, V_j <= T | j)
    abandoned_after: float = 0.0  # P(T < patience < V_j | j)
    answered_wait: float = 0.0  # E[V_j; answered | j]

    def rescale(self, factor: float) -> None:
        self.weight *= factor
        self.abandoned *= factor
        self.answered_within *= factor
        self.abandoned_after *= factor
        self.answered_wait *= factor


@dataclass(slots=True)
class NegativeBinomialCdf:
    """I_w(a, j + 1) for j = 0, 1, ...: the negative binomial's distribution function,
    its mass kept in logarithms (w^a underflows for many agents and a long threshold)."""

    a: float
    log_1mw: float
    log_mass: float
    value: float = 0.0

    def advance(self, j: int, log_a_j_minus_1: float, log_j: float) -> float:
        """The function at ``j`` (call with j = 0, 1, ... in turn); log(a + j - 1) and log(j) given."""
        if j > 0:
            self.log_mass += self.log_1mw + log_a_j_minus_1 - log_j
        self.value = min(1.0, self.value + math.exp(self.log_mass))
        return self.value


def queue_sums(
    agents: int, arrival_rate: float, aht_s: float, patience_s: float, threshold_s: float
) -> QueueSums:
    """The sums over the queue lengths an arrival may find (see the module's docstring)."""
    service, theta = agents / aht_s, 1.0 / patience_s
    c, x = service / theta, arrival_rate / theta
    if x - c > MAX_QUEUE_TERMS:
        raise ErlangAInputError(
            f"about {x - c:.3g} callers would queue ({agents} agents for {arrival_rate * aht_s:.4g} Erlangs "
            f"with {patience_s:g} s patience): too far overloaded to evaluate"
        )
    w = math.exp(-theta * threshold_s)
    log_1mw = math.log(-math.expm1(-theta * threshold_s)) if threshold_s > 0 else 0.0
    at_zero = NegativeBinomialCdf(c, log_1mw, c * -theta * threshold_s)
    at_one = NegativeBinomialCdf(c + 1, log_1mw, (c + 1) * -theta * threshold_s)
    sums, log_x = QueueSums(), math.log(x)
    log_weight, harmonic, log_c_j = 0.0, 0.0, math.log(c)
    j = 0
    while True:
        log_c_prev, log_c_j = log_c_j, math.log(c + j)
        log_j = math.log(j) if j else 0.0
        if j:
            log_weight += log_x - log_c_j
        if threshold_s > 0:
            cdf, cdf_next = at_zero.advance(j, log_c_prev, log_j), at_one.advance(j, log_c_j, log_j)
        else:
            cdf = cdf_next = 1.0  # every V_j > 0
        harmonic += 1.0 / (service + (j + 1) * theta)
        if log_weight > sums.log_scale:
            sums.rescale(math.exp(sums.log_scale - log_weight))
            sums.log_scale = log_weight
        weight = math.exp(log_weight - sums.log_scale)
        answered = c / (c + j + 1)
        sums.weight += weight
        sums.abandoned += weight * (j + 1) / (c + j + 1)
        sums.answered_within += weight * answered * (1.0 - cdf_next)
        sums.abandoned_after += weight * max(0.0, w * cdf - answered * cdf_next)
        sums.answered_wait += weight * answered * harmonic
        j += 1
        ratio = x / (c + j)
        if ratio < 1 and weight * ratio / (1 - ratio) < TAIL_EPSILON * sums.weight:
            return sums


def figures(
    agents: int, calls_per_hour: float, aht_s: float, patience_s: float, threshold_s: float
) -> ErlangAFigures:
    """Erlang A's figures for ``agents`` agents (see the module's docstring for each)."""
    if agents < 1:
        raise ErlangAInputError(f"agents must be at least 1, got {agents}")
    if not (aht_s > 0 and patience_s > 0 and math.isfinite(patience_s) and threshold_s >= 0):
        raise ErlangAInputError(
            f"need aht_s > 0, 0 < patience_s < inf, threshold_s >= 0; got {aht_s}, {patience_s}, {threshold_s}"
        )
    traffic = traffic_erlangs(calls_per_hour, aht_s)
    if traffic <= 0:
        return ErlangAFigures(agents, 0.0, patience_s, threshold_s, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0)
    sums = queue_sums(agents, calls_per_hour / 3600.0, aht_s, patience_s, threshold_s)
    total = sums.weight + _below_n(agents, traffic, sums.log_scale)
    p_wait = sums.weight / total
    abandoned = sums.abandoned / total
    answered = 1.0 - abandoned
    abandoned_within = max(0.0, abandoned - sums.abandoned_after / total)
    return ErlangAFigures(
        agents=agents,
        traffic_erlangs=traffic,
        patience_s=patience_s,
        threshold_s=threshold_s,
        p_wait=p_wait,
        abandon_rate=abandoned,
        answered_within=min(answered, (1.0 - p_wait) + sums.answered_within / total),
        abandoned_within=abandoned_within,
        asa_seconds=(sums.answered_wait / total) / answered if answered > 0 else math.inf,
        occupancy=min(1.0, traffic * answered / agents),
    )


def _below_n(agents: int, traffic: float, log_scale: float) -> float:
    """sum_(k<n) pi_k / pi_n = 1 / B(n, A) - 1, scaled by exp(-log_scale) like the sums."""
    blocking = erlang_b(agents, traffic)
    if blocking <= 0.0:
        return math.inf  # far more agents than traffic: nobody waits
    return math.exp(math.log1p(-blocking) - math.log(blocking) - log_scale)


def agents_needed(
    calls_per_hour: float,
    aht_s: float,
    patience_s: float,
    sl_target: float,
    threshold_s: float,
    formula: SlFormula = DEFAULT_SL_FORMULA,
) -> ErlangAFigures:
    """The fewest agents whose Erlang A service level (by ``formula``) meets ``sl_target``.

    The service level grows with the agents, so the search gallops from A agents (the load
    at which the queue would grow without abandonment) and then bisects.
    """
    if not 0 < sl_target < 1:
        raise ValueError(f"sl_target must be between 0 and 1 (exclusive), got {sl_target}")

    def at(agents: int) -> ErlangAFigures:
        return figures(agents, calls_per_hour, aht_s, patience_s, threshold_s)

    def meets(agents: int) -> bool:
        try:
            return at(agents).service_level(formula) >= sl_target
        except ErlangAInputError:
            return False  # so overloaded that waits run to hours: far below any target

    start = max(1, math.ceil(traffic_erlangs(calls_per_hour, aht_s)))
    low, high = _bracket(start, meets)
    while high - low > 1:  # low fails (or is 0), high meets
        middle = (low + high) // 2
        low, high = (low, middle) if meets(middle) else (middle, high)
    return at(high)


def _bracket(start: int, meets: Callable[[int], bool]) -> tuple[int, int]:
    """(low, high): low failing (or 0), high meeting, found by doubling steps from ``start``."""
    step = 1
    if meets(start):
        high = start
        while high > 1:
            candidate = max(1, high - step)
            if not meets(candidate):
                return candidate, high
            high, step = candidate, step * 2
        return 0, 1
    low = start
    while not meets(low + step):
        low, step = low + step, step * 2
    return low, low + step
