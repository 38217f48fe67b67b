"""The short fault suite (`acd chaos --short`): every fault over real components, judged by
the simulator's ledger — nothing lost, nobody double-booked, no reservation leaked."""

from __future__ import annotations

import argparse
import asyncio

import pytest

from workers.chaos import FAULTS, run_chaos

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
    killed = next(f for f in report["faults"] if f["name"] == "routing_worker_killed")
    assert killed["process_exit_codes"]["route-1"] == -9
    others = [
        code
        for f in report["faults"]
        for name, code in f["process_exit_codes"].items()
        if not (f["name"] == "routing_worker_killed" and name == "route-1")
    ]
    assert all(code == 0 for code in others)
