"""Queueing-theory check: do the router's measured service level, ASA (and abandonment)
agree with Erlang C, or with Erlang A when callers abandon?

Applies to scenarios where the model's assumptions hold (see ``model_for``): one queue, one
Poisson traffic line, exponential handle times, no wrap-up, every agent qualified,
capacity 1, agents who always answer after a fixed delay, no breaks, a constant arrival
rate, and either no abandonment (Erlang C) or exponential patience (Erlang A,
router/erlang_a.py: the caller's patience runs until the answer, ringing included).

- **Measured**: the router's own records (Redis call hashes: ``entered_at``,
  ``offered_at``, ``answered_at``, ``ended_at``, simulated seconds) of the calls that
  arrived after a warm-up (the system starts empty, which flatters early service level):
  wait = answered_at - entered_at, as the router counts it for ASA and service level.
- **Theory**: Erlang C (or A) with the scenario's arrival rate and AHT = the time an agent is
  unavailable to the router per call = expected talk time (the scenario's distribution)
  + the measured mean time from offer to answer (dispatch + ringing) + the measured mean
  time from a hang-up to the router's next offer to that agent when calls were waiting
  (the pipeline's reaction time). The wait the router measures ends at the answer, so it
  is Erlang C's queue wait plus the offer-to-answer time, and, for a call that found an
  agent free, the time the router took to offer it: the theory adds both. Under Erlang A a
  caller answered must still be there at the answer: exponential patience is memoryless, so
  a caller offered after a queue wait V is answered with probability e^(-r/P) (r the
  offer-to-answer time, P the mean patience), and the queue wait's threshold is T - r.
  Service level is counted by the queue's formula (router/kpi.py), abandons by the time
  the caller hung up.
- **Sampling error**: waits in a queue are strongly autocorrelated, so the naive standard
  error of a run's mean is far too small, and batch means need batches many times longer
  than the queue's relaxation time (several AHTs) to be right. The standard error used is
  the spread of the same statistic over replications of the ideal model (M/G/N, FCFS,
  Poisson arrivals, the run's length, warm-up and service time; with exponential patience
  for Erlang A), started empty like the run: the sampling distribution under the
  hypothesis that the model holds, so z is measured against the replications' mean (on a
  run that settles, the formula's figure). Batch means are reported next to it.
"""

from __future__ import annotations

import heapq
import itertools
import json
import math
import random
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from load_tests.scenario import Scenario
from load_tests.summary import percentile
from router import erlang, erlang_a, kpi
from router.domain import DEFAULT_SL_FORMULA, SlFormula, requirements_met

# A call's handle time is max(MIN_HANDLE_S, sample) (load_tests.traffic).
MIN_HANDLE_S = 1.0
Z_LIMIT = 3.0
REFERENCE_REPLICATIONS = 200
BATCHES = 10


@dataclass(frozen=True, slots=True)
class ErlangModel:
    """Erlang C's (or A's) inputs, from a scenario that meets their assumptions."""

    queue: str
    agents: int
    calls_per_hour: float
    handle_mean_s: float  # the scenario's exponential mean
    answer_delay_s: float
    threshold_s: float
    patience_mean_s: float | None = None  # exponential patience: Erlang A
    formula: SlFormula = DEFAULT_SL_FORMULA

    @property
    def name(self) -> str:
        return "erlang-c" if self.patience_mean_s is None else "erlang-a"

    @property
    def arrival_rate(self) -> float:
        return self.calls_per_hour / 3600.0

    @property
    def talk_mean_s(self) -> float:
        """Expected talk time: E[max(c, X)] = c + m e^(-c/m) for X exponential with mean m."""
        m = self.handle_mean_s
        return MIN_HANDLE_S + m * math.exp(-MIN_HANDLE_S / m)


