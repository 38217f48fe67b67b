"""The queueing-theory check's statistics, on the ideal model itself (no pipeline: fast).

The short check through the whole pipeline is in tests/test_loadtest.py; the long one is
load_tests/scenarios/erlang_check_long.yaml (docs/performance.md).
"""

from __future__ import annotations

import dataclasses
import math
import random
from pathlib import Path

import pytest

from load_tests import erlang_check
from load_tests.erlang_check import CallTimes, ErlangModel, Overheads
from load_tests.scenario import Distribution, load_scenario
from router import erlang, erlang_a

SCENARIOS = Path(__file__).resolve().parent.parent / "load_tests" / "scenarios"
MODEL = ErlangModel(
    queue="sales", agents=20, calls_per_hour=1980, handle_mean_s=29.5, answer_delay_s=0.5, threshold_s=10
)


def ideal_calls(model: ErlangModel, run_s: float, seed: int, *, slow_down: float = 1.0) -> list[CallTimes]:
    """Calls of the ideal FCFS queue as the router would record them (ring = the answer delay)."""
    rng = random.Random(seed)
    free_at = [0.0] * model.agents
    calls, now = [], 0.0
    while (now := now + rng.expovariate(model.arrival_rate)) <= run_s:
        start = max(now, min(free_at))
        free_at.remove(min(free_at))
        talk = max(1.0, rng.expovariate(1 / model.handle_mean_s)) * slow_down
        answered = start + model.answer_delay_s
        free_at.append(answered + talk)
        calls.append(CallTimes(f"c{len(calls)}", now, start, answered, answered + talk))
    return calls


def test_the_check_scenarios_meet_erlang_c_assumptions() -> None:
    for name in ("erlang_check.yaml", "erlang_check_long.yaml"):
        model = erlang_check.model_for(load_scenario(SCENARIOS / name))
        assert isinstance(model, ErlangModel), (name, model)
        assert model.agents == 20 and model.answer_delay_s == 0.5
    # The demo abandons, wraps up and has three queues: no Erlang C check there.
    assert "one queue" in str(erlang_check.model_for(load_scenario(SCENARIOS / "demo.yaml")))


def test_expected_talk_time_includes_the_one_second_floor() -> None:
    # E[max(1, X)] = 1 + m e^(-1/m), a hair above the mean.
    assert MODEL.talk_mean_s == pytest.approx(1 + 29.5 * math.exp(-1 / 29.5))
    assert 29.5 < MODEL.talk_mean_s < 29.52


def test_reference_replications_converge_to_erlang_c_on_a_long_run() -> None:
    lags = Overheads(offer_to_answer_s=0.5, free_lag_s=0.3, arrival_lag_s=0.2)
    ref = erlang_check.reference(MODEL, lags, run_s=40_000, warmup_s=500, replications=8, seed=3)
    aht = erlang_check.effective_aht(MODEL, lags)
    assert aht == pytest.approx(MODEL.talk_mean_s + 0.8 + 0.2 * (1 - 0.33), abs=0.02)
    traffic = MODEL.arrival_rate * aht
    sl, asa = erlang_check.theory(MODEL, traffic, aht, lags)
    assert asa == pytest.approx(
        erlang.asa_seconds(MODEL.agents, traffic, aht) + 0.5 + 0.2 * (1 - erlang.p_wait(20, traffic))
    )
    assert ref.sl_mean == pytest.approx(sl, abs=3 * ref.sl_sd / math.sqrt(8) + 0.005)
    assert ref.asa_mean == pytest.approx(asa, abs=3 * ref.asa_sd / math.sqrt(8) + 0.1)


def test_ideal_traffic_agrees_and_slower_agents_do_not() -> None:
    calls = ideal_calls(MODEL, 20_000, seed=9)
    fair = erlang_check.compare(MODEL, calls, start_at=0, end_at=20_000, warmup_s=300, replications=60)
    assert fair is not None and fair.agrees, fair
    assert fair.calls > 10_000 and fair.not_answered == 0
    assert fair.offer_to_answer_s == pytest.approx(0.5)
    assert fair.occupancy == pytest.approx(fair.occupancy_theory, abs=0.03)
    # Agents that really take 10 % longer than the model says: the check must notice.
    slow = ideal_calls(MODEL, 20_000, seed=9, slow_down=1.1)
    unfair = erlang_check.compare(MODEL, slow, start_at=0, end_at=20_000, warmup_s=300, replications=60)
    assert unfair is not None and not unfair.agrees
    assert unfair.asa_z > 3


