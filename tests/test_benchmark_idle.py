"""`acd benchmark`'s idle figures: what each process costs with no calls, per process."""

from __future__ import annotations

import argparse

import pytest

from load_tests.benchmark import add_benchmark_arguments, idle_percent, render


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="acd benchmark")
    add_benchmark_arguments(parser)
    return parser


def test_idle_share_is_per_cent_of_a_core_and_per_routing_worker() -> None:
    before = {"route": 10.0, "redis": 1.0, "broker": 5.0, "driver": 2.0}
    after = {"route": 10.6, "redis": 1.02, "broker": 5.3, "driver": 2.1}
    # Two routing workers used 0.6 s together in 10 s: 3 % of a core each.
    assert idle_percent(before, after, 10.0, workers=2) == {"route": 3.0, "redis": 0.2, "broker": 3.0, "driver": 1.0}


def test_idle_seconds_default_and_zero_skips() -> None:
    assert parser().parse_args([]).idle_s == 10.0
    assert parser().parse_args(["--idle-s", "0"]).idle_s == 0.0


@pytest.mark.parametrize("bad", ["-1", "ten", "nan", "inf"])
def test_bad_idle_seconds_say_what_is_expected(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parser().parse_args(["--idle-s", bad])
    assert exit_info.value.code == 2
    assert "is not a number of seconds (0 or more, e.g. 10)" in capsys.readouterr().err


def test_the_table_shows_the_idle_figures_and_a_dash_without_them() -> None:
    config = {
        "agents": 100,
        "workers": 1,
        "saturation_per_worker": 900.0,
        "saturation_p50_ms": 1.0,
        "saturation_p99_ms": 2.0,
        "loads": [],
        "cpu_us_per_decision": {},
        "redis_commands_per_decision": 80.0,
    }
    floor = {"redis_reserve_p50_ms": 0.3, "kafka_round_trip_p50_ms": 7.5}
    idle = {"route": 2.5, "redis": 0.3, "broker": 3.1, "driver": 1.0}
    with_idle = render({"floor": floor, "configs": [config | {"idle_cpu_percent": idle}]})
    assert with_idle.splitlines()[-1].endswith("| 2.5 0.3 3.1 1.0")
    without = render({"floor": floor, "configs": [config | {"idle_cpu_percent": {}}]})
    assert without.splitlines()[-1].endswith("| -")


def test_the_fetch_wait_is_the_settings_unless_given() -> None:
    assert parser().parse_args([]).fetch_max_wait_ms is None
    assert parser().parse_args(["--fetch-max-wait-ms", "50"]).fetch_max_wait_ms == 50


@pytest.mark.parametrize("bad", ["-5", "1.5", "fifty"])
def test_a_bad_fetch_wait_says_what_is_expected(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parser().parse_args(["--fetch-max-wait-ms", bad])
    assert "is not a whole number of milliseconds (0 or more, e.g. 50)" in capsys.readouterr().err