@dataclass(frozen=True, slots=True)
class CallTimes:
    """One call's timestamps as the router recorded them (simulated seconds; None if not reached)."""

    call_id: str
    entered_at: float
    offered_at: float | None
    answered_at: float | None
    ended_at: float | None
    agent_id: str = ""
    trigger: str = ""  # what started the decision that offered it: call, agent, relax, ...
    abandoned: bool = False  # the caller hung up before an answer (at ended_at)

    @property
    def wait_s(self) -> float | None:
        return None if self.answered_at is None else self.answered_at - self.entered_at

    @property
    def abandon_wait_s(self) -> float | None:
        """How long an abandoning caller waited before hanging up."""
        if not self.abandoned or self.ended_at is None:
            return None
        return self.ended_at - self.entered_at


@dataclass(frozen=True, slots=True)
class Overheads:
    """The pipeline's own times per call, measured in the run (simulated seconds)."""

    offer_to_answer_s: float  # Redirect through Kafka and the dispatcher, then ringing
    free_lag_s: float  # hang-up -> next offer to that agent, when a call was waiting
    arrival_lag_s: float  # arrival -> offer, for calls that found an agent free
    free_lag_p99_s: float = 0.0
    arrival_lag_p99_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Reference:
    """The ideal model's sampling distribution for a run of this length: mean and spread."""

    replications: int
    sl_mean: float
    sl_sd: float
    asa_mean: float
    asa_sd: float
    abandon_mean: float = 0.0
    abandon_sd: float = 0.0


@dataclass(frozen=True, slots=True)
class Prediction:
    """What the model predicts for the wait the router measures (see ``predict``)."""

    p_wait: float
    service_level: float
    asa_seconds: float
    abandon_rate: float = 0.0


@dataclass(frozen=True, slots=True)
class Comparison:
    """Measured versus Erlang C (or A: ``model``), with sampling errors and the verdict.

    ``calls`` are the answered calls of the window; service level is by the queue's formula
    (``service_level_formula``), which without abandons is answered within T / answered.
    """

    queue: str
    agents: int
    calls_per_hour: float
    threshold_s: float
    warmup_s: float
    window_s: float
    calls: int
    not_answered: int
    offer_to_answer_s: float
    free_lag_s: float
    free_lag_p99_s: float
    arrival_lag_s: float
    arrival_lag_p99_s: float
    aht_s: float
    aht_measured_s: float | None
    traffic_erlangs: float
    p_wait: float
    service_level: float
    service_level_theory: float
    service_level_se: float
    service_level_batch_se: float | None
    service_level_z: float
    asa_seconds: float
    asa_seconds_theory: float
    asa_seconds_se: float
    asa_seconds_batch_se: float | None
    asa_z: float
    occupancy: float | None
    occupancy_theory: float
    finite_run_service_level: float
    finite_run_asa_seconds: float
    replications: int
    z_limit: float
    agrees: bool
    model: str = "erlang-c"
    service_level_formula: str = DEFAULT_SL_FORMULA
    patience_s: float | None = None
    abandoned: int = 0
    abandon_rate: float = 0.0
    abandon_rate_theory: float = 0.0
    abandon_rate_se: float = 0.0
    abandon_z: float = 0.0
    finite_run_abandon_rate: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def model_for(scenario: Scenario) -> ErlangModel | str:
    """The scenario's Erlang C model (Erlang A when callers abandon with exponential patience),
    or why the model's assumptions do not hold for it."""
    reason = _unsuitable(scenario)
    if reason:
        return reason
    queue, line = scenario.queues[0], scenario.traffic[0]
    assert line.handle_time_s.mean is not None and scenario.agent_behaviour.answer_delay_s.mean is not None
    return ErlangModel(
        queue=queue.name,
        agents=len(scenario.all_agents()),
        calls_per_hour=line.calls_per_hour,
        handle_mean_s=line.handle_time_s.mean,
        answer_delay_s=scenario.agent_behaviour.answer_delay_s.mean,
        threshold_s=queue.service_level.threshold_s,
        patience_mean_s=None if line.patience_s is None else line.patience_s.mean,
        formula=queue.service_level.formula,
    )


