"""Several routing worker processes on one Redis and one broker, agents flapping between
states, thousands of calls: nobody double-booked, no call lost (the simulator's ledger is
the referee)."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

import pytest
from pydantic import TypeAdapter

from load_tests.demo import Demo
from load_tests.scenario import load_scenario
from router.domain import Requirements, requirements_met

# Alone (`make test` runs it with nothing beside it): starved of CPU beside another pipeline,
# the single ingest's lease lapsed every 1-3 s, and 1-5 calls of a run were never heard of
# by the routers (CI and a fresh clone, 2026-11-30). That cause is fixed, but a take-over of
# its own still leaves out a lapse's mid-call events (docs/operations.md, An ingest starved
# of CPU).
pytestmark = [pytest.mark.slow, pytest.mark.alone]

REQUIREMENTS: TypeAdapter[Requirements] = TypeAdapter(Requirements)
SCENARIO = Path(__file__).parent / "scenarios" / "race.yaml"


async def test_four_workers_flapping_agents_thousands_of_calls(tmp_path: Path) -> None:
    scenario = load_scenario(SCENARIO)
    assignments = tmp_path / "assignments.jsonl"
    args = argparse.Namespace(duration=45.0, json=True, assignments=assignments, workers=4, metrics_port=0, keep=False)
    summary = await Demo(scenario, args).run(asyncio.Event())
    truth = summary["ground_truth"]
    print({k: summary[k] for k in ("offered", "answered", "abandoned", "overflowed", "decisions")}, truth)
    assert truth["offered"] >= 1000
    assert truth["double_assignments"] == 0
    assert summary["lost_calls"] == 0, summary["lost_call_ids"]
    assert summary["state_mismatches"] == 0, summary["mismatched_calls"]
    assert truth["offers_noanswer"] > 0  # ring-no-answer happened and was survived
    assert summary["queues"]["french"]["offered"] > 0
    assert truth["overflowed"] > 0 and summary["overflowed"] >= truth["overflowed"]
    assert all(code == 0 for code in summary["process_exit_codes"].values()), summary["process_exit_codes"]
    skills = {agent.id: agent.skills for agent in scenario.all_agents()}
    for line in map(json.loads, assignments.read_text().splitlines()):
        requirements = REQUIREMENTS.validate_python(line["requirements_in_force"])
        assert requirements_met(requirements, skills[line["agent_id"]]), line
