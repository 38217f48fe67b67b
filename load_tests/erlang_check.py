"""Queueing-theory check: does the router's measured service level and ASA agree with Erlang C?

Applies to scenarios where Erlang C's assumptions hold (see ``model_for``): one queue, one
Poisson traffic line, exponential handle times, no abandonment, no wrap-up, every agent
qualified, capacity 1, agents who always answer after a fixed delay, no breaks, a constant
arrival rate.

- **Measured**: the router's own records (Redis call hashes: ``entered_at``,
  ``offered_at``, ``answered_at``, ``ended_at``, simulated seconds) of the calls that
  arrived after a warm-up (the system starts empty, which flatters early service level):
  wait = answered_at - entered_at, as the router counts it for ASA and service level.
- **Theory**: Erlang C with the scenario's arrival rate and AHT = the time an agent is
  unavailable to the router per call = expected talk time (the scenario's distribution)
  + the measured mean time from offer to answer (dispatch + ringing) + the measured mean
  time from a hang-up to the router's next offer to that agent when calls were waiting
  (the pipeline's reaction time). The wait the router measures ends at the answer, so it
  is Erlang C's queue wait plus the offer-to-answer time, and, for a call that found an
  agent free, the time the router took to offer it: the theory adds both.
- **Sampling error**: waits in a queue are strongly autocorrelated, so the naive standard
  error of a run's mean is far too small, and batch means need batches many times longer
  than the queue's relaxation time (several AHTs) to be right. The standard error used is
  the spread of the same statistic over replications of the ideal model (M/G/N, FCFS,
  Poisson arrivals, the run's length, warm-up and service time), started empty like the
  run: the sampling distribution under the hypothesis that Erlang C holds. Batch means
  are reported next to it.
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
from router import erlang
from router.domain import requirements_met

# A call's handle time is max(MIN_HANDLE_S, sample) (load_tests.traffic).
MIN_HANDLE_S = 1.0
Z_LIMIT = 3.0
REFERENCE_REPLICATIONS = 200
BATCHES = 10


@dataclass(frozen=True, slots=True)
class ErlangModel:
    """Erlang C's inputs, from a scenario that meets its assumptions."""

    queue: str
    agents: int
    calls_per_hour: float
    handle_mean_s: float  # the scenario's exponential mean
    answer_delay_s: float
    threshold_s: float

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

    @property
    def wait_s(self) -> float | None:
        return None if self.answered_at is None else self.answered_at - self.entered_at


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


@dataclass(frozen=True, slots=True)
class Comparison:
    """Measured versus Erlang C, with sampling errors and the verdict."""

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

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def model_for(scenario: Scenario) -> ErlangModel | str:
    """The scenario's Erlang C model, or why Erlang C's assumptions do not hold for it."""
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
    )


def _unsuitable(scenario: Scenario) -> str:
    if len(scenario.queues) != 1 or len(scenario.traffic) != 1:
        return "needs exactly one queue and one traffic line"
    queue, line = scenario.queues[0], scenario.traffic[0]
    behaviour = scenario.agent_behaviour
    checks = (
        (line.handle_time_s.dist != "exponential", "handle times are not exponential"),
        (line.patience_s is not None, "callers abandon (patience_s is set)"),
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
    return CallTimes(call_id, entered, offered, answered, ended, fields.get("agent") or "", _trigger(fields))


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
    """Measured figures of the calls that arrived in [start + warm-up, end] against Erlang C.

    None when no call in the window was answered.
    """
    calls = list(calls)
    window = sorted(
        (c for c in calls if start_at + warmup_s <= c.entered_at <= end_at), key=lambda c: c.entered_at
    )
    answered = [c for c in window if c.answered_at is not None]
    if not answered:
        return None
    waits = [c.wait_s for c in answered if c.wait_s is not None]
    lags = measure_overheads(calls, answered, model.answer_delay_s)
    aht = effective_aht(model, lags)
    traffic = model.arrival_rate * aht
    sl_theory, asa_theory = theory(model, traffic, aht, lags)
    ref = reference(model, lags, end_at - start_at, warmup_s, replications, seed)
    sl = sum(w <= model.threshold_s for w in waits) / len(waits)
    asa = statistics.fmean(waits)
    busy = [
        c.ended_at - c.offered_at for c in answered if c.ended_at is not None and c.offered_at is not None
    ]
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
        traffic_erlangs=traffic,
        p_wait=erlang.p_wait(model.agents, traffic),
        service_level=sl,
        service_level_theory=sl_theory,
        service_level_se=ref.sl_sd,
        service_level_batch_se=batch_means_se([float(w <= model.threshold_s) for w in waits]),
        service_level_z=_z(sl, sl_theory, ref.sl_sd),
        asa_seconds=asa,
        asa_seconds_theory=asa_theory,
        asa_seconds_se=ref.asa_sd,
        asa_seconds_batch_se=batch_means_se(waits),
        asa_z=_z(asa, asa_theory, ref.asa_sd),
        occupancy=busy_share(calls, model.agents, start_at + warmup_s, end_at),
        # Like for like: the share of time from offer to hang-up (the lags are idle time).
        occupancy_theory=min(
            1.0, model.arrival_rate * (model.talk_mean_s + lags.offer_to_answer_s) / model.agents
        ),
        finite_run_service_level=ref.sl_mean,
        finite_run_asa_seconds=ref.asa_mean,
        replications=ref.replications,
        z_limit=Z_LIMIT,
        agrees=abs(_z(sl, sl_theory, ref.sl_sd)) <= Z_LIMIT
        and abs(_z(asa, asa_theory, ref.asa_sd)) <= Z_LIMIT,
    )


