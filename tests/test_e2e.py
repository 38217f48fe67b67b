"""The whole pipeline, for real: AMI simulator -> ingest -> Tansu -> routing workers ->
Redis -> dispatcher -> AMI Redirects, as separate processes, judged against the
simulator's ground truth."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

import pytest
from pydantic import TypeAdapter

from load_tests.demo import Demo
from load_tests.scenario import default_scenario_path, load_scenario
from router.domain import Requirements, requirements_met

REQUIREMENTS: TypeAdapter[Requirements] = TypeAdapter(Requirements)

pytestmark = pytest.mark.slow


async def test_calls_are_routed_end_to_end_with_nothing_lost_or_double_booked(tmp_path: Path) -> None:
    scenario = load_scenario(default_scenario_path())
    scenario = scenario.model_copy(update={"time_scale": 20.0})
    assignments = tmp_path / "assignments.jsonl"
    args = argparse.Namespace(
        duration=10.0, json=True, assignments=assignments, workers=2, metrics_port=0, keep=False
    )
    summary = await Demo(scenario, args).run(asyncio.Event())

    truth = summary["ground_truth"]
    assert summary["answered"] > 10
    assert summary["double_assignments"] == 0 and truth["double_assignments"] == 0
    assert summary["lost_calls"] == 0 and summary["state_mismatches"] == 0
    # What the router measured agrees with what happened on the phone system ...
    assert (summary["offered"], summary["answered"], summary["abandoned"]) == (
        truth["offered"],
        truth["answered"],
        truth["abandoned"],
    )
    # ... and with what its Prometheus counters say.
    metrics = summary["metrics"]
    assert metrics["acd_calls_answered_total"] == summary["answered"]
    assert metrics["acd_calls_offered_total"] == summary["offered"]
    assert metrics["acd_ami_events_produced_total"] > summary["offered"] * 5
    assert summary["routing_latency_p50_ms"] is not None
    assert all(code == 0 for code in summary["process_exit_codes"].values()), summary["process_exit_codes"]

    lines = [json.loads(line) for line in assignments.read_text().splitlines()]
    assert len(lines) == summary["answered"]
    skills = {agent.id: agent.skills for agent in scenario.all_agents()}
    priorities = {queue.name: queue.priority for queue in scenario.queues}
    for line in lines:
        assert line["agent_skills"] == skills[line["agent_id"]]
        assert line["wait_s"] >= 0 and line["strategy"] and line["reason"]
        assert line["priority"] == priorities[line["queue"]]
        requirements = REQUIREMENTS.validate_python(line["requirements_in_force"])
        assert requirements_met(requirements, skills[line["agent_id"]]), line
