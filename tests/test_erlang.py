"""Erlang C against closed forms and textbook figures."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from router import erlang


def test_closed_forms() -> None:
    assert erlang.p_wait(1, 0.5) == pytest.approx(0.5)  # M/M/1: P(wait) = rho
    assert erlang.p_wait(2, 1.0) == pytest.approx(1 / 3)
    assert erlang.p_wait(3, 2.0) == pytest.approx(4 / 9)
    assert erlang.p_wait(2, 2.0) == 1.0 and erlang.asa_seconds(2, 2.0, 180) == math.inf


def test_service_level_and_asa_definitions() -> None:
    traffic, aht = erlang.traffic_erlangs(360, 180), 180.0
    assert traffic == 18.0
    pw = erlang.p_wait(22, traffic)
    assert erlang.service_level(22, traffic, aht, 20) == pytest.approx(
        1 - pw * math.exp(-(22 - 18) * 20 / 180)
    )
    assert erlang.asa_seconds(22, traffic, aht) == pytest.approx(pw * 180 / 4)


def test_minimum_staffing_meets_the_target_and_one_fewer_does_not() -> None:
    needed = erlang.agents_needed(360, 180, 0.8, 20)
    assert needed.service_level >= 0.8
    assert erlang.service_level(needed.agents - 1, 18.0, 180, 20) < 0.8
    assert needed.occupancy == pytest.approx(18 / needed.agents)


@given(st.integers(1, 60), st.floats(0.1, 59.0))
def test_more_agents_never_hurt(agents: int, traffic: float) -> None:
    assert erlang.p_wait(agents + 1, traffic) <= erlang.p_wait(agents, traffic) + 1e-12
    assert 0.0 <= erlang.p_wait(agents, traffic) <= 1.0
