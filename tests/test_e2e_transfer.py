"""Transfers through the whole pipeline (simulator -> ingest -> Tansu -> routing workers ->
Redis -> dispatcher, as separate processes): agents are freed, calls are recorded as
transferred, callers transferred back into a queue wait again and are answered."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import pytest

from load_tests.demo import Demo
from load_tests.scenario import Transfers, default_scenario_path, load_scenario
from router.store import RedisStateStore

pytestmark = pytest.mark.slow


class Watch:
    """Just before the summary: every call the phones transferred out must be 'transferred'
    in the router (its agent released), once in-flight events have landed."""

    def __init__(self, demo: Demo) -> None:
        self.demo = demo
        self.router_states: dict[str, str] = {}
        self.truth: list[str] = []

    async def started(self, http_ports: dict[str, int]) -> None:
        pass

    async def finishing(self, store: RedisStateStore) -> None:
        ledger = self.demo.simulator.pbx.ledger
        for _ in range(40):
            self.truth = [c.call_id for c in ledger.calls.values() if c.state == "transferred"]
            self.router_states = await store.call_states(self.truth)
            if all(state == "transferred" for state in self.router_states.values()):
                return
            await asyncio.sleep(0.25)


async def test_transferred_calls_free_their_agents_end_to_end() -> None:
    scenario = load_scenario(default_scenario_path())
    behaviour = scenario.agent_behaviour.model_copy(update={"transfers": Transfers(share=0.6)})
    scenario = scenario.model_copy(update={"time_scale": 20.0, "agent_behaviour": behaviour})
    args = argparse.Namespace(
        duration=15.0, json=True, assignments=None, workers=2, metrics_port=0, keep=False
    )
    demo = Demo(scenario, args)
    demo.observer = watch = Watch(demo)
    summary: dict[str, Any] = await demo.run(asyncio.Event())

    truth = summary["ground_truth"]
    assert truth["transfers"] >= 5 and truth["transferred_out"] >= 2 and truth["requeued_by_transfer"] >= 1
    assert summary["double_assignments"] == 0 and truth["double_assignments"] == 0
    assert summary["lost_calls"] == 0 and summary["state_mismatches"] == 0, summary["mismatched_calls"]
    assert (summary["offered"], summary["answered"], summary["abandoned"]) == (
        truth["offered"],
        truth["answered"],
        truth["abandoned"],
    )
    # Every transfer the phones made, the router counted, in Redis and in Prometheus.
    assert summary["transferred"] == truth["transfers"]
    assert summary["transferred_back"] == truth["requeued_by_transfer"]
    assert summary["metrics"]["acd_calls_transferred_total"] == truth["transfers"]
    # No agent is left on a call the phone system has handed on.
    assert watch.truth and set(watch.router_states.values()) == {"transferred"}
    # Callers transferred back into a queue were answered again.
    ledger = demo.simulator.pbx.ledger
    requeued = [c for c in ledger.calls.values() if any(t.requeued for t in c.transfers)]
    assert any(c.answered_at is not None or c.state == "completed" for c in requeued)
    assert all(code == 0 for code in summary["process_exit_codes"].values()), summary["process_exit_codes"]
