"""Staffing advice: the `acd staffing` command and the live estimator's sliding window."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from router import erlang, erlang_a
from router.domain import QueueConfig, QueueStaffing, ServiceLevelTarget
from workers.cli import main
from workers.staffing import StaffingEstimator, advise

QUEUE = QueueConfig(name="q", service_level=ServiceLevelTarget(threshold_s=20, target=0.8), wrapup_s=15)


def test_staffing_command_prints_the_minimum_staffing_that_meets_the_target(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(
        [
            "staffing",
            "--calls-per-hour",
            "240",
            "--aht",
            "180",
            "--sl-target",
            "0.8",
            "--threshold",
            "20",
            "--json",
        ]
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert {"agents", "service_level", "asa_seconds", "occupancy", "p_wait"} <= set(result)
    # 12 Erlangs: 15 agents give about 73 % within 20 s, 16 agents 87 %.
    assert result["agents"] == 16
    assert result["service_level"] >= 0.8 > erlang.service_level(15, 12.0, 180, 20)
    assert result["occupancy"] == pytest.approx(12 / 16)
    assert result["asa_seconds"] == pytest.approx(erlang.asa_seconds(16, 12.0, 180), abs=1e-6)
    assert result["p_wait"] == pytest.approx(erlang.p_wait(16, 12.0), abs=1e-6)
    # Other people's scripts parse these: the fields stay, one is added.
    assert list(result) == [
        "agents",
        "traffic_erlangs",
        "p_wait",
        "service_level",
        "asa_seconds",
        "occupancy",
        "model",
    ]
    assert result["model"] == "erlang-c"


def test_staffing_command_with_patience_uses_erlang_a(capsys: pytest.CaptureFixture[str]) -> None:
    base = ["staffing", "--calls-per-hour", "240", "--aht", "180", "--json"]
    assert main([*base, "--patience", "120"]) == 0
    result = json.loads(capsys.readouterr().out)
    expected = erlang_a.agents_needed(240, 180, 120, 0.8, 20)
    assert result["model"] == "erlang-a"
    assert result["agents"] == expected.agents == 14  # Erlang C says 16: callers who give up take no agent
    assert erlang_a.figures(13, 240, 180, 120, 20).service_level() < 0.8 <= result["service_level"]
    assert result["abandon_rate"] == pytest.approx(expected.abandon_rate, abs=1e-6)
    assert result["asa_seconds"] == pytest.approx(expected.asa_seconds, abs=1e-6)
    assert result["p_wait"] == pytest.approx(expected.p_wait, abs=1e-6)
    assert result["occupancy"] == pytest.approx(12 * (1 - expected.abandon_rate) / 14, abs=1e-6)
    assert result["traffic_erlangs"] == 12.0
    # Another service-level formula, another answer; the text output names the abandons.
    assert main([*base, "--patience", "120", "--sl-formula", "answered_within_over_answered"]) == 0
    strict = json.loads(capsys.readouterr().out)
    assert (
        strict["agents"]
        == erlang_a.agents_needed(240, 180, 120, 0.8, 20, "answered_within_over_answered").agents
    )
    assert main([*base[:-1], "--patience", "120"]) == 0
    assert "abandoned 6.1% (Erlang A, mean patience 120s)" in capsys.readouterr().out


def test_staffing_command_is_installed_as_acd_staffing() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "workers.cli", "staffing", "--calls-per-hour", "100", "--aht", "300"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.startswith(f"{erlang.agents_needed(100, 300, 0.8, 20).agents} agents:")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--calls-per-hour", "0", "--aht", "180"], "--calls-per-hour must be > 0"),
        (["--calls-per-hour", "100", "--aht", "-1"], "--aht must be > 0"),
        (
            ["--calls-per-hour", "100", "--aht", "180", "--sl-target", "1"],
            "--sl-target must be between 0 and 1",
        ),
        (["--calls-per-hour", "100", "--aht", "180", "--threshold", "nan"], "--threshold must be > 0"),
        (["--calls-per-hour", "100", "--aht", "180", "--patience", "0"], "--patience '0': expected"),
        (["--calls-per-hour", "100", "--aht", "180", "--patience", "-5"], "--patience '-5': expected"),
        (["--calls-per-hour", "100", "--aht", "180", "--patience", "soon"], "--patience 'soon': expected"),
        (["--calls-per-hour", "100", "--aht", "180", "--patience", "inf"], "--patience 'inf': expected"),
    ],
)
def test_staffing_command_rejects_impossible_questions(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["staffing", *args]) == 2
    err = capsys.readouterr().err
    assert message in err
    if "--patience" in args:
        assert err.count("\n") == 1  # one line, no usage dump


def test_estimator_waits_for_a_minute_of_data_and_a_completed_call() -> None:
    estimator = StaffingEstimator(window_s=900, min_span_s=60)
    assert estimator.observe(QUEUE, {"offered": 0}, 1000.0) is None
    assert estimator.observe(QUEUE, {"offered": 5}, 1030.0) is None  # half a minute
    assert estimator.observe(QUEUE, {"offered": 10}, 1060.0) is None  # no call completed yet
    advice = estimator.observe(QUEUE, {"offered": 12, "completed": 2, "talk_sum": 330}, 1090.0)
    assert advice is not None
    assert advice.arrival_rate_per_s == pytest.approx(12 / 90)
    assert advice.aht_s == pytest.approx(165 + 15)  # talk per call + the queue's wrap-up
    assert advice.agents_needed == erlang.agents_needed(12 / 90 * 3600, 180, 0.8, 20).agents


def test_estimator_window_slides_and_restarts_when_statistics_reset() -> None:
    estimator = StaffingEstimator(window_s=600, min_span_s=60)
    for minute in range(21):  # 2 calls a minute for 10 minutes, then 6 a minute
        offered = 2 * min(minute, 10) + 6 * max(0, minute - 10)
        talk = {"completed": minute + 1, "talk_sum": 100.0 * (minute + 1)}
        advice = estimator.observe(QUEUE, {"offered": offered, **talk}, 60.0 * minute)
    assert advice is not None and advice.arrival_rate_per_s == pytest.approx(6 / 60)
    assert estimator.observe(QUEUE, {"offered": 1, "completed": 1, "talk_sum": 50}, 1300.0) is None
    assert len(estimator.windows["q"].samples) == 1


def test_no_arrivals_need_no_agents_and_a_full_target_is_capped() -> None:
    assert advise(QUEUE, 0.0, 180).agents_needed == 0
    perfect = QueueConfig(name="p", service_level=ServiceLevelTarget(threshold_s=20, target=1.0))
    advice = advise(perfect, 240 / 3600, 180)
    assert math.isfinite(advice.traffic_erlangs)
    assert advice.agents_needed == erlang.agents_needed(240, 180, 0.999, 20).agents


def test_live_advice_uses_erlang_a_with_the_queues_formula_when_it_configures_a_patience() -> None:
    patient = QueueConfig(
        name="p",
        service_level=ServiceLevelTarget(threshold_s=20, target=0.8, formula="answered_within_over_answered"),
        staffing=QueueStaffing(patience_s=120),
    )
    advice = advise(patient, 240 / 3600, 180)
    expected = erlang_a.agents_needed(240, 180, 120, 0.8, 20, "answered_within_over_answered")
    assert (advice.model, advice.agents_needed) == ("erlang-a", expected.agents)
    assert advice.abandon_rate == pytest.approx(expected.abandon_rate)
    plain = advise(QUEUE, 240 / 3600, 180)
    assert (plain.model, plain.abandon_rate) == ("erlang-c", None)
    assert advise(patient, 0.0, 180).agents_needed == 0


def test_a_queue_patience_must_be_a_positive_number() -> None:
    for bad in (0, -1, float("inf"), "soon"):
        with pytest.raises(ValueError, match="patience_s"):
            QueueConfig.model_validate({"name": "q", "staffing": {"patience_s": bad}})