def _unsuitable(scenario: Scenario) -> str:
    if len(scenario.queues) != 1 or len(scenario.traffic) != 1:
        return "needs exactly one queue and one traffic line"
    queue, line = scenario.queues[0], scenario.traffic[0]
    behaviour = scenario.agent_behaviour
    checks = (
        (line.handle_time_s.dist != "exponential", "handle times are not exponential"),
        (
            line.patience_s is not None and line.patience_s.dist != "exponential",
            "callers' patience is not exponential (Erlang A needs it)",
        ),
        (queue.wrapup_s > 0, "the queue has wrap-up time"),
        (queue.overflow is not None, "the queue overflows"),
        (behaviour.answer_probability < 1, "agents let calls ring out"),
        (behaviour.answer_delay_s.dist != "fixed", "the answer delay is not fixed"),
        (behaviour.breaks is not None, "agents take breaks"),
        (any(p.rate_factor != 1 for p in scenario.phases), "the arrival rate changes by phase"),
        (any(a.capacity != 1 for a in scenario.all_agents()), "an agent has capacity above 1"),
        (not _all_qualified(scenario), "not every agent qualifies for every call"),
    )
    return next((why for failed, why in checks if failed), "")


def _all_qualified(scenario: Scenario) -> bool:
    queue, line = scenario.queues[0], scenario.traffic[0]
    needed = [line.requirements if line.requirements is not None else queue.requirements]
    needed += [step.requirements for step in queue.relax]
    return all(requirements_met(r, a.skills) for r in needed for a in scenario.all_agents())


def call_times(call_id: str, fields: Mapping[str, str]) -> CallTimes | None:
    """From a router call hash (None when it has no entry time)."""

    def number(name: str) -> float | None:
        text = fields.get(name) or ""
        try:
            return float(text)
        except ValueError:
            return None

    entered = number("entered_at")
    if entered is None:
        return None
    offered, answered, ended = number("offered_at"), number("answered_at"), number("ended_at")
    return CallTimes(
        call_id,
        entered,
        offered,
        answered,
        ended,
        fields.get("agent") or "",
        _trigger(fields),
        abandoned=fields.get("state") == "abandoned",
    )


def _trigger(fields: Mapping[str, str]) -> str:
    try:
        decision = json.loads(fields.get("decision") or "{}")
    except ValueError:
        return ""
    return str(decision.get("trigger", "")) if isinstance(decision, dict) else ""


def measure_overheads(
    calls: Sequence[CallTimes], measured: Sequence[CallTimes], answer_delay_s: float
) -> Overheads:
    """Offer-to-answer and arrival lag over the ``measured`` calls; the freeing lag over all."""
    rings = [c.answered_at - c.offered_at for c in measured if c.offered_at is not None and c.answered_at]
    arrivals = [
        c.offered_at - c.entered_at for c in measured if c.offered_at is not None and c.trigger == "call"
    ]
    freeing = free_lags(calls)
    return Overheads(
        offer_to_answer_s=statistics.fmean(rings) if rings else answer_delay_s,
        free_lag_s=_mean_or_zero(freeing),
        arrival_lag_s=_mean_or_zero(arrivals),
        free_lag_p99_s=percentile(freeing, 99) or 0.0,
        arrival_lag_p99_s=percentile(arrivals, 99) or 0.0,
    )


def free_lags(calls: Sequence[CallTimes]) -> list[float]:
    """Per agent, hang-up to the next offer when that offer was the agent's freeing (trigger agent)."""
    by_agent: dict[str, list[CallTimes]] = {}
    for call in calls:
        if call.agent_id and call.offered_at is not None:
            by_agent.setdefault(call.agent_id, []).append(call)
    lags = []
    for own in by_agent.values():
        own.sort(key=lambda c: c.offered_at or 0.0)
        for before, after in itertools.pairwise(own):
            if after.trigger == "agent" and before.ended_at is not None and after.offered_at is not None:
                lags.append(max(0.0, after.offered_at - before.ended_at))
    return lags


