"""One demo run (`acd demo --report-out DIR` with its records read as the recorder reads
them), the whole pipeline as processes — AMI simulator -> ingest -> Tansu -> routing workers
-> Redis -> dispatcher -> AMI Redirects, the recorder and PostgreSQL — judged three ways
against the simulator's ground truth: the routing itself, the records (docs/records.md) and
the reports read back from PostgreSQL (issue 12's accuracy check). One run, not three: each
costs about 20 s of a worker (`make test`'s system tier)."""

from __future__ import annotations

import argparse
import asyncio
import csv
import itertools
import json
import uuid
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from load_tests.amisim.ledger import CallRecord as LedgerCall
from load_tests.amisim.pbx import Pbx
from load_tests.children import ChildProcesses
from load_tests.demo import Demo
from load_tests.scenario import Scenario, default_scenario_path, load_scenario
from router.bus import KafkaGroupReader, Topics
from router.domain import Requirements, requirements_met
from router.envelope import RECORD_AGENT_STATE, RECORD_CALL, decode
from router.records import AgentStateRecord, CallRecord, parse_agent_state_record, parse_call_record
from router.settings import KafkaSettings
from router.store import RedisStateStore
from tests.polling import eventually

# The demo subclass is not one of conftest.SYSTEM_HARNESSES by name: say the tier here.
pytestmark = [pytest.mark.slow, pytest.mark.system]

REQUIREMENTS: TypeAdapter[Requirements] = TypeAdapter(Requirements)


class RecordsTap:
    """Everything on the records topics, read from the start in a group of its own."""

    def __init__(self, bootstrap: str) -> None:
        topics = Topics(KafkaSettings().topic_prefix)
        self.reader = KafkaGroupReader(
            KafkaSettings(bootstrap_servers=bootstrap),
            [topics.call_records, topics.agent_records],
            f"records-check-{uuid.uuid4().hex[:8]}",
        )
        self.calls: dict[str, CallRecord] = {}  # by record_id: a copy published twice is one record
        self.agents: dict[str, AgentStateRecord] = {}

    async def run(self, stop: asyncio.Event) -> None:
        await self.reader.start()
        try:
            while not stop.is_set():
                for message in await self.reader.read(timeout_ms=100):
                    envelope = decode(message.value)
                    if envelope.type == RECORD_CALL:
                        call = parse_call_record(envelope)
                        self.calls[call.record_id] = call
                    elif envelope.type == RECORD_AGENT_STATE:
                        state = parse_agent_state_record(envelope)
                        self.agents[state.record_id] = state
        finally:
            await self.reader.stop()

    def final(self) -> dict[str, list[CallRecord]]:
        """Each call's records, highest revision first."""
        by_call: dict[str, list[CallRecord]] = defaultdict(list)
        for record in self.calls.values():
            by_call[record.call_id].append(record)
        return {call_id: sorted(records, key=lambda r: -r.revision) for call_id, records in by_call.items()}


def settled(call: LedgerCall, records: list[CallRecord] | None) -> bool:
    """The call's last record is in: its end, and its wrap-up's end when it was answered."""
    if not records:
        return False
    return records[0].answered_at is None or records[0].wrapup_s is not None


class RecordedDemo(Demo):
    """The demo; at its end every caller still on the line hangs up (so that every call of
    the run ends), and the records are read until each call's last one has come."""

    records: RecordsTap  # set when the run finishes, read by the test

    async def _finish(self, store: RedisStateStore, pbx: Pbx, children: ChildProcesses) -> dict[str, Any]:
        for call_id in list(pbx.ledger.calls):
            pbx.hangup_call(call_id)
        self.records = RecordsTap(self.kafka.bootstrap_servers)
        tap_stop = asyncio.Event()
        task = asyncio.get_running_loop().create_task(self.records.run(tap_stop))
        try:
            calls = pbx.ledger.calls

            def missing() -> list[str]:
                final = self.records.final()
                return [call_id for call_id, call in calls.items() if not settled(call, final.get(call_id))]

            await eventually(
                lambda: not missing(), lambda: f"the last record of calls {missing()[:10]}", within=60
            )
            summary = await super()._finish(store, pbx, children)
            await asyncio.sleep(1.0)  # anything published late (a duplicate) is seen too
        finally:
            tap_stop.set()
            await task
        return summary


@dataclass(frozen=True)
class Run:
    """What the tests read: the run's summary, its demo (the simulator's ledger, the records
    it read), its scenario, its assignments file and its reports folder."""

    summary: dict[str, Any]
    demo: RecordedDemo
    scenario: Scenario
    assignments: Path
    reports: Path


@pytest.fixture(scope="module")
async def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    scenario = load_scenario(default_scenario_path()).model_copy(update={"time_scale": 20.0})
    folder = tmp_path_factory.mktemp("demo-run")
    args = argparse.Namespace(
        duration=12.0,
        json=True,
        assignments=folder / "assignments.jsonl",
        workers=2,
        metrics_port=0,
        keep=False,
        report_out=folder / "reports",
        report_interval="15m",
    )
    demo = RecordedDemo(scenario, args)
    summary = await demo.run(asyncio.Event())
    return Run(summary, demo, scenario, args.assignments, args.report_out)


async def test_calls_are_routed_end_to_end_with_nothing_lost_or_double_booked(run: Run) -> None:
    summary, scenario, assignments = run.summary, run.scenario, run.assignments
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


