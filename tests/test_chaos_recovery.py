"""How `acd chaos` judges recovery from its probe calls (load_tests/chaos.py), without servers."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from load_tests.chaos import PROBE_OK_S, PROBE_QUEUE, FaultRun


def _run(now: float, probes: list[tuple[float, float | None]], *, seen_at: float | None = None) -> Any:
    """A fault run struck at t=0 whose probes entered (and were answered) at these times."""
    run = FaultRun.__new__(FaultRun)
    run.clock = SimpleNamespace(now=lambda: now, time_scale=20.0)
    run.struck_at = 0.0
    run.recovery_seen_at = seen_at
    calls = {
        str(i): SimpleNamespace(queue=PROBE_QUEUE, entered_at=entered, answered_at=answered)
        for i, (entered, answered) in enumerate(probes)
    }
    return run, SimpleNamespace(ledger=SimpleNamespace(calls=calls))


def test_recovery_starts_with_the_first_probe_of_the_last_good_streak() -> None:
    run, pbx = _run(100.0, [(10.0, 30.0), (20.0, 22.0), (40.0, 42.0), (60.0, 61.0)])
    assert run.normal_since(pbx) == 20.0
    assert run.recovery_s(pbx) == 1.0  # 20 simulated seconds at time x20


def test_a_late_probe_after_recovery_was_seen_does_not_undo_it() -> None:
    # Seen normal at 70; the probe that entered at 80 met the traffic's end, never answered.
    probes = [(20.0, 22.0), (40.0, 42.0), (60.0, 61.0), (80.0, None)]
    run, pbx = _run(200.0, probes, seen_at=70.0)
    assert run.recovery_s(pbx) == 1.0


def test_a_probe_pending_when_recovery_was_seen_is_not_held_against_it() -> None:
    probes = [(20.0, 22.0), (40.0, 42.0), (70.0 - PROBE_OK_S / 2, None)]
    run, pbx = _run(200.0, probes, seen_at=70.0)
    assert run.recovery_s(pbx) == 1.0


def test_without_recovery_seen_an_unanswered_probe_means_not_recovered() -> None:
    run, pbx = _run(200.0, [(20.0, 22.0), (40.0, 42.0), (60.0, None)])
    assert run.recovery_s(pbx) is None
