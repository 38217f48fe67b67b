"""`acd loadtest`: the command end to end (the smoke `make test` runs), its report and its parts."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from load_tests.figures import CONTRACT_FIELDS, contract_view, decisions_per_second
from load_tests.loadtest import Progress, verdict_clean
from load_tests.report import ReportInput, latency_bins, write_report
from load_tests.scenario import load_scenario
from load_tests.timeseries import Sample, window_figures
from workers.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "load_tests" / "scenarios" / "erlang_check.yaml"
SCENARIO_A = ROOT / "load_tests" / "scenarios" / "erlang_a_check.yaml"
PLOTS = ("service_level_asa.png", "waiting.png", "agents.png", "latency.png")


@pytest.mark.alone  # judged on timing too (offer to answer): beside another pipeline it took 3.5 s (CI)
class TestErlangCCheck:
    """A class of its own: run with nothing beside it (`alone`), like the Erlang A check."""

    @pytest.mark.slow
    @pytest.mark.system  # the whole pipeline as processes, behind `acd loadtest`
    def test_loadtest_command_short_erlang_check(self, tmp_path: Path) -> None:
        """The issue's command on the short Erlang C scenario: JSON contract, invariants, report, theory."""
        report = tmp_path / "report"
        command = [sys.executable, "-m", "workers.cli", "loadtest", "--scenario", str(SCENARIO)]
        command += ["--duration", "20", "--json", "--report", str(report)]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=240, cwd=ROOT, env=dict(os.environ)
        )
        assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-4000:]  # the verdict is in the JSON
        summary = json.loads(done.stdout.strip().splitlines()[-1])
        assert list(summary)[: len(CONTRACT_FIELDS)] == list(CONTRACT_FIELDS)
        assert summary["offered"] >= 150 and summary["answered"] == summary["offered"]
        assert summary["abandoned"] == 0 and summary["abandon_rate"] == 0
        assert summary["double_assignments"] == 0 and summary["lost_calls"] == 0
        assert summary["state_mismatches"] == 0
        assert 0.5 < summary["occupancy"] < 1 and summary["decisions_per_second"] > 0
        assert summary["routing_latency_p50_ms"] <= summary["routing_latency_p99_ms"]
        assert summary["samples"] >= 15
        check = summary["erlang_c"]
        print({k: check[k] for k in ("calls", "service_level", "service_level_theory", "service_level_se")})
        print({k: check[k] for k in ("asa_seconds", "asa_seconds_theory", "asa_seconds_se", "asa_z")})
        # Loose on a short run (a few hundred calls), but within the sampling error all the same.
        assert check["applies"] and check["calls"] >= 120 and check["not_answered"] == 0
        assert abs(check["service_level_z"]) <= 3 and abs(check["asa_z"]) <= 3 and check["agrees"]
        assert 0.3 < check["offer_to_answer_s"] < 3  # the 0.5 s answer delay plus dispatch
        text = (report / "report.md").read_text()
        assert "## Erlang C comparison" in text and "**agrees**" in text
        for name in PLOTS:
            assert (report / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
            assert f"]({name})" in text
        assert json.loads((report / "summary.json").read_text())["offered"] == summary["offered"]
        assert len((report / "samples.csv").read_text().splitlines()) == summary["samples"] + 1
        assert "acd loadtest: run directory" in done.stderr


@pytest.mark.alone
class TestErlangACheck:
    """A class of its own: run with nothing beside it (`alone`), like the Erlang C check."""

    @pytest.mark.slow
    @pytest.mark.system
    def test_loadtest_command_short_erlang_a_check(self, tmp_path: Path) -> None:
        """Callers who abandon (exponential patience): measured service level, ASA and abandon
        rate against Erlang A, within the sampling error of a run this short."""
        report = tmp_path / "report"
        command = [sys.executable, "-m", "workers.cli", "loadtest", "--scenario", str(SCENARIO_A)]
        command += ["--duration", "30", "--json", "--report", str(report)]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=300, cwd=ROOT, env=dict(os.environ)
        )
        assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-4000:]  # the verdict is in the JSON
        summary = json.loads(done.stdout.strip().splitlines()[-1])
        assert summary["double_assignments"] == 0 and summary["lost_calls"] == 0
        assert summary["abandoned"] > 0 and summary["answered"] + summary["abandoned"] == summary["offered"]
        check = summary["erlang_c"]
        print(
            {
                k: check[k]
                for k in ("service_level", "service_level_theory", "service_level_se", "service_level_z")
            }
        )
        print({k: check[k] for k in ("asa_seconds", "asa_seconds_theory", "asa_seconds_se", "asa_z")})
        print({k: check[k] for k in ("abandon_rate", "abandon_rate_theory", "abandon_rate_se", "abandon_z")})
        assert check["applies"] and check["model"] == "erlang-a" and check["patience_s"] == 60
        assert check["abandoned"] > 0 and check["abandon_rate_se"] > 0
        assert abs(check["service_level_z"]) <= 3 and abs(check["asa_z"]) <= 3 and abs(check["abandon_z"]) <= 3
        assert check["agrees"]
        text = (report / "report.md").read_text()
        assert "## Erlang A comparison" in text and "| abandon rate (" in text and "**agrees**" in text