async def test_every_call_of_a_run_has_one_final_record_that_agrees_with_the_run(run: Run) -> None:
    summary, demo, scenario, assignments = run.summary, run.demo, run.scenario, run.assignments
    truth = summary["ground_truth"]
    assert summary["lost_calls"] == 0 and summary["double_assignments"] == 0, summary
    assert truth["still_waiting"] == 0 and truth["talking"] == 0  # every call of the run ended
    assert summary["answered"] > 10

    ledger = demo.simulator.pbx.ledger.calls
    final = demo.records.final()
    assert sorted(final) == sorted(ledger)
    for call_id, records in final.items():
        # Exactly one record per revision, and exactly one final record, for every call.
        revisions = sorted(r.revision for r in records)
        assert revisions == list(range(1, len(revisions) + 1)), (call_id, records)
        last = records[0]
        assert last.outcome in ("answered", "abandoned"), last
        assert (last.caller_number, last.caller_name) == (
            ledger[call_id].caller_number,
            ledger[call_id].caller_name,
        )
        assert last.queue == ledger[call_id].queue
        assert last.entered_at == pytest.approx(ledger[call_id].entered_at, abs=2.0)  # ingest's clock
        if last.outcome == "answered":
            assert last.wrapup_s is not None and len(records) == 2
            assert last.agent_id == ledger[call_id].agent_id and last.offers >= 1 and last.decision_reason
        else:
            assert last.agent_id == "" and len(records) == 1

    # The run's totals per queue, as the router's statistics and Prometheus counted them.
    for queue, figures in summary["queues"].items():
        in_queue = [records[0] for records in final.values() if records[0].queue == queue]
        assert sum(r.outcome == "answered" for r in in_queue) == figures["answered"], queue
        assert sum(r.outcome == "abandoned" for r in in_queue) == figures["abandoned"], queue
        assert len(in_queue) == figures["offered"], queue
    assert sum(r[0].outcome == "answered" for r in final.values()) == truth["answered"] == summary["answered"]

    # Every answered call's agent is the one the router assigned (and the phone system saw).
    lines = [json.loads(line) for line in assignments.read_text().splitlines()]
    assert len(lines) == summary["answered"]
    for line in lines:
        record = final[line["call_id"]][0]
        assert record.agent_id == line["agent_id"]
        assert record.wait_s == pytest.approx(line["wait_s"], abs=0.001)

    # Each agent's states follow one another without gaps or overlaps.
    by_agent: dict[str, list[AgentStateRecord]] = defaultdict(list)
    for state in demo.records.agents.values():
        by_agent[state.agent_id].append(state)
    assert sorted(by_agent) == sorted(agent.id for agent in scenario.all_agents())
    for agent_id, states in by_agent.items():
        states.sort(key=lambda s: s.start)
        assert all(a.end == b.start for a, b in itertools.pairwise(states)), agent_id
        on_calls = sum(s.state == "on_call" for s in states)
        answered_by = sum(1 for records in final.values() if records[0].agent_id == agent_id)
        assert on_calls == answered_by, agent_id


async def test_the_runs_reports_equal_its_summary_and_its_assignments(run: Run) -> None:
    summary, out, assignments = run.summary, run.reports, run.assignments
    assert summary["lost_calls"] == 0 and summary["double_assignments"] == 0, summary
    assert summary["waiting_at_end"] == 0  # the run hung up whoever was still on the line
    assert summary["records"]["missing_count"] == 0, summary["records"]
    assert summary["answered"] > 10

    by_queue = _rows(out / "intervals_by_queue.csv")
    assert {
        "interval_start",
        "queue",
        "offered",
        "answered",
        "abandoned",
        "service_level",
        "asa_seconds",
    } <= set(by_queue[0])
    totals: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for row in by_queue:
        figures = totals[row["queue"]]
        for name in ("offered", "answered", "abandoned", "answered_within_threshold"):
            figures[name] += _number(row[name])
        figures["wait_sum"] += _number(row["asa_seconds"]) * _number(row["answered"])
    for queue, expected in summary["queues"].items():
        got = totals[queue]
        assert (got["offered"], got["answered"], got["abandoned"]) == (
            expected["offered"],
            expected["answered"],
            expected["abandoned"],
        ), queue
        if expected["answered"]:
            assert got["wait_sum"] / got["answered"] == pytest.approx(expected["asa_seconds"], abs=0.001), (
                queue
            )
        # Service level, the default formula: within / (answered + abandoned after the threshold).
        abandoned_after = sum(
            _number(r["abandoned"]) - _number(r["abandoned_within_threshold"])
            for r in by_queue
            if r["queue"] == queue
        )
        if expected["service_level"] is not None:
            level = got["answered_within_threshold"] / (got["answered"] + abandoned_after)
            assert level == pytest.approx(expected["service_level"], abs=0.001), queue

    calls = {row["call_id"]: row for row in _rows(out / "calls.csv")}
    assert {"call_id", "queue", "outcome", "agent_id", "wait_s", "talk_s", "qa_sampled"} <= set(
        next(iter(calls.values()))
    )
    assert len(calls) == summary["offered"]
    lines = [json.loads(line) for line in assignments.read_text().splitlines()]
    assert len(lines) == summary["answered"]
    for line in lines:
        assert calls[line["call_id"]]["agent_id"] == line["agent_id"], line
    assert _rows(out / "intervals_by_agent.csv"), "an agent report with rows"



def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def _number(text: str) -> float:
    return float(text) if text else 0.0