def _mean_or_zero(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else 0.0


def compare(
    model: ErlangModel,
    calls: Iterable[CallTimes],
    *,
    start_at: float,
    end_at: float,
    warmup_s: float,
    replications: int = REFERENCE_REPLICATIONS,
    seed: int = 1,
) -> Comparison | None:
    """Measured figures of the calls that arrived in [start + warm-up, end] against the model.

    None when no call in the window was answered.
    """
    calls = list(calls)
    window = sorted(
        (c for c in calls if start_at + warmup_s <= c.entered_at <= end_at), key=lambda c: c.entered_at
    )
    answered = [c for c in window if c.answered_at is not None]
    if not answered:
        return None
    gave_up = [c.abandon_wait_s for c in window if c.abandon_wait_s is not None]
    measured = Outcomes([c.wait_s for c in answered if c.wait_s is not None], gave_up)
    lags = measure_overheads(calls, answered, model.answer_delay_s)
    aht = effective_aht(model, lags)
    predicted = predict(model, model.arrival_rate * aht, aht, lags)
    ref = reference(model, lags, end_at - start_at, warmup_s, replications, seed)
    sl = measured.service_level(model.threshold_s, model.formula)
    asa = statistics.fmean(measured.waits)
    abandon_rate = measured.abandon_rate()
    busy = [
        c.ended_at - c.offered_at for c in answered if c.ended_at is not None and c.offered_at is not None
    ]
    # Centred on the replications' mean: the statistic's expected value under the model for
    # a run this long started empty. On a run long enough to settle it is the formula's
    # figure; near saturation (a loaded machine's pipeline times can push the traffic close
    # to N) a short run never reaches the steady state the formula describes.
    zs = (
        _z(sl, ref.sl_mean, ref.sl_sd),
        _z(asa, ref.asa_mean, ref.asa_sd),
        _z(abandon_rate, ref.abandon_mean, ref.abandon_sd),
    )
    return Comparison(
        queue=model.queue,
        agents=model.agents,
        calls_per_hour=model.calls_per_hour,
        threshold_s=model.threshold_s,
        warmup_s=warmup_s,
        window_s=end_at - start_at - warmup_s,
        calls=len(answered),
        not_answered=len(window) - len(answered),
        offer_to_answer_s=lags.offer_to_answer_s,
        free_lag_s=lags.free_lag_s,
        free_lag_p99_s=lags.free_lag_p99_s,
        arrival_lag_s=lags.arrival_lag_s,
        arrival_lag_p99_s=lags.arrival_lag_p99_s,
        aht_s=aht,
        aht_measured_s=statistics.fmean(busy) if busy else None,
        traffic_erlangs=model.arrival_rate * aht,
        p_wait=predicted.p_wait,
        service_level=sl,
        service_level_theory=predicted.service_level,
        service_level_se=ref.sl_sd,
        service_level_batch_se=batch_means_se(measured.within_flags(model.threshold_s)),
        service_level_z=zs[0],
        asa_seconds=asa,
        asa_seconds_theory=predicted.asa_seconds,
        asa_seconds_se=ref.asa_sd,
        asa_seconds_batch_se=batch_means_se(measured.waits),
        asa_z=zs[1],
        occupancy=busy_share(calls, model.agents, start_at + warmup_s, end_at),
        # Like for like: the share of time from offer to hang-up (the lags are idle time).
        occupancy_theory=min(
            1.0,
            model.arrival_rate
            * (1 - predicted.abandon_rate)
            * (model.talk_mean_s + lags.offer_to_answer_s)
            / model.agents,
        ),
        finite_run_service_level=ref.sl_mean,
        finite_run_asa_seconds=ref.asa_mean,
        replications=ref.replications,
        z_limit=Z_LIMIT,
        agrees=all(abs(z) <= Z_LIMIT for z in zs),
        model=model.name,
        service_level_formula=model.formula,
        patience_s=model.patience_mean_s,
        abandoned=len(gave_up),
        abandon_rate=abandon_rate,
        abandon_rate_theory=predicted.abandon_rate,
        abandon_rate_se=ref.abandon_sd,
        abandon_z=zs[2],
        finite_run_abandon_rate=ref.abandon_mean,
    )


@dataclass(frozen=True, slots=True)
class Outcomes:
    """The waits of answered callers and of callers who hung up first, as the router counts them."""

    waits: list[float]
    gave_up: list[float]

    def service_level(self, threshold_s: float, formula: SlFormula) -> float:
        """By the queue's formula (router/kpi.py), from the counts the router keeps."""
        within = sum(w <= threshold_s for w in self.waits)
        stats = {
            "answered": float(len(self.waits)),
            "answered_within": float(within),
            "abandoned": float(len(self.gave_up)),
            "abandoned_after": float(sum(w > threshold_s for w in self.gave_up)),
        }
        return kpi.service_level(stats, formula) or 0.0

    def abandon_rate(self) -> float:
        total = len(self.waits) + len(self.gave_up)
        return len(self.gave_up) / total if total else 0.0

    def within_flags(self, threshold_s: float) -> list[float]:
        return [float(w <= threshold_s) for w in self.waits]


def effective_aht(model: ErlangModel, lags: Overheads) -> float:
    """Time an agent is held per call: talk + offer-to-answer + freeing lag, and the arrival lag
    of the calls that find it free (it is kept for them meanwhile)."""
    patience = model.patience_mean_s
    if patience is None:
        held = model.talk_mean_s + lags.offer_to_answer_s + lags.free_lag_s
        found_free = 1 - erlang.p_wait(model.agents, model.arrival_rate * held)
        return held + found_free * lags.arrival_lag_s
    # A caller who hangs up while it rings frees the agent then: the ring holds the agent
    # E[min(patience, r)] = P (1 - e^(-r/P)), and only callers still there talk.
    stays = math.exp(-lags.offer_to_answer_s / patience)
    held = patience * (1 - stays) + stays * model.talk_mean_s + lags.free_lag_s
    found_free = 1 - _erlang_a(model, held, model.threshold_s).p_wait
    return held + found_free * lags.arrival_lag_s


def _erlang_a(model: ErlangModel, aht_s: float, threshold_s: float) -> erlang_a.ErlangAFigures:
    assert model.patience_mean_s is not None
    return erlang_a.figures(
        model.agents, model.calls_per_hour, aht_s, model.patience_mean_s, max(0.0, threshold_s)
    )


def predict(model: ErlangModel, traffic: float, aht_s: float, lags: Overheads) -> Prediction:
    """The model's service level, ASA and abandon rate of the wait the router measures."""
    if model.patience_mean_s is None:
        sl, asa = theory(model, traffic, aht_s, lags)
        return Prediction(erlang.p_wait(model.agents, traffic), sl, asa)
    return predict_erlang_a(model, aht_s, lags)


def predict_erlang_a(model: ErlangModel, aht_s: float, lags: Overheads) -> Prediction:
    """Erlang A with the pipeline's times: a queued caller is offered after Erlang A's offered
    wait V, one who finds an agent free after the arrival lag a; either is answered the
    offer-to-answer time r later if still there. Patience is exponential (rate theta), so
    after an offer the caller stays for r with probability e^(-theta r) whatever it waited,
    and the queue's share answered within T is Erlang A's within T - r, times that."""
    assert model.patience_mean_s is not None
    theta, ring, lag, t = (
        1 / model.patience_mean_s,
        lags.offer_to_answer_s,
        lags.arrival_lag_s,
        model.threshold_s,
    )
    fig = _erlang_a(model, aht_s, t - ring)
    queued, free = fig.p_wait, 1 - fig.p_wait
    stays, free_stays = math.exp(-theta * ring), math.exp(-theta * (lag + ring))
    offered_q = queued - fig.abandon_rate  # queued callers still there at their offer
    answered = stays * offered_q + free * free_stays
    within_q = fig.answered_within - free  # queued callers offered within T - r
    answered_within = (stays * within_q if t >= ring else 0.0) + (
        free * free_stays if lag + ring <= t else 0.0
    )
    abandoned_within = free * -math.expm1(-theta * min(t, lag + ring)) + _queued_gone_within(
        fig, queued, theta, ring, t
    )
    waits_q = fig.asa_seconds * (1 - fig.abandon_rate) + ring * offered_q  # E[V + r; offered]
    asa = (stays * waits_q + free * free_stays * (lag + ring)) / answered
    counts = {
        "answered": answered,
        "answered_within": answered_within,
        "abandoned": 1 - answered,
        "abandoned_after": (1 - answered) - abandoned_within,
    }
    return Prediction(fig.p_wait, kpi.service_level(counts, model.formula) or 0.0, asa, 1 - answered)


def _queued_gone_within(
    fig: erlang_a.ErlangAFigures, queued: float, theta: float, ring: float, t: float
) -> float:
    """P(queued, and hung up by t before the answer at V + r).

    = P(queued, patience <= t) - P(V + r <= patience <= t); the second is
    e^(-theta r) E[(e^(-theta V) - w)+; queued] with w = e^(-theta (t - r)), which Erlang A's
    shares at t - r give: e^(-theta r) (queued (1 - w) - abandoned within t - r).
    """
    gone_by_t = queued * -math.expm1(-theta * t)
    if t < ring:
        return gone_by_t
    w = math.exp(-theta * (t - ring))
    return gone_by_t - math.exp(-theta * ring) * (queued * (1 - w) - fig.abandoned_within)


def theory(model: ErlangModel, traffic: float, aht_s: float, lags: Overheads) -> tuple[float, float]:
    """(service level, ASA) of the wait the router measures, by Erlang C.

    Queued calls wait Erlang C's queue wait, then the offer-to-answer time; calls that find
    an agent free wait the arrival lag, then the offer-to-answer time.
    """
    ring = lags.offer_to_answer_s
    pw = erlang.p_wait(model.agents, traffic)
    asa = erlang.asa_seconds(model.agents, traffic, aht_s) + ring + (1 - pw) * lags.arrival_lag_s
    sl = theory_service_level(model.agents, traffic, aht_s, model.threshold_s, ring)
    if lags.arrival_lag_s + ring > model.threshold_s:
        sl -= 1 - pw  # calls that found an agent free still miss the threshold
    return max(0.0, sl), asa


def theory_service_level(
    agents: int, traffic: float, aht_s: float, threshold_s: float, ring_s: float
) -> float:
    """P(queue wait + offer-to-answer <= threshold) by Erlang C."""
    if threshold_s < ring_s:
        return 0.0
    return erlang.service_level(agents, traffic, aht_s, threshold_s - ring_s)


def _z(measured: float, expected: float, se: float) -> float:
    if se > 0:
        return (measured - expected) / se
    return 0.0 if math.isclose(measured, expected, abs_tol=1e-9) else math.copysign(math.inf, measured - expected)


def batch_means_se(values: Sequence[float], batches: int = BATCHES) -> float | None:
    """Standard error of the mean by ``batches`` contiguous batches (None with too few values)."""
    size = len(values) // batches
    if size < 2:
        return None
    means = [statistics.fmean(values[i * size : (i + 1) * size]) for i in range(batches)]
    return statistics.stdev(means) / math.sqrt(batches)


def busy_share(calls: Sequence[CallTimes], agents: int, start: float, end: float) -> float | None:
    """Share of the agents' time in [start, end] spent from offer to hang-up (wrap-up is 0)."""
    if end <= start or agents <= 0:
        return None
    busy = 0.0
    for call in calls:
        if call.offered_at is None:
            continue
        # An offer that ends unanswered is not modelled here: the check's agents always answer.
        finish = call.ended_at if call.ended_at is not None else end
        busy += max(0.0, min(finish, end) - max(call.offered_at, start))
    return busy / (agents * (end - start))


def reference(
    model: ErlangModel, lags: Overheads, run_s: float, warmup_s: float, replications: int, seed: int
) -> Reference:
    """Replicate the ideal M/G/N(+M) run: the statistics' finite-run mean and sampling spread."""
    sls, asas, abandons = [], [], []
    for rep in range(replications):
        run = simulate(model, lags, run_s, warmup_s, random.Random(seed * 1_000_003 + rep))
        if run.waits:
            sls.append(run.service_level(model.threshold_s, model.formula))
            asas.append(statistics.fmean(run.waits))
            abandons.append(run.abandon_rate())
    if len(sls) < 2:
        return Reference(len(sls), math.nan, math.nan, math.nan, math.nan, math.nan, math.nan)
    return Reference(
        len(sls),
        statistics.fmean(sls),
        statistics.stdev(sls),
        statistics.fmean(asas),
        statistics.stdev(asas),
        statistics.fmean(abandons),
        statistics.stdev(abandons),
    )


def simulate_waits(
    model: ErlangModel, lags: Overheads, run_s: float, warmup_s: float, rng: random.Random
) -> list[float]:
    """One run of the ideal queue, started empty: waits (queue + ring) of answered calls after the warm-up."""
    return simulate(model, lags, run_s, warmup_s, rng).waits


def simulate(
    model: ErlangModel, lags: Overheads, run_s: float, warmup_s: float, rng: random.Random
) -> Outcomes:
    """One run of the ideal queue, started empty: the outcomes of the calls after the warm-up.

    First come, first served: a call's offer depends only on the calls before it, and a
    caller who hangs up before the offer takes no agent time.
    """
    free_at = [0.0] * model.agents
    rate, mean, patience = model.arrival_rate, model.handle_mean_s, model.patience_mean_s
    out = Outcomes([], [])
    now = 0.0
    while True:
        now += rng.expovariate(rate)
        if now > run_s:
            return out
        first_free = free_at[0]
        start = max(now, first_free)
        talk = max(MIN_HANDLE_S, rng.expovariate(1.0 / mean))
        leaves = math.inf if patience is None else now + rng.expovariate(1.0 / patience)
        # A queued call is offered the moment an agent is free again (the freeing lag is in
        # its busy time); a call that finds an agent free is offered after the arrival lag.
        offered = start if start > now else now + lags.arrival_lag_s
        answered_at = offered + lags.offer_to_answer_s
        if leaves > answered_at:
            heapq.heapreplace(free_at, answered_at + talk + lags.free_lag_s)
        elif leaves > offered:  # hung up while it rang: the agent was held until then
            heapq.heapreplace(free_at, leaves + lags.free_lag_s)
        if now >= warmup_s:
            if leaves > answered_at:
                out.waits.append(answered_at - now)
            else:
                out.gave_up.append(leaves - now)


def summary_lines(comparison: Comparison) -> list[str]:
    """Human-readable lines (for the progress output and the report)."""
    c = comparison
    name = "Erlang A" if c.model == "erlang-a" else "Erlang C"
    patience = f", mean patience {c.patience_s:g} s" if c.patience_s is not None else ""
    lines = [
        f"{name} check ({c.queue}: {c.agents} agents, {c.calls_per_hour:g} calls/h, AHT {c.aht_s:.1f} s, "
        f"A = {c.traffic_erlangs:.2f} Erl{patience}; {c.calls} calls after a {c.warmup_s:g} s warm-up)",
        f"  service level within {c.threshold_s:g} s: measured {c.service_level:.4f}, "
        f"{name} {c.service_level_theory:.4f}, SE {c.service_level_se:.4f}, z = {c.service_level_z:+.2f}",
        f"  ASA: measured {c.asa_seconds:.2f} s, {name} {c.asa_seconds_theory:.2f} s, "
        f"SE {c.asa_seconds_se:.2f} s, z = {c.asa_z:+.2f}",
    ]
    if c.model == "erlang-a":
        lines.append(
            f"  abandon rate: measured {c.abandon_rate:.4f} ({c.abandoned} calls), {name} "
            f"{c.abandon_rate_theory:.4f}, SE {c.abandon_rate_se:.4f}, z = {c.abandon_z:+.2f}"
        )
    lines.append(f"  {'agrees' if c.agrees else 'DISAGREES'} (|z| <= {c.z_limit:g})")
    return lines
