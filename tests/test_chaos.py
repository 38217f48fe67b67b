"""The short fault suite (`acd chaos --short`): every fault over real components, judged by
the simulator's ledger — nothing lost, nobody double-booked, no reservation leaked."""

from __future__ import annotations

import argparse
import asyncio

import pytest

from load_tests.chaos import FAULTS, run_chaos

pytestmark = pytest.mark.slow


async def test_every_fault_ends_with_nothing_lost_and_nobody_double_booked() -> None:
    args = argparse.Namespace(short=True, only="", scenario=None, keep=False, json=True)
    report = await run_chaos(args, asyncio.Event())
    assert [f["name"] for f in report["faults"]] == [fault.name for fault in FAULTS]
    for fault in report["faults"]:
        assert fault["calls"] > 20, fault
        assert fault["lost"] == 0, fault
        assert fault["double_assigned"] == 0, fault
        assert fault["leaked_reservations"] == 0, fault
        assert fault["state_mismatches"] == 0, fault
        assert fault["recovery_s"] is not None, fault
    # Every caller the restart cut off is the router's pbx_restart too (no state mismatch),
    # and ingest, the dispatcher and the workers rode it out (exit codes 0 below).
    restarted = next(f for f in report["faults"] if f["name"] == "asterisk_restarted")
    assert restarted["ended_by_pbx_restart"] >= 1, restarted  # at least the caller nobody could take
    killed = next(f for f in report["faults"] if f["name"] == "routing_worker_killed")
    assert killed["process_exit_codes"]["route-1"] == -9
    others = [
        code
        for f in report["faults"]
        for name, code in f["process_exit_codes"].items()
        if not (f["name"] == "routing_worker_killed" and name == "route-1")
    ]
    assert all(code == 0 for code in others)


def test_the_verdict_counts_every_call_and_excuses_only_those_nobody_could_see() -> None:
    """More calls than the report lists by id: the counts still cover all of them."""
    from types import SimpleNamespace

    from load_tests.amisim.ledger import CallRecord, Ledger
    from load_tests.chaos import SCENARIO, FaultRun, chaos_settings
    from load_tests.scenario import load_scenario

    run = FaultRun(
        load_scenario(SCENARIO),
        chaos_settings(argparse.Namespace(short=True, keep=False)),
        FAULTS[0],
        fault_at_s=3.0,
    )
    run.struck_at, run.blind_until = 100.0, 200.0
    ledger = Ledger()

    def call(call_id: str, entered: float, ended: float) -> str:
        ledger.calls[call_id] = CallRecord(
            call_id, "q", None, None, entered, None, 60.0, "PJSIP/t", state="abandoned", ended_at=ended
        )
        return call_id

    unseen = [call(f"u{i}", 120.0, 150.0) for i in range(25)]  # came and went while AMI was down
    seen = [call(f"s{i}", 50.0, 150.0) for i in range(3)]  # was there before: the router must know
    summary = {
        "ground_truth": {"offered": 28, "answered": 0, "abandoned": 28, "double_assignments": 0},
        "lost_call_ids": unseen + seen,
        "mismatched_calls": [],
        "process_exit_codes": {},
    }
    verdict = run.verdict(summary, SimpleNamespace(ledger=ledger))  # type: ignore[arg-type]
    run.run_dir.rmdir()
    assert (verdict["lost"], verdict["unobservable"], verdict["lost_call_ids"]) == (3, 25, seen)
