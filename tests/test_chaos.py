"""The short fault suite (`acd chaos --short --together`): every fault over real components,
judged by the simulator's ledger — nothing lost, nobody double-booked, no reservation leaked,
every ended call recorded, service normal again."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

import pytest

from load_tests.chaos import FAULTS, JUDGED_CALLS, SYSTEMD_RESTART_S, clean, run_chaos, stated_detection_s
from router.lease import INGEST_LEASE_RENEW_S, INGEST_LEASE_TTL_S

# Each group's faults strike one after another on one system (`acd chaos --together`): the
# next once service has been normal again for chaos.RECOVERED_FOR_S after the one before,
# and each fault is judged on the calls that entered in its window. The groups' systems run
# one after another too, with nothing beside them (`alone`: `make test` runs them after the
# rest of the system tier, in one process). A fault system uses most of this 2-core machine
# while the traffic flows (the lab's Tansu alone 25-44 % of a core, rising with its log):
# beside another (or beside the race test, `pip install`, a load test), a probe call took
# seconds without any fault, and recovery (a probe answered within 0.4 real seconds,
# chaos.PROBE_OK_S at the scenario's time scale) was at times never seen (CI, 2026-11-30).
# What is judged is whether it recovered and lost nothing, not how fast (acd chaos reports
# the figures).
pytestmark = [pytest.mark.slow, pytest.mark.alone]

PROCESSES_AND_SERVERS = (
    "routing_worker_killed",
    "redis_restarted",
    "postgres_restarted",
    "dispatcher_killed",
    "ingest_killed",
)
LINKS_AND_THE_PBX = (
    "ami_link_dropped",
    "asterisk_restarted",
    "redirect_failed",
    "redis_link_hung",
    "broker_link_hung",
    "ami_link_hung",
)
# Run by `acd chaos` (full, --short, --together, --soak), but out of `make test`, where two
# systems share two cores (docs/operations.md, "Out of make test"). broker_restarted: nothing
# lost or mismatched in any run since 2026-11-30, but its recovery (the group re-forming on
# an empty Tansu, 11-22 s) outlasted the 20 s the run then waited for it at that load, about
# one run in three (chaos.EXTRA_S is 30 s now), and one run in 28 had a record missing after
# the broker's restart (cause not found). redis_link_hung joined the links group on
# 2026-11-30 (docs/operations.md: 0 lost, 0 mismatched in every run beside a second system).
KNOWN_DEFECT = ("broker_restarted",)
# Redis behind Sentinel (a primary, a replica, three sentinels): a system of its own, since
# Redis cannot also be behind the proxy the hung-link faults need, and redis_restarted
# keeps proving a restart of the one server the default deployment has.
BEHIND_SENTINEL = ("redis_failover",)
# The sentinels promote the replica within this: down-after-milliseconds (3 s in chaos runs),
# their vote and the replica's switch, 4.2-4.3 s when measured (docs/operations.md, Redis failover).
FAILOVER_PROMOTED_S = 15.0
# A hung link is noticed within its stated time (docs/operations.md, Links that hang); this
# much more is allowed for polling /ready and a busy machine.
DETECTION_SLACK_S = 1.5
# The take-over is seen on /metrics, polled every 50 ms beside the traffic and seven processes.
TAKEOVER_SLACK_S = 0.5


async def _together(names: tuple[str, ...]) -> dict[str, Any]:
    args = argparse.Namespace(short=True, only=",".join(names), scenario=None, keep=False, json=True, together=True)
    report = await run_chaos(args, asyncio.Event())
    assert [f["name"] for f in report["faults"]] == [f.name for f in FAULTS if f.name in names]
    return report


@pytest.fixture(scope="module")
async def processes_and_servers() -> dict[str, Any]:
    return await _together(PROCESSES_AND_SERVERS)


@pytest.fixture(scope="module")
async def links_and_the_pbx() -> dict[str, Any]:
    return await _together(LINKS_AND_THE_PBX)


@pytest.mark.parametrize("name", PROCESSES_AND_SERVERS)
def test_processes_and_servers_killed_or_restarted(processes_and_servers: dict[str, Any], name: str) -> None:
    _judge(processes_and_servers, name)


def test_processes_and_servers_the_whole_run(processes_and_servers: dict[str, Any]) -> None:
    _judge_totals(processes_and_servers)


@pytest.mark.parametrize("name", LINKS_AND_THE_PBX)
def test_links_that_drop_or_hang_and_the_pbx(links_and_the_pbx: dict[str, Any], name: str) -> None:
    _judge(links_and_the_pbx, name)


def test_links_that_drop_or_hang_and_the_pbx_the_whole_run(links_and_the_pbx: dict[str, Any]) -> None:
    _judge_totals(links_and_the_pbx)


@pytest.fixture(scope="module")
async def behind_sentinel() -> dict[str, Any]:
    return await _together(BEHIND_SENTINEL)


@pytest.mark.parametrize("name", BEHIND_SENTINEL)
def test_redis_behind_sentinel_failed_over(behind_sentinel: dict[str, Any], name: str) -> None:
    _judge(behind_sentinel, name)


def test_the_replica_was_promoted(behind_sentinel: dict[str, Any]) -> None:
    """How soon service recovered is a figure `acd chaos` reports (docs/operations.md), not
    judged here: beside the rest of the system tier it took 16.7 s once; alone 2.4-2.9 s
    before the fault froze the replica, 6-7.4 s since (routing held for the cut-off replica)."""
    result = behind_sentinel["faults"][0]
    shown = json.dumps(result)
    assert result["details"]["promoted_after_s"] < FAILOVER_PROMOTED_S, shown
    # The replica was cut off before the kill: the failover lost writes, and _judge's
    # verdict (nothing lost, nobody double-booked, no state mismatch) held all the same.
    assert result["details"]["replication_lag_bytes_at_kill"] > 0, shown


def test_redis_behind_sentinel_the_whole_run(behind_sentinel: dict[str, Any]) -> None:
    _judge_totals(behind_sentinel)


def _judge(report: dict[str, Any], name: str) -> None:
    """One fault's share of its group's run."""
    fault = next(f for f in FAULTS if f.name == name)
    result = next(f for f in report["faults"] if f["name"] == name)
    # Whole, where pytest would cut a dict short; with the run's logs, kept when it went wrong.
    shown = json.dumps(result | {"kept_run_dir": report.get("kept_run_dir")})
    assert result["calls"] >= JUDGED_CALLS, shown
    assert result["lost"] == 0, shown
    assert result["double_assigned"] == 0, shown
    assert result["state_mismatches"] == 0, shown
    assert result["records_missing"] == 0, shown  # every ended call reached PostgreSQL
    assert result["recovery_s"] is not None, shown
    if fault.link is not None:
        # Every process behind the link said so on /ready in time, and was ready again.
        assert result["link_detected_s"] is not None, shown
        assert result["link_detected_s"] <= stated_detection_s(fault.link) + DETECTION_SLACK_S, shown
        assert result["link_ready_again_s"] is not None, shown
    if name == "dispatcher_killed":
        # Killed while it held a claimed offer, and the restarted dispatcher read again what
        # was not committed: no caller redirected twice.
        assert result["details"]["held_a_claim"], shown
        assert result["unexpected_redirects"] == 0, shown
    if name == "ingest_killed":
        # The standby took the lease within its TTL and a renewal (docs/operations.md), and
        # the killed one, restarted, stands by.
        details = result["details"]
        assert details["took_over_s"] is not None, shown
        assert details["took_over_s"] <= INGEST_LEASE_TTL_S + INGEST_LEASE_RENEW_S + TAKEOVER_SLACK_S, shown
        assert details["standby_after_restart"], shown
    if name == "asterisk_restarted":
        # Every caller the restart cut off is the router's pbx_restart too (no state
        # mismatch), and ingest, the dispatcher and the workers rode it out (exit codes 0).
        assert result["ended_by_pbx_restart"] >= 1, result  # at least the caller nobody could take
    if name == "routing_worker_killed":
        assert result["details"]["killed_exit_code"] == -9, shown


def _judge_totals(report: dict[str, Any]) -> None:
    totals = report["totals"]
    shown = json.dumps(totals | {"kept_run_dir": report.get("kept_run_dir")})
    assert totals["faults"] == len(report["faults"]), shown
    assert totals["lost"] == totals["double_assigned"] == totals["state_mismatches"] == 0, shown
    assert totals["leaked_reservations"] == 0, shown
    assert totals["records_missing"] == 0, shown
    assert clean(report)
    # Every process, the killed and restarted ones included, stopped cleanly at the end.
    codes = report["faults"][-1]["process_exit_codes"]
    assert all(code == 0 for code in codes.values()), codes


@pytest.mark.unit
def test_every_fault_is_in_one_group_of_the_short_suite() -> None:
    groups = PROCESSES_AND_SERVERS + LINKS_AND_THE_PBX + BEHIND_SENTINEL + KNOWN_DEFECT
    assert sorted(groups) == sorted(f.name for f in FAULTS)
    assert all(f.sentinel == (f.name in BEHIND_SENTINEL) for f in FAULTS)


@pytest.mark.unit
def test_redis_cannot_be_behind_sentinel_and_the_proxy_in_one_system() -> None:
    from load_tests.chaos import chosen_faults

    def chosen(only: str) -> list[str]:
        args = argparse.Namespace(only=only, together=True, soak=None)
        return [fault.name for fault in chosen_faults(args)]

    assert "redis_failover" not in chosen("")  # every fault: left out, and said so
    assert chosen("redis_failover,redis_restarted") == ["redis_restarted", "redis_failover"]
    with pytest.raises(SystemExit, match="cannot share one system"):
        chosen("redis_failover,redis_link_hung")


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