def effective_aht(model: ErlangModel, lags: Overheads) -> float:
    """Time an agent is held per call: talk + offer-to-answer + freeing lag, and the arrival lag
    of the calls that find it free (it is kept for them meanwhile)."""
    held = model.talk_mean_s + lags.offer_to_answer_s + lags.free_lag_s
    found_free = 1 - erlang.p_wait(model.agents, model.arrival_rate * held)
    return held + found_free * lags.arrival_lag_s


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


def _z(measured: float, theory: float, se: float) -> float:
    if se > 0:
        return (measured - theory) / se
    return 0.0 if math.isclose(measured, theory, abs_tol=1e-9) else math.copysign(math.inf, measured - theory)


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
    """Replicate the ideal M/G/N run: the statistics' finite-run mean and sampling spread."""
    sls, asas = [], []
    for rep in range(replications):
        waits = simulate_waits(model, lags, run_s, warmup_s, random.Random(seed * 1_000_003 + rep))
        if waits:
            sls.append(sum(w <= model.threshold_s for w in waits) / len(waits))
            asas.append(statistics.fmean(waits))
    if len(sls) < 2:
        return Reference(len(sls), math.nan, math.nan, math.nan, math.nan)
    return Reference(
        len(sls), statistics.fmean(sls), statistics.stdev(sls), statistics.fmean(asas), statistics.stdev(asas)
    )


def simulate_waits(
    model: ErlangModel, lags: Overheads, run_s: float, warmup_s: float, rng: random.Random
) -> list[float]:
    """One run of the ideal queue, started empty: waits (queue + ring) of calls after the warm-up."""
    free_at = [0.0] * model.agents
    rate, mean = model.arrival_rate, model.handle_mean_s
    waits: list[float] = []
    now = 0.0
    while True:
        now += rng.expovariate(rate)
        if now > run_s:
            return waits
        first_free = heapq.heappop(free_at)
        start = max(now, first_free)
        talk = max(MIN_HANDLE_S, rng.expovariate(1.0 / mean))
        # A queued call is offered the moment an agent is free again (the freeing lag is in
        # its busy time); a call that finds an agent free is offered after the arrival lag.
        offered = start if start > now else now + lags.arrival_lag_s
        heapq.heappush(free_at, offered + lags.offer_to_answer_s + talk + lags.free_lag_s)
        if now >= warmup_s:
            waits.append(offered - now + lags.offer_to_answer_s)


def summary_lines(comparison: Comparison) -> list[str]:
    """Human-readable lines (for the progress output and the report)."""
    c = comparison
    return [
        f"Erlang C check ({c.queue}: {c.agents} agents, {c.calls_per_hour:g} calls/h, AHT {c.aht_s:.1f} s, "
        f"A = {c.traffic_erlangs:.2f} Erl; {c.calls} calls after a {c.warmup_s:g} s warm-up)",
        f"  service level within {c.threshold_s:g} s: measured {c.service_level:.4f}, "
        f"Erlang C {c.service_level_theory:.4f}, SE {c.service_level_se:.4f}, z = {c.service_level_z:+.2f}",
        f"  ASA: measured {c.asa_seconds:.2f} s, Erlang C {c.asa_seconds_theory:.2f} s, "
        f"SE {c.asa_seconds_se:.2f} s, z = {c.asa_z:+.2f}",
        f"  {'agrees' if c.agrees else 'DISAGREES'} (|z| <= {c.z_limit:g})",
    ]