def samples(count: int = 30) -> list[Sample]:
    out = []
    for i in range(count):
        answered = 3 * i
        out.append(
            Sample(
                t_real_s=float(i),
                t_sim_s=10.0 * i,
                offered=answered + 2,
                answered=answered,
                abandoned=0,
                sl_numerator=0.8 * answered,
                sl_denominator=float(answered),
                answer_wait_sum=4.0 * answered,
                waiting=i % 4,
                oldest_wait_s=float(i % 7),
                agents={"available": 3, "on_call": 5, "reserved": i % 2},
                decisions=3 * i,
                interval_latency_p50_ms=4.0,
                interval_latency_p90_ms=9.0,
                interval_latency_p99_ms=20.0 + i,
            )
        )
    return out


def test_window_figures_follow_from_cumulative_counters() -> None:
    series = samples()
    assert window_figures(series[2], series[10]) == pytest.approx((0.8, 4.0))
    assert window_figures(series[3], series[3]) == (None, None)


def test_report_without_erlang_check(tmp_path: Path) -> None:
    scenario = load_scenario(ROOT / "load_tests" / "scenarios" / "demo.yaml")
    summary: dict[str, Any] = {key: 1 for key in CONTRACT_FIELDS} | {
        "traffic_s": 25.0,
        "erlang_c": {"applies": False, "why_not": "needs exactly one queue and one traffic line"},
    }
    path = write_report(tmp_path, ReportInput(scenario, None, summary, samples(), None, 0.0))
    text = path.read_text()
    assert "Not applicable: needs exactly one queue" in text
    assert "| billing | 240 |" in text
    for name in PLOTS:
        assert (tmp_path / name).stat().st_size > 10_000


def test_progress_lines_when_not_on_a_terminal() -> None:
    out = io.StringIO()
    progress = Progress(20, out)
    for sample in samples(12):
        progress.update(sample)
    progress.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 3  # t = 0, 5 and 10 s: one line every 5 s at most
    assert lines[-1].startswith("[traffic t=  10.0s] offered=32 answered=30") and "SL=80%" in lines[-1]


def test_contract_fields_first_and_verdict() -> None:
    summary = {"lost_calls": 0, "extra": 1, "double_assignments": 0, "state_mismatches": 0}
    view = contract_view(summary)
    assert list(view)[: len(CONTRACT_FIELDS)] == list(CONTRACT_FIELDS) and view["extra"] == 1
    assert verdict_clean(view)
    assert not verdict_clean(view | {"erlang_c": {"applies": True, "agrees": False}})
    assert verdict_clean(view | {"erlang_c": {"applies": False, "why_not": "x"}})
    assert not verdict_clean(view | {"lost_calls": 1})
    assert decisions_per_second(300, 20.0) == 15.0 and decisions_per_second(3, 0) is None


def test_cli_knows_the_loadtest_flags() -> None:
    args = build_parser().parse_args(
        ["loadtest", "--scenario", "x.yaml", "--duration", "5", "--json", "--report", "out", "--warmup", "30"]
    )
    assert (args.command, args.duration, args.json, args.report, args.warmup) == (
        "loadtest",
        5.0,
        True,
        Path("out"),
        30.0,
    )
    assert args.drain > 0 and args.workers == 2 and args.metrics_port == 0


def test_latency_bins_take_percentiles_over_consecutive_samples() -> None:
    series = [
        Sample(
            float(i),
            10.0 * i,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            decisions=2 * (i + 1),
            interval_latencies_ms=(1.0, 9.0),
        )
        for i in range(10)
    ]
    bins = latency_bins(series, max_bins=5)
    assert len(bins) == 5 and bins[-1].minute == pytest.approx(1.5)
    assert (bins[0].p50, bins[0].p99) == (1.0, 9.0)
    assert bins[1].per_second == pytest.approx(4 / 2)  # 4 decisions between t=1 s and t=3 s
    # Without the raw values (one sample a bin), each sample's own percentiles are used.
    assert latency_bins(samples(3))[2].p99 == 22.0