def test_only_calls_after_the_warm_up_are_measured() -> None:
    calls = [
        CallTimes("early", 10.0, 10.0, 30.0, 60.0),  # waited 20 s, but in the warm-up
        CallTimes("late", 200.0, 200.0, 200.5, 230.0),
        CallTimes("open", 250.0, None, None, None),  # still waiting: counted as not answered
    ]
    result = erlang_check.compare(MODEL, calls, start_at=0, end_at=300, warmup_s=100, replications=5)
    assert result is not None
    assert (result.calls, result.not_answered) == (1, 1)
    assert result.asa_seconds == pytest.approx(0.5) and result.service_level == 1.0


def test_call_times_from_a_router_call_hash() -> None:
    fields = {"entered_at": "100.5", "offered_at": "101", "answered_at": "102.5", "ended_at": ""}
    fields |= {"agent": "e07", "decision": '{"trigger": "agent", "agent_id": "e07"}'}
    times = erlang_check.call_times("c1", fields)
    assert times == CallTimes("c1", 100.5, 101.0, 102.5, None, "e07", "agent")
    assert times is not None and times.wait_s == pytest.approx(2.0)
    assert erlang_check.call_times("c2", {"state": "waiting"}) is None


def test_batch_means_and_busy_share() -> None:
    assert erlang_check.batch_means_se([1.0] * 100) == 0.0
    assert erlang_check.batch_means_se([1.0] * 10) is None  # fewer than 2 values a batch
    alternating = [float(i % 2) for i in range(1000)]
    se = erlang_check.batch_means_se(alternating)
    assert se is not None and se < 0.01
    calls = [CallTimes("a", 0, 0, 1, 50), CallTimes("b", 40, 60, 61, 200)]
    # Two agents over [0, 100]: busy 50 + 40 of 200 agent-seconds.
    assert erlang_check.busy_share(calls, 2, 0, 100) == pytest.approx(0.45)


def test_pipeline_lags_are_measured_from_the_router_records() -> None:
    calls = [
        CallTimes("a", 0.0, 0.25, 0.75, 40.0, "e1", "call"),  # found e1 free: offered 0.25 s later
        CallTimes("b", 30.0, 40.5, 41.0, 90.0, "e1", "agent"),  # waited; e1 hung up at 40, offer at 40.5
        CallTimes("c", 50.0, 50.25, 50.75, 60.0, "e2", "call"),
        CallTimes("d", 55.0, 60.25, 60.75, 70.0, "e2", "agent"),  # e2 hung up at 60, offer at 60.25
    ]
    assert sorted(erlang_check.free_lags(calls)) == [0.25, 0.5]
    lags = erlang_check.measure_overheads(calls, calls, 0.5)
    assert lags == Overheads(
        offer_to_answer_s=0.5,
        free_lag_s=0.375,
        arrival_lag_s=0.25,
        free_lag_p99_s=0.5,
        arrival_lag_p99_s=0.25,
    )


# -- Erlang A: callers who abandon ----------------------------------------------------------

MODEL_A = dataclasses.replace(MODEL, calls_per_hour=2200, patience_mean_s=40.0)


def ideal_calls_with_patience(
    model: ErlangModel, run_s: float, seed: int, *, patience_factor: float = 1.0
) -> list[CallTimes]:
    """The ideal FCFS queue with exponential patience, as the router records it: a caller
    still there at the answer (ring = the answer delay) is answered, else abandoned."""
    assert model.patience_mean_s is not None
    rng = random.Random(seed)
    free_at = [0.0] * model.agents
    calls, now = [], 0.0
    while (now := now + rng.expovariate(model.arrival_rate)) <= run_s:
        leaves = now + rng.expovariate(1 / (model.patience_mean_s * patience_factor))
        start = max(now, min(free_at))
        answered = start + model.answer_delay_s
        name = f"c{len(calls)}"
        if leaves <= answered:
            if leaves > start:  # rang out on the caller's side: the agent is held until then
                free_at[free_at.index(min(free_at))] = leaves
            calls.append(CallTimes(name, now, None, None, leaves, abandoned=True))
            continue
        talk = max(1.0, rng.expovariate(1 / model.handle_mean_s))
        free_at[free_at.index(min(free_at))] = answered + talk
        calls.append(CallTimes(name, now, start, answered, answered + talk))
    return calls


def test_with_patience_the_model_is_erlang_a_and_other_patience_is_not_modelled() -> None:
    for name in ("erlang_a_check.yaml", "erlang_a_check_long.yaml"):
        scenario = load_scenario(SCENARIOS / name)
        model = erlang_check.model_for(scenario)
        assert isinstance(model, ErlangModel) and model.name == "erlang-a", name
        assert model.patience_mean_s == 60 and model.formula == scenario.queues[0].service_level.formula
    line = scenario.traffic[0]
    fixed = scenario.model_copy(
        update={"traffic": [line.model_copy(update={"patience_s": Distribution(dist="fixed", mean=60)})]}
    )
    assert erlang_check.model_for(fixed) == "callers' patience is not exponential (Erlang A needs it)"


