"""The short fault suite (`acd chaos --short`): every fault over real components, judged by
the simulator's ledger — nothing lost, nobody double-booked, no reservation leaked."""

from __future__ import annotations

import argparse
import asyncio

import pytest

from load_tests.chaos import FAULTS, SYSTEMD_RESTART_S, Fault, run_chaos, stated_detection_s
from router.lease import INGEST_LEASE_RENEW_S, INGEST_LEASE_TTL_S

# One test per fault, each on its fresh system. `--dist loadscope` keeps a class on one
# worker: processes and servers killed or restarted in one class, links that drop or hang
# and the PBX's own faults in the other, side by side (about 160 s and 180 s of short runs
# on 2 cores), each class's faults one after another. A fault system that competes for the
# cores recovers later (two on two cores were seen to take over 16 s), so a run keeps its
# traffic coming until service has been normal for a while (chaos.RECOVERED_FOR_S), up to
# a cap: what is judged is whether it recovered and lost nothing, not how fast.
pytestmark = pytest.mark.slow

KILLED_OR_RESTARTED = (
    "routing_worker_killed",
    "broker_restarted",
    "redis_restarted",
    "postgres_restarted",
    "dispatcher_killed",
    "ingest_killed",
)
# A hung link is noticed within its stated time (docs/operations.md, Links that hang); this
# much more is allowed for polling /ready and a busy machine.
DETECTION_SLACK_S = 1.5
# The take-over is seen on /metrics, polled every 50 ms beside the traffic and seven processes.
TAKEOVER_SLACK_S = 0.5


# Run by `acd chaos` (full and --short), but not yet part of `make test`, and why. Seen on
# 2026-11-29: recovery_s null (service never seen normal again within the run, up to its
# 20 s extension) in one short run of three for dispatcher_killed and for redis_link_hung,
# with nothing lost or double-booked in any run; broker_link_hung and ami_link_hung come from
# the same change and have not had enough runs to be trusted as a gate. What they check
# underneath is tested alone: tests/test_hung_links.py (detection, readiness, recovery of
# each link), tests/test_dispatch_claim.py (a command executed once across a restart).
NOT_YET_IN_MAKE_TEST = frozenset(
    {"dispatcher_killed", "redis_link_hung", "broker_link_hung", "ami_link_hung"}
)


def _faults(*, killed_or_restarted: bool) -> list[Fault]:
    return [
        fault
        for fault in FAULTS
        if (fault.name in KILLED_OR_RESTARTED) == killed_or_restarted
        and fault.name not in NOT_YET_IN_MAKE_TEST
    ]


class TestProcessesAndServersKilledOrRestarted:
    @pytest.mark.parametrize("fault", _faults(killed_or_restarted=True), ids=lambda fault: fault.name)
    async def test_nothing_lost_and_nobody_double_booked(self, fault: Fault) -> None:
        await _judge(fault)


class TestLinksThatDropOrHangAndThePbx:
    @pytest.mark.parametrize("fault", _faults(killed_or_restarted=False), ids=lambda fault: fault.name)
    async def test_nothing_lost_and_nobody_double_booked(self, fault: Fault) -> None:
        await _judge(fault)


async def _judge(fault: Fault) -> None:
    """One fault on its fresh system."""
    args = argparse.Namespace(short=True, only=fault.name, scenario=None, keep=False, json=True)
    report = await run_chaos(args, asyncio.Event())
    assert [f["name"] for f in report["faults"]] == [fault.name]
    result = report["faults"][0]
    assert result["calls"] > 20, result
    assert result["lost"] == 0, result
    assert result["double_assigned"] == 0, result
    assert result["leaked_reservations"] == 0, result
    assert result["state_mismatches"] == 0, result
    assert result["records_missing"] == 0, result  # every ended call reached PostgreSQL
    assert result["recovery_s"] is not None, result
    if fault.link is not None:
        # Every process behind the link said so on /ready in time, and was ready again.
        assert result["link_detected_s"] is not None, result
        assert result["link_detected_s"] <= stated_detection_s(fault.link) + DETECTION_SLACK_S, result
        assert result["link_ready_again_s"] is not None, result
    if fault.name == "dispatcher_killed":
        # The restarted dispatcher read again what was not committed: no caller redirected twice.
        assert result["unexpected_redirects"] == 0, result
    if fault.name == "ingest_killed":
        # The standby took the lease within its TTL and a renewal (docs/operations.md), and
        # the killed one, restarted, stands by.
        details = result["details"]
        assert details["took_over_s"] is not None, result
        assert details["took_over_s"] <= INGEST_LEASE_TTL_S + INGEST_LEASE_RENEW_S + TAKEOVER_SLACK_S, result
        assert details["standby_after_restart"], result
    codes = dict(result["process_exit_codes"])
    if fault.name == "asterisk_restarted":
        # Every caller the restart cut off is the router's pbx_restart too (no state
        # mismatch), and ingest, the dispatcher and the workers rode it out (exit codes 0).
        assert result["ended_by_pbx_restart"] >= 1, result  # at least the caller nobody could take
    if fault.name == "routing_worker_killed":
        assert codes.pop("route-1") == -9
    assert all(code == 0 for code in codes.values()), codes


@pytest.mark.unit  # the judging alone, on a made-up ledger
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


@pytest.mark.unit
@pytest.mark.parametrize("unit", ["acd-dispatch.service", "acd-ingest@.service"])
def test_killed_processes_are_restarted_as_their_systemd_unit_says(unit: str) -> None:
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "deploy" / "systemd" / unit
    lines = path.read_text().splitlines()
    assert "Restart=on-failure" in lines
    assert f"RestartSec={SYSTEMD_RESTART_S:g}" in lines


@pytest.mark.unit
def test_every_hung_link_fault_has_a_stated_detection_time() -> None:
    links = {fault.link for fault in FAULTS if fault.link is not None}
    assert links == {"redis", "kafka", "ami"}
    assert all(0 < stated_detection_s(link) <= 5 for link in links)