def test_erlang_a_without_pipeline_times_is_router_erlang_a() -> None:
    none = Overheads(offer_to_answer_s=0.0, free_lag_s=0.0, arrival_lag_s=0.0)
    aht = erlang_check.effective_aht(MODEL_A, none)
    predicted = erlang_check.predict(MODEL_A, MODEL_A.arrival_rate * aht, aht, none)
    figures = erlang_a.figures(20, 2200, aht, 40, 10)
    assert predicted.p_wait == pytest.approx(figures.p_wait, abs=1e-12)
    assert predicted.service_level == pytest.approx(figures.service_level(), abs=1e-12)
    assert predicted.asa_seconds == pytest.approx(figures.asa_seconds, rel=1e-12)
    assert predicted.abandon_rate == pytest.approx(figures.abandon_rate, abs=1e-12)


@pytest.mark.parametrize(
    ("formula", "ring", "arrival_lag"),
    [
        ("answered_within_over_answered_and_abandoned_after_threshold", 2.0, 0.0),
        ("answered_within_over_answered", 2.0, 0.0),
        ("answered_within_over_answered_and_abandoned_after_threshold", 0.5, 0.2),
    ],
)
def test_erlang_a_with_pipeline_times_matches_the_ideal_queue_on_a_long_run(
    formula: str, ring: float, arrival_lag: float
) -> None:
    # The shares within T after the ring and the arrival lag come from algebra on Erlang A's
    # figures: replications of the ideal queue with the same times must land on them. A long
    # ring (2 s, 5 % of callers hang up while it rings) tests the algebra; the pipeline's
    # usual times (about 0.5 s, 0.2 s) leave the approximation of the arrival lag as hold
    # time (as in the Erlang C check) a bias well inside one short run's standard error.
    model = dataclasses.replace(MODEL_A, formula=formula)
    lags = Overheads(offer_to_answer_s=ring, free_lag_s=0.3, arrival_lag_s=arrival_lag)
    aht = erlang_check.effective_aht(model, lags)
    predicted = erlang_check.predict(model, model.arrival_rate * aht, aht, lags)
    ref = erlang_check.reference(model, lags, run_s=40_000, warmup_s=500, replications=16, seed=3)
    slack = 3 / math.sqrt(16)
    assert 0.03 < predicted.abandon_rate < 0.2 and ref.abandon_sd > 0
    assert ref.sl_mean == pytest.approx(predicted.service_level, abs=slack * ref.sl_sd + 0.004)
    assert ref.asa_mean == pytest.approx(predicted.asa_seconds, abs=slack * ref.asa_sd + 0.07)
    assert ref.abandon_mean == pytest.approx(predicted.abandon_rate, abs=slack * ref.abandon_sd + 0.002)


def test_ideal_abandoning_traffic_agrees_and_more_patient_callers_do_not() -> None:
    calls = ideal_calls_with_patience(MODEL_A, 20_000, seed=11)
    fair = erlang_check.compare(MODEL_A, calls, start_at=0, end_at=20_000, warmup_s=300, replications=60)
    assert fair is not None and fair.agrees, fair
    assert fair.model == "erlang-a" and fair.abandoned > 300 and fair.patience_s == 40
    assert fair.abandon_rate == pytest.approx(fair.abandon_rate_theory, abs=3 * fair.abandon_rate_se)
    assert any("abandon rate: measured" in line for line in erlang_check.summary_lines(fair))
    # Callers twice as patient as the model says: fewer give up, the others wait longer.
    patient = ideal_calls_with_patience(MODEL_A, 20_000, seed=11, patience_factor=2.0)
    unfair = erlang_check.compare(MODEL_A, patient, start_at=0, end_at=20_000, warmup_s=300, replications=60)
    assert unfair is not None and not unfair.agrees
    assert unfair.abandon_z < -2 and unfair.asa_z > 3


def test_abandons_are_read_from_the_router_call_hash() -> None:
    fields = {"entered_at": "100", "ended_at": "130.5", "state": "abandoned"}
    times = erlang_check.call_times("c1", fields)
    assert times is not None and times.abandoned and times.abandon_wait_s == pytest.approx(30.5)
    done = erlang_check.call_times("c2", {"entered_at": "100", "answered_at": "101", "state": "completed"})
    assert done is not None and not done.abandoned and done.abandon_wait_s is None
