"""`acd chaos`: fault scenarios against the real components while traffic flows.

Each fault runs on a fresh system (the demo's: redis-server, Tansu, the AMI simulator, the
worker processes) with the chaos scenario's traffic. Some seconds in, the fault strikes;
the traffic keeps coming; at the end the referee compares the router's account of every
call with the simulator's ledger:

- ``lost``: calls the router accounts for as neither answered, abandoned, overflowed nor
  waiting; ``double_assigned``: Redirects that reached an agent already at capacity;
- ``leaked_reservations``: agents still holding a reservation no open offer explains;
- ``recovery_s``: real seconds from the fault until a call that arrived after it was
  answered (routing works end to end again);
- for a link that hangs (``*_link_hung``: the processes reach Redis, the broker or AMI
  through a ``BlackholeProxy``): ``link_detected_s``, seconds until the slowest process
  behind the link said so on /ready, and ``link_ready_again_s``, seconds from the link's
  return until the slowest was ready again.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import random
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from load_tests.amisim.ledger import CallRecord, Ledger
from load_tests.amisim.pbx import Pbx
from load_tests.children import ChildProcesses, Readiness, scrape_totals
from load_tests.demo import Demo
from load_tests.embedded import EmbeddedRedis, EmbeddedSentinelRedis, cut_replicas_off, replication
from load_tests.proxy import BlackholeProxy
from load_tests.scenario import Scenario, load_scenario
from load_tests.summary import LISTED_CALLS
from load_tests.traffic import TrafficGenerator
from router.settings import AmiSettings, KafkaSettings, RedisSettings
from router.store import RedisStateStore
from router.store.connect import PING_EVERY_S
from workers.dispatcher import claimant_pid
from workers.runtime import install_stop_signals

logger = logging.getLogger(__name__)

SCENARIO = Path(__file__).resolve().parent / "scenarios" / "chaos.yaml"
PROBE_QUEUE = "probe"
LAST_BAD_PROBES = 10  # details.probes.last_bad: the last late or unanswered probes, to hunt a slow recovery by
PROBE_OK_S = 8.0  # simulated seconds: offer, dispatch and a few seconds of ringing
# A run goes on past its duration until service has been normal this long (real seconds),
# up to EXTRA_S more: on a loaded machine recovery may come late, and ending the traffic
# before it did would report "never recovered" for a fault the system rode out.
RECOVERED_FOR_S = 2.0
EXTRA_S = 30.0
INGESTS = 2  # the pair (docs/operations.md, Ingest in pairs): each lists AMI after reconnecting
LISTED_AGAIN_WITHIN_S = 10.0
# A hung link stays hung for the outage, and at least until every process behind it has
# said so on /ready, for at most this long (real seconds; then ``link_detected_s`` is null).
DETECT_LIMIT_S = 30.0
READY_AGAIN_LIMIT_S = 30.0  # after the link's return, how long the processes are watched
READINESS_POLL_S = 0.1
# deploy/systemd/acd-dispatch.service: Restart=on-failure, RestartSec=2.
SYSTEMD_RESTART_S = 2.0
# redis_failover freezes the replica this long before the primary's kill, so that the writes
# of about a second of traffic are lost with the primary (docs/operations.md, Redis failover).
REPLICA_STALL_S = 1.0
# The sentinels' down-after-milliseconds in a chaos run. At the lab's default (1 s) a run
# once failed over twice: every sentinel found the primary it had just promoted silent for
# 1 s (the machine busy with the processes' replay after the failover; it answered 0.1 s
# later) and promoted the restarted old primary, which lacked the new one's writes (61 calls
# lost, docs/operations.md). Production deployments use 5-30 s.
SENTINEL_DOWN_AFTER_MS = 3000
# --together: how long each fault's effect is watched before service must be normal again.
TOGETHER_DWELL_S = 1.0
# Each fault is judged on the calls that entered in its window (from its strike to the next),
# at least this many: a fault the system rode out quickly still has its window held open
# until they came. A window of 20 was seen once, where 40 are usual.
JUDGED_CALLS = 21
# --soak: a fault every SOAK_EVERY_S, the first after SOAK_FIRST_AT_S (real seconds).
SOAK_EVERY_S = 120.0
SOAK_FIRST_AT_S = 30.0
TAKEOVER_LIMIT_S = 10.0  # how long ingest_killed watches for the standby to become active
SENTINEL_AND_REDIS_PROXY = (
    "acd chaos: redis_failover (Redis behind Sentinel) and redis_link_hung (Redis behind the lab's "
    "proxy) cannot share one system: run them apart (e.g. --only redis_failover)"
)


@dataclass(frozen=True)
class Fault:
    """A named fault: ``strike`` breaks something (and repairs it, when repair is part of it).

    ``link``: the link (redis, kafka, ami) the processes reach through a ``BlackholeProxy``
    in this fault's run, so that ``strike`` can hang it. ``sentinel``: the run's Redis is a
    primary, a replica and three sentinels, and the processes reach it through them."""

    name: str
    description: str
    strike: Callable[[FaultRun], Awaitable[None]]
    link: str | None = None
    sentinel: bool = False


@dataclass
class LinkWatch:
    """When each process behind a hung link said so on /ready, and when it was ready again
    (monotonic seconds)."""

    link: str
    users: set[str] = field(default_factory=set)  # the processes whose /ready lists the link
    hung_at: float = 0.0
    released_at: float | None = None
    noticed: dict[str, float] = field(default_factory=dict)
    ready_again: dict[str, float] = field(default_factory=dict)

    def observe(self, answers: dict[str, Readiness], now: float) -> None:
        for name, answer in answers.items():
            if name not in self.users or not answer.answered:
                continue
            if answer.links.get(self.link) is False:
                self.noticed.setdefault(name, now)
            if self.released_at is not None and answer.ready:
                self.ready_again.setdefault(name, now)

    def all_noticed(self) -> bool:
        return self.users <= set(self.noticed)

    def all_ready_again(self) -> bool:
        return self.users <= set(self.ready_again)

    @property
    def detected_s(self) -> float | None:
        """Seconds from the hang until the slowest process reported it; None: one never did."""
        if not self.users or not self.all_noticed():
            return None
        return round(max(self.noticed.values()) - self.hung_at, 2)

    @property
    def ready_again_s(self) -> float | None:
        """Seconds from the link's return until the slowest process was ready again."""
        if self.released_at is None or not self.users or not self.all_ready_again():
            return None
        return round(max(self.ready_again.values()) - self.released_at, 2)

    def report(self) -> dict[str, Any]:
        def after(at: float | None, since: float | None) -> float | None:
            return None if at is None or since is None else round(at - since, 2)

        return {
            "link": self.link,
            "hung_s": after(self.released_at, self.hung_at),
            "processes": {
                name: {
                    "not_ready_after_s": after(self.noticed.get(name), self.hung_at),
                    "ready_again_after_s": after(self.ready_again.get(name), self.released_at),
                }
                for name in sorted(self.users)
            },
        }


@dataclass
class Strike:
    """One fault struck during a run, and what the run saw of it (simulated seconds).

    The calls that entered from ``struck_at`` until the next strike (the first strike: also
    those before it) are judged as this fault's."""

    fault: Fault
    struck_at: float
    window_start: float = -math.inf
    window_end: float = math.inf
    # Until when nobody could see Asterisk (AMI down): a call that came and went entirely
    # in that window left no event anywhere, so no router could account for it.
    blind_until: float | None = None
    link_watch: LinkWatch | None = None
    details: dict[str, Any] = field(default_factory=dict)  # beyond the common fields
    # When the run saw service normal for RECOVERED_FOR_S: probes that enter later (the
    # next fault's, or the traffic's last moments) are not part of this recovery.
    recovery_seen_at: float | None = None

    def holds(self, at: float) -> bool:
        return self.window_start <= at < self.window_end


class FaultRun(Demo):
    """Faults one after another on one fresh system while the traffic flows: the first at
    ``fault_at_s``, each next once the one before has struck, ``dwell_s`` has passed (or,
    with ``every_s``, that long since it struck) and service was seen normal again; the
    traffic goes on for ``args.duration`` in all. One verdict per fault, and the totals."""

    listed_calls = None  # every lost and mismatched call: some are excused as unobservable
    ingests = 2  # a pair, as deployed: one active, one standby (ingest_killed kills the active)
    dispatchers = 2  # a group, as deployed: dispatcher_killed kills one mid-dispatch

    def __init__(
        self,
        scenario: Scenario,
        args: argparse.Namespace,
        faults: Sequence[Fault],
        *,
        fault_at_s: float,
        dwell_s: float = 0.0,
        every_s: float | None = None,
        links: frozenset[str] = frozenset(),
        sentinel: bool = False,
    ) -> None:
        super().__init__(scenario, args)
        self.faults = list(faults)
        self.fault_at_s, self.dwell_s, self.every_s = fault_at_s, dwell_s, every_s
        # Links the processes reach through a BlackholeProxy: those the faults hang, and
        # ``links`` (a run without faults can have the same path as one with them).
        self.links = links | {fault.link for fault in self.faults if fault.link is not None}
        # Redis behind Sentinel: for a fault that fails it over (or as ``sentinel`` asks).
        self.sentinel = sentinel or any(fault.sentinel for fault in self.faults)
        if self.sentinel and "redis" in self.links:
            raise SystemExit(SENTINEL_AND_REDIS_PROXY)
        self.strikes: list[Strike] = []
        self.store: RedisStateStore | None = None
        self.pbx: Pbx | None = None
        self.proxies: dict[str, BlackholeProxy] = {}
        # What a fault measures once the traffic is over, while the processes still run.
        self.before_finish: list[Callable[[ChildProcesses], Awaitable[None]]] = []

    # -- what the fault functions see: the strike under way -----------------------------

    @property
    def strike(self) -> Strike:
        return self.strikes[-1]

    def struck_now(self) -> None:
        """For a fault that waits for its moment before it acts (a dispatcher holding a
        claim, a caller waiting): it strikes now, and its recovery counts from now."""
        self.strike.struck_at = self.clock.now()

    @property
    def fault(self) -> Fault:
        return self.strike.fault

    @property
    def details(self) -> dict[str, Any]:
        return self.strike.details

    @property
    def blind_until(self) -> float | None:
        return self.strike.blind_until

    @blind_until.setter
    def blind_until(self, at: float | None) -> None:
        self.strike.blind_until = at

    @property
    def link_watch(self) -> LinkWatch | None:
        return self.strike.link_watch

    @link_watch.setter
    def link_watch(self, watch: LinkWatch | None) -> None:
        self.strike.link_watch = watch

    @property
    def proxy(self) -> BlackholeProxy | None:
        """The proxy in front of the link the fault under way hangs."""
        return None if self.fault.link is None else self.proxies[self.fault.link]

    # -- the run ----------------------------------------------------------------------------

    async def _link(self, stack: contextlib.AsyncExitStack, name: str, port: int) -> int:
        """A link a fault hangs goes through a proxy that can hang it; the others are direct."""
        if name not in self.links:
            return port
        self.proxies[name] = await stack.enter_async_context(BlackholeProxy("127.0.0.1", port))
        return self.proxies[name].port

    def _linked(self, name: str, port: int) -> None:
        if name in self.proxies:
            self.proxies[name].target_port = port

    @property
    def records_wanted(self) -> bool:
        return True  # every fault also judges the records path: each ended call in PostgreSQL

    def _redis_server(self) -> EmbeddedRedis | EmbeddedSentinelRedis:
        # Every write reaches the disk before it is acknowledged: a killed Redis loses nothing
        # (what a failover can lose is what the replica had not received yet).
        if self.sentinel:
            return EmbeddedSentinelRedis(
                self.run_dir / "redis", appendonly=True, fsync="always", down_after_ms=SENTINEL_DOWN_AFTER_MS
            )
        return EmbeddedRedis(self.run_dir / "redis", appendonly=True, fsync="always")

    async def redis_primary(self) -> EmbeddedRedis:
        """The Redis server the processes write to now."""
        server = self.redis_server
        return await server.primary() if isinstance(server, EmbeddedSentinelRedis) else server

    async def _drive(
        self, traffic: TrafficGenerator, store: RedisStateStore, children: ChildProcesses, stop: asyncio.Event
    ) -> None:
        self.store, self.pbx = store, traffic.pbx
        traffic_stop = asyncio.Event()
        started = time.monotonic()
        async with asyncio.TaskGroup() as group:
            group.create_task(traffic.run(traffic_stop))
            group.create_task(children.watch(traffic_stop))
            await _sleep_unless(stop, self.fault_at_s)
            for fault in self.faults:
                if stop.is_set():
                    break
                await self._strike(fault, stop, traffic.pbx)
            await _sleep_unless(stop, self.args.duration - (time.monotonic() - started))
            traffic_stop.set()
        self.traffic_s = time.monotonic() - started

    async def _strike(self, fault: Fault, stop: asyncio.Event, pbx: Pbx) -> None:
        began, now = time.monotonic(), self.clock.now()
        if self.strikes:
            self.strike.window_end = now
        self.strikes.append(Strike(fault, now, window_start=now if self.strikes else -math.inf))
        logger.warning("chaos: %s", fault.description)
        await fault.strike(self)
        if self.every_s is None:
            await _sleep_unless(stop, self.dwell_s)
        await self._until_recovered(stop, pbx, self.strike)
        await self._until_enough_calls(stop, pbx, self.strike)
        if self.every_s is not None:
            await _sleep_unless(stop, self.every_s - (time.monotonic() - began))

    async def _until_recovered(self, stop: asyncio.Event, pbx: Pbx, strike: Strike) -> None:
        """Keep the traffic coming until service has been normal for RECOVERED_FOR_S."""
        deadline = time.monotonic() + EXTRA_S
        while not stop.is_set() and time.monotonic() < deadline:
            normal_since = self.normal_since(pbx, strike, pending_ok=True)
            if (
                normal_since is not None
                and self.clock.now() - normal_since >= RECOVERED_FOR_S * self.clock.time_scale
            ):
                strike.recovery_seen_at = self.clock.now()
                return
            await _sleep_unless(stop, 0.25)

    async def _until_enough_calls(self, stop: asyncio.Event, pbx: Pbx, strike: Strike) -> None:
        """Keep the traffic coming until the fault's window holds JUDGED_CALLS offered calls."""
        deadline = time.monotonic() + EXTRA_S
        while not stop.is_set() and time.monotonic() < deadline and offered_in(pbx, strike) < JUDGED_CALLS:
            await _sleep_unless(stop, 0.25)

    async def _finish(self, store: RedisStateStore, pbx: Pbx, children: ChildProcesses) -> dict[str, Any]:
        for measure in self.before_finish:
            await measure(children)
        summary = await super()._finish(store, pbx, children)
        summary["leaked_reservations"] = len(await leaked_reservations(store))
        verdicts = [self.verdict(summary, pbx, strike) for strike in self.strikes]
        return {"faults": verdicts, "totals": self.totals(summary, verdicts)}

    # -- the verdict --------------------------------------------------------------------------

    def found_defects(self, summary: dict[str, Any]) -> bool:
        """``summary`` is this run's report: what ``clean`` refuses, or a call whose end the
        router has otherwise than the phones."""
        return not clean(summary) or summary["totals"]["state_mismatches"] > 0

    def verdict(self, summary: dict[str, Any], pbx: Pbx, strike: Strike) -> dict[str, Any]:
        """``summary`` lists every lost and mismatched call (``listed_calls`` is None); this
        fault's share of them: those that entered in its window."""
        ledger = pbx.ledger
        calls = {c: record for c, record in ledger.calls.items() if strike.holds(record.entered_at)}
        truth = Ledger(
            calls=calls,
            double_assignments=[d for d in ledger.double_assignments if strike.holds(d.at)],
            unexpected_redirects=[u for u in ledger.unexpected_redirects if strike.holds(u.at)],
        ).summary()
        judged_lost = [c for c in summary["lost_call_ids"] if c in calls]
        judged_mismatched = [m for m in summary["mismatched_calls"] if m[0] in calls]
        lost = [c for c in judged_lost if not self._unobservable(pbx, c)]
        # Answered and ended while AMI was down: the router can only see that the call is gone.
        mismatched = [m for m in judged_mismatched if not self._unobservable(pbx, m[0], since_answer=True)]
        watch = strike.link_watch
        records_missing = [c for c in summary.get("records", {}).get("missing", []) if c in calls]
        return {
            "name": strike.fault.name,
            "description": strike.fault.description,
            "calls": truth["offered"],
            "answered": truth["answered"],
            "abandoned": truth["abandoned"],
            "ended_by_pbx_restart": truth["ended_by_pbx_restart"],
            "lost": len(lost),
            "double_assigned": truth["double_assignments"],
            "state_mismatches": len(mismatched),
            # Read once, at the end: a fault of its own only when the run had one fault.
            "leaked_reservations": summary["leaked_reservations"] if len(self.strikes) == 1 else None,
            "records_missing": len(records_missing),
            "unobservable": len(judged_lost) - len(lost),
            "outcome_unobservable": len(judged_mismatched) - len(mismatched),
            "recovery_s": self.recovery_s(pbx, strike),
            "link_detected_s": watch.detected_s if watch else None,
            "link_ready_again_s": watch.ready_again_s if watch else None,
            "unexpected_redirects": truth["unexpected_redirects"],
            "details": {**strike.details, "probes": self.probe_account(pbx, strike)},
            "process_exit_codes": summary["process_exit_codes"],
            "lost_call_ids": lost[:LISTED_CALLS],
            "lost_calls_truth": [self._truth(pbx, strike, call_id) for call_id in lost[:LISTED_CALLS]],
            "mismatched_calls": mismatched[:LISTED_CALLS],
            "records_missing_call_ids": records_missing[:LISTED_CALLS],
        }

    def totals(self, summary: dict[str, Any], verdicts: list[dict[str, Any]]) -> dict[str, Any]:
        """The whole run: every call, whichever fault's window it entered in (a run without
        faults excuses no call)."""
        truth, records = summary["ground_truth"], summary.get("records", {})

        def added(name: str, otherwise: int) -> int:
            return sum(v[name] for v in verdicts) if verdicts else otherwise

        return {
            "faults": len(self.strikes),
            "calls": truth["offered"],
            "answered": truth["answered"],
            "abandoned": truth["abandoned"],
            "lost": added("lost", len(summary["lost_call_ids"])),
            "state_mismatches": added("state_mismatches", len(summary["mismatched_calls"])),
            "unobservable": added("unobservable", 0),
            "double_assigned": truth["double_assignments"],
            "leaked_reservations": summary["leaked_reservations"],
            "records_missing": records.get("missing_count", 0),
            "service_level": summary["service_level"],
            "asa_seconds": summary["asa_seconds"],
            "abandon_rate": summary["abandon_rate"],
            "traffic_s": round(self.traffic_s, 1),
        }

    def _unobservable(self, pbx: Pbx, call_id: str, *, since_answer: bool = False) -> bool:
        """Arrived (or, ``since_answer``, was answered) and ended while AMI was down, by this
        fault or any other (a call that entered just before the next fault struck may live
        out its life in that fault's blind spell): no event of it (of its outcome) ever
        existed for anyone to see."""
        call = pbx.ledger.calls[call_id]
        began = call.answered_at if since_answer else call.entered_at
        if began is None or call.ended_at is None:
            return False
        return any(
            s.blind_until is not None and began >= s.struck_at and call.ended_at <= s.blind_until
            for s in self.strikes
        )

    def _truth(self, pbx: Pbx, strike: Strike, call_id: str) -> dict[str, Any]:
        """What the phones say of a call, in real seconds relative to the fault."""
        call = pbx.ledger.calls[call_id]

        def rel(at: float | None) -> float | None:
            return None if at is None else round((at - strike.struck_at) / self.clock.time_scale, 2)

        return {"state": call.state, "entered": rel(call.entered_at), "ended": rel(call.ended_at)}

    def recovery_s(self, pbx: Pbx, strike: Strike) -> float | None:
        """Real seconds from the fault until service is normal again: from then on every probe
        call (a queue whose agent is never busy, so a probe waits only on the routing path)
        is answered within PROBE_OK_S, judged up to when the run saw it so for RECOVERED_FOR_S.
        None: it never was."""
        normal_since = self.normal_since(pbx, strike)
        if normal_since is None:
            return None
        return round((normal_since - strike.struck_at) / self.clock.time_scale, 2)

    def probe_account(self, pbx: Pbx, strike: Strike) -> dict[str, Any]:
        """The probes of this fault's window after it struck, to read a recovery (or its
        absence) by: how many, how many were late or never answered, the slowest answer and
        the last bad probe's entry (real seconds after the fault)."""
        late: list[CallRecord] = []
        waits: list[float] = []
        probes = self._probes(pbx, strike)
        for probe in probes:
            if probe.answered_at is not None:
                waits.append(probe.answered_at - probe.entered_at)
            if probe.answered_at is None or probe.answered_at - probe.entered_at > PROBE_OK_S:
                late.append(probe)
        scale = self.clock.time_scale
        return {
            "count": len(probes),
            "late_or_unanswered": len(late),
            "slowest_s": round(max(waits) / scale, 2) if waits else None,
            # ``probes`` are in order of entry, so ``late`` is too: the last is the latest.
            "last_bad_entered_s": round((late[-1].entered_at - strike.struck_at) / scale, 2) if late else None,
            "last_bad": [_probe_times(p, strike.struck_at, scale) for p in late[-LAST_BAD_PROBES:]],
        }

    @staticmethod
    def _probes(pbx: Pbx, strike: Strike) -> list[CallRecord]:
        """The probe calls that entered from the fault until the next one, in order of entry."""
        return sorted(
            (
                c
                for c in pbx.ledger.calls.values()
                if c.queue == PROBE_QUEUE and strike.struck_at <= c.entered_at < strike.window_end
            ),
            key=lambda c: c.entered_at,
        )

    def normal_since(self, pbx: Pbx, strike: Strike, *, pending_ok: bool = False) -> float | None:
        """Simulated time since when every probe after the fault (and before the next) was
        answered in time; ``pending_ok``: probes not answered yet but still within PROBE_OK_S
        do not count against it (the run is still going)."""
        probes = self._probes(pbx, strike)
        # Once the run has seen recovery, it is judged as of then: later probes are left out,
        # and those still pending then may have been cut off by the traffic's end.
        seen_at = strike.recovery_seen_at
        as_of = self.clock.now() if seen_at is None else seen_at
        pending_ok = pending_ok or seen_at is not None
        good_since: float | None = None
        for probe in probes:
            if probe.entered_at > as_of:
                break
            # An answer after ``as_of`` is not known as of then (the next fault may delay it).
            answered_at = probe.answered_at if probe.answered_at is not None and probe.answered_at <= as_of else None
            if answered_at is None and pending_ok and as_of - probe.entered_at <= PROBE_OK_S:
                continue
            ok = answered_at is not None and answered_at - probe.entered_at <= PROBE_OK_S
            if not ok:
                good_since = None
            elif good_since is None:
                good_since = probe.entered_at
        return good_since


def _probe_times(probe: CallRecord, struck_at: float, scale: float) -> dict[str, float | None]:
    """When a probe entered (real seconds after the fault) and how long it waited (None:
    never answered)."""
    waited = None if probe.answered_at is None else round((probe.answered_at - probe.entered_at) / scale, 2)
    return {"entered_s": round((probe.entered_at - struck_at) / scale, 2), "waited_s": waited}


def stated_detection_s(link: str) -> float:
    """How soon, by the default settings, every process notices that ``link`` (redis, kafka,
    ami) hangs: what docs/operations.md states (Links that hang)."""
    if link == "redis":
        return PING_EVERY_S + RedisSettings().socket_timeout_s
    if link == "kafka":
        kafka = KafkaSettings()
        return kafka.probe_interval_s + kafka.probe_timeout_s
    if link == "ami":
        ami = AmiSettings()
        return ami.ping_interval_s + ami.ping_timeout_s
    raise ValueError(f"unknown link {link!r}: redis, kafka or ami")


async def leaked_reservations(store: RedisStateStore) -> list[str]:
    """Agents whose reserved count is not explained by the calls being offered to them."""
    states = await store.call_states(await store.open_call_ids())
    offering: dict[str, int] = {}
    for call_id, state in states.items():
        if state in ("offered", "dispatching", "ringing"):
            agent = (await store.call(call_id)).get("agent", "")
            offering[agent] = offering.get(agent, 0) + 1
    leaked = []
    for agent_id in await store.agent_ids():
        reserved = int((await store.agent(agent_id)).get("reserved", "0") or 0)
        if reserved != offering.get(agent_id, 0):
            leaked.append(agent_id)
    return leaked


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


# -- the faults -------------------------------------------------------------------------------


async def kill_routing_worker(run: FaultRun) -> None:
    """SIGKILL one routing worker while it works; the others take over its partitions, and
    it comes back after systemd's RestartSec (deploy/systemd/acd-route@.service) to take
    its share again."""
    await run.children.kill("route-1", signal.SIGKILL)
    killed_at = time.monotonic()
    run.details["killed_exit_code"] = run.children.children["route-1"].process.returncode
    run.details["ready_again_after_kill_s"] = await _restart_as_systemd_would(run, "route-1", killed_at)


async def _restart_as_systemd_would(run: FaultRun, name: str, killed_at: float) -> float:
    """Start a killed process again ``SYSTEMD_RESTART_S`` after its death (``Restart=on-failure``,
    ``RestartSec=2``) and wait until it is ready; seconds from the kill until then."""
    await asyncio.sleep(max(0.0, killed_at + SYSTEMD_RESTART_S - time.monotonic()))
    await run.children.restart(name)
    return round(time.monotonic() - killed_at, 2)


async def restart_broker(run: FaultRun) -> None:
    """Stop the Kafka broker, keep it down for a while, start it again (empty: Tansu keeps
    its data in memory, so this is harsher than a Kafka restart, which keeps its logs)."""
    await run.kafka.stop()
    await asyncio.sleep(run.args.outage_s)
    await run.kafka.start()


async def restart_redis(run: FaultRun) -> None:
    """SIGKILL redis-server, keep it down for a while, restart it from its append-only file
    (behind Sentinel: the primary, so that the sentinels fail it over meanwhile)."""
    server = await run.redis_primary()
    await server.stop(kill=True)
    await asyncio.sleep(run.args.outage_s)
    await server.start()


async def fail_over_redis(run: FaultRun) -> None:
    """SIGKILL the Redis primary; the sentinels promote the replica and every process follows
    (redis-py asks the sentinels on each new connection). After the outage the old primary
    comes back from its append-only file, and the sentinels make it the new one's replica.

    So that the failover loses writes, as asynchronous replication can on a network, the
    replica is cut off for REPLICA_STALL_S before the kill: frozen (SIGSTOP, so that it
    cannot connect again) and its replication link closed by the primary (CLIENT KILL), then
    thawed after the kill. What the primary took meanwhile never reaches it (a link merely
    frozen would lose nothing: the kernel buffers the stream). What was lost: the primary's
    replication offset read just before the kill, less what the replica had received when
    it was promoted (its ``second_repl_offset``); writes made between that read and the
    kill are not counted."""
    group = run.redis_server
    assert isinstance(group, EmbeddedSentinelRedis)
    old = await group.primary()
    replica = next(node for node in group.nodes if node is not old)
    replica.pause()
    try:
        await cut_replicas_off(old)
        await asyncio.sleep(REPLICA_STALL_S)
        at_kill = await replication(old)
        await old.stop(kill=True)
    finally:
        replica.resume()
    killed_at = time.monotonic()
    new = await group.promoted(old)
    promoted_after_s = time.monotonic() - killed_at
    received = int((await replication(new)).get("second_repl_offset", "0")) - 1
    primary_offset = int(at_kill.get("master_repl_offset", "0"))
    run.details.update(
        promoted_after_s=round(promoted_after_s, 2),
        primary_offset_at_kill=primary_offset,
        replica_offset_at_promotion=received,
        replication_lag_bytes_at_kill=max(0, primary_offset - received),
        replica_stalled_s=REPLICA_STALL_S,
    )
    await asyncio.sleep(max(0.0, run.args.outage_s - promoted_after_s))
    await old.start()
    restarted_at = time.monotonic()

    async def old_primary_role(children: ChildProcesses) -> None:
        # The sentinels turn it into a replica once it has answered as a primary for their
        # failover timeout and their next INFO (every 10 s) sees it: 10-15 s after its start.
        info = await replication(old)
        rejoined = info.get("role") == "slave" and info.get("master_port") == str(new.port)
        run_s = round(time.monotonic() - restarted_at, 1)
        run.details.update(old_primary_replica_of_new=rejoined, old_primary_checked_after_s=run_s)

    run.before_finish.append(old_primary_role)


async def restart_postgres(run: FaultRun) -> None:
    """Kill PostgreSQL (``pg_ctl stop -m immediate``), keep it down, start it again: the
    recorder holds its offsets meanwhile and catches up, nothing lost or written twice."""
    assert run.postgres is not None
    await run.postgres.stop(kill=True)
    await asyncio.sleep(run.args.outage_s)
    await run.postgres.start()


async def drop_ami_link(run: FaultRun) -> None:
    """Cut every AMI connection and refuse new ones for a while, then let them back."""
    sessions = run.simulator.authenticated_sessions
    await run.simulator.set_listening(False)
    await run.simulator.drop_connections()
    await asyncio.sleep(run.args.outage_s)
    await run.simulator.set_listening(True)
    await _until_listed_again(run, sessions)


async def _until_listed_again(run: FaultRun, sessions: int) -> None:
    """Every AMI client back, and both ingests have listed the channels again: until then a
    call that entered in the gap is known to nobody, and one that also ended meanwhile is
    unobservable (its Hangup names a call no router has heard of)."""
    back = run.clock.now()
    while run.simulator.authenticated_sessions < sessions:  # noqa: ASYNC110 - polls the simulator
        await asyncio.sleep(0.05)
    deadline = time.monotonic() + LISTED_AGAIN_WITHIN_S
    listings = run.simulator.pbx.ledger.listings
    while sum(1 for at in listings if at >= back) < INGESTS and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    run.blind_until = run.clock.now()


async def restart_asterisk(run: FaultRun) -> None:
    """``core restart now``: every call hung up, Event: Shutdown, the port refuses for a
    while, then a fresh Asterisk; the processes holding AMI must ride it out."""
    assert run.store is not None and run.pbx is not None
    # A caller no agent can take: certainly still waiting when the restart cuts it off.
    stranded = run.pbx.place_call("sales", requirements="nobody>=1", handle_time_s=60)
    while (await run.store.call(stranded.call_id)).get("state") != "waiting":  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    sessions = run.simulator.authenticated_sessions
    run.struck_now()
    await run.simulator.restart("now", down_s=run.args.outage_s, settle_s=1.0)
    await _until_listed_again(run, sessions)


async def redirect_of_a_gone_caller(run: FaultRun) -> None:
    """Freeze the dispatcher, hang up callers whose offer it holds, thaw it: its Redirects
    fail with Asterisk's "Channel does not exist" and the agents must be released."""
    dispatcher = run.children.children["dispatch"].process
    dispatcher.send_signal(signal.SIGSTOP)
    try:
        await asyncio.sleep(run.args.outage_s)
        assert run.store is not None and run.pbx is not None
        for call_id in await _offered_calls(run.store):
            run.pbx.hangup_call(call_id)
    finally:
        dispatcher.send_signal(signal.SIGCONT)


async def _offered_calls(store: RedisStateStore) -> list[str]:
    return await _calls_in(store, ("offered", "dispatching"))


async def _calls_in(store: RedisStateStore, states: tuple[str, ...]) -> list[str]:
    found = await store.call_states(await store.open_call_ids())
    return [call_id for call_id, state in found.items() if state in states]


async def kill_dispatcher(run: FaultRun) -> None:
    """SIGKILL the dispatcher of the group that holds a claimed offer (state ``dispatching``:
    its Redirect sent or about to be), if one comes within a few seconds (else the first),
    and start it again after systemd's RestartSec. Its partitions go to the other one, which
    reads again every command not committed: a command whose offer is claimed already is
    skipped, so no caller is redirected twice."""
    assert run.store is not None
    deadline = time.monotonic() + 5.0
    victim, dispatching = None, 0
    while victim is None and time.monotonic() < deadline:
        victim, dispatching = await _dispatcher_holding_a_claim(run.store, run.children)
        if victim is None:
            await asyncio.sleep(0.005)
    victim = victim or "dispatch"
    await run.children.kill(victim, signal.SIGKILL)
    run.struck_now()
    ready_again_s = await _restart_as_systemd_would(run, victim, time.monotonic())
    details = run.details
    details.update(
        killed=victim,
        held_a_claim=dispatching > 0,
        dispatching_at_kill=dispatching,
        ready_again_after_kill_s=ready_again_s,
    )

    async def count_skipped(children: ChildProcesses) -> None:
        # What the dispatchers read again and did not send: claimed by the killed one (or
        # withdrawn meanwhile), never executed twice.
        ports = {n: p for n, p in children.http_ports().items() if n.startswith("dispatch")}
        stale = await scrape_totals(ports, ("acd_dispatch_stale_commands_total",))
        details["stale_commands_after_kill"] = int(stale["acd_dispatch_stale_commands_total"])

    run.before_finish.append(count_skipped)


async def _dispatcher_holding_a_claim(store: RedisStateStore, children: ChildProcesses) -> tuple[str | None, int]:
    """The dispatcher process whose claim (``claimed_by`` names its pid) an offer being
    dispatched holds, and how many of those that process holds."""
    pids = {
        str(child.process.pid): name
        for name, child in children.children.items()
        if name.startswith("dispatch") and child.process.returncode is None
    }
    held: dict[str, int] = {}
    for call_id in await _calls_in(store, ("dispatching",)):
        pid = claimant_pid((await store.call(call_id)).get("claimed_by", ""))
        name = pids.get(str(pid))
        if name is not None:
            held[name] = held.get(name, 0) + 1
    if not held:
        return None, 0
    name = max(held, key=lambda n: held[n])
    return name, held[name]


async def active_ingest(children: ChildProcesses) -> str | None:
    """The name of the ingest process whose ``acd_ingest_active`` is 1 (None: none yet)."""
    for name, port in children.http_ports().items():
        if name.startswith("ingest") and children.children[name].process.returncode is None:
            active = await scrape_totals({name: port}, ("acd_ingest_active",))
            if active["acd_ingest_active"] == 1:
                return name
    return None


async def kill_active_ingest(run: FaultRun) -> None:
    """SIGKILL the active ingest of the pair; the standby takes the lease, publishes the calls
    that ended in the gap and resyncs. The killed one is started again after systemd's
    RestartSec and stands by."""
    killed = await active_ingest(run.children)
    if killed is None:
        raise RuntimeError("ingest_killed: no ingest reports acd_ingest_active 1")
    await run.children.kill(killed, signal.SIGKILL)
    killed_at = time.monotonic()
    successor = None
    while successor is None and time.monotonic() - killed_at < TAKEOVER_LIMIT_S:
        successor = await active_ingest(run.children)
        if successor is None:
            await asyncio.sleep(0.05)
    took_over_s = round(time.monotonic() - killed_at, 2) if successor else None
    await _restart_as_systemd_would(run, killed, killed_at)
    details = run.details
    details.update(killed=killed, active_after=successor, took_over_s=took_over_s)
    details["standby_after_restart"] = await active_ingest(run.children) != killed

    async def count_replayed(children: ChildProcesses) -> None:
        ports = children.http_ports()
        totals = await scrape_totals(
            {successor: ports[successor]} if successor else {}, ("acd_ingest_gap_replayed_total",)
        )
        details["gap_events_replayed"] = int(totals["acd_ingest_gap_replayed_total"])

    run.before_finish.append(count_replayed)


async def hang_link(run: FaultRun) -> None:
    """Hang the fault's link (the proxy forwards nothing and closes nothing) for the outage,
    and at least until every process behind it has said so on /ready; then let it back and
    watch them get ready again."""
    assert run.proxy is not None and run.fault.link is not None
    watch = run.link_watch = LinkWatch(run.fault.link)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as session:
        before = await run.children.readiness(session)
        watch.users = {name for name, answer in before.items() if watch.link in answer.links}
        watch.hung_at = time.monotonic()
        run.proxy.hang()
        hold_until = watch.hung_at + run.args.outage_s

        def held() -> bool:
            return watch.all_noticed() and time.monotonic() >= hold_until

        await _watch_readiness(run, session, watch, held, max(hold_until, watch.hung_at + DETECT_LIMIT_S))
        run.proxy.release()
        watch.released_at = time.monotonic()
        await _watch_readiness(
            run, session, watch, watch.all_ready_again, watch.released_at + READY_AGAIN_LIMIT_S
        )
    if watch.link == "ami":
        run.blind_until = run.clock.now()  # calls that came and went meanwhile were unseen
    run.details["readiness"] = watch.report()


async def _watch_readiness(
    run: FaultRun,
    session: aiohttp.ClientSession,
    watch: LinkWatch,
    done: Callable[[], bool],
    deadline: float,
) -> None:
    while not done() and time.monotonic() < deadline:
        watch.observe(await run.children.readiness(session), time.monotonic())
        await asyncio.sleep(READINESS_POLL_S)


FAULTS = (
    Fault("routing_worker_killed", "SIGKILL of a routing worker mid-decision", kill_routing_worker),
    Fault("broker_restarted", "Kafka broker stopped and restarted (empty)", restart_broker),
    Fault("redis_restarted", "redis-server killed and restarted from its AOF", restart_redis),
    Fault(
        "redis_failover",
        "Redis primary SIGKILLed, the replica promoted by Sentinel, the processes follow",
        fail_over_redis,
        sentinel=True,
    ),
    Fault("postgres_restarted", "PostgreSQL killed and restarted under the recorder", restart_postgres),
    Fault("ami_link_dropped", "AMI connections cut and refused, then restored", drop_ami_link),
    Fault(
        "asterisk_restarted",
        "Asterisk core restart now: calls cut, link closed, back fresh",
        restart_asterisk,
    ),
    Fault(
        "redirect_failed",
        "Redirect of callers who hung up meanwhile (No such channel)",
        redirect_of_a_gone_caller,
    ),
    Fault("dispatcher_killed", "SIGKILL of the dispatcher mid-dispatch, restarted", kill_dispatcher),
    Fault("ingest_killed", "SIGKILL of the active ingest; the standby takes over", kill_active_ingest),
    Fault(
        "redis_link_hung",
        "Redis stops answering, connections left open (a black hole), then back",
        hang_link,
        link="redis",
    ),
    Fault(
        "broker_link_hung",
        "the Kafka broker stops answering, connections left open, then back",
        hang_link,
        link="kafka",
    ),
    Fault(
        "ami_link_hung",
        "AMI stops answering, connections left open, then back",
        hang_link,
        link="ami",
    ),
)


def add_chaos_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object last on stdout")
    parser.add_argument("--short", action="store_true", help="short runs (the version `make test` runs)")
    parser.add_argument("--only", default="", help="comma-separated fault names (default: all)")
    parser.add_argument("--scenario", type=Path, default=None, help="traffic (default: the chaos scenario)")
    parser.add_argument("--keep", action="store_true", help="keep each run's directory (config, logs)")
    parser.add_argument(
        "--together",
        action="store_true",
        help="strike the faults one after another on one system, each once service is normal "
        f"again after the one before and {JUDGED_CALLS} calls came since it struck (default: each on a fresh system)",
    )
    parser.add_argument(
        "--soak",
        type=float,
        default=None,
        metavar="MINUTES",
        help="one system for MINUTES with traffic, and a fault picked at random (from --only, "
        "default all) every --every seconds; prints each fault's figures and the totals",
    )
    parser.add_argument(
        "--every", type=float, default=SOAK_EVERY_S, help=f"--soak: seconds between faults (default {SOAK_EVERY_S:g})"
    )
    parser.add_argument("--seed", type=int, default=None, help="--soak: seed of the faults' draw")
    parser.add_argument(
        "--no-faults",
        action="store_true",
        help="--soak: the same run without faults (the baseline its service level is compared with)",
    )


def chaos_settings(args: argparse.Namespace) -> argparse.Namespace:
    """The demo arguments each fault run uses."""
    duration, outage, fault_at = (12.0, 2.0, 3.0) if args.short else (40.0, 8.0, 5.0)
    return argparse.Namespace(
        duration=duration,
        outage_s=outage,
        fault_at_s=fault_at,
        json=True,
        assignments=None,
        workers=2,
        metrics_port=0,
        keep=args.keep,
    )


def chosen_faults(args: argparse.Namespace) -> list[Fault]:
    """The faults ``--only`` names (all by default), in FAULTS' order; bad options are one
    clear line."""
    wanted = [name for name in args.only.split(",") if name]
    unknown = sorted(set(wanted) - {fault.name for fault in FAULTS})
    if unknown:
        raise SystemExit(f"acd chaos: unknown fault(s) {unknown}; known: {[f.name for f in FAULTS]}")
    soak = getattr(args, "soak", None)
    if soak is not None and (soak <= 0 or getattr(args, "every", SOAK_EVERY_S) <= 0):
        raise SystemExit("acd chaos: --soak MINUTES and --every SECONDS must be positive")
    if soak is not None and getattr(args, "together", False):
        raise SystemExit("acd chaos: --soak already runs every fault on one system; drop --together")
    if getattr(args, "no_faults", False) and soak is None:
        raise SystemExit("acd chaos: --no-faults is the baseline of a soak; give --soak MINUTES too")
    chosen = [fault for fault in FAULTS if not wanted or fault.name in wanted]
    if soak is None and not getattr(args, "together", False):
        return chosen  # each fault on a system of its own
    return one_system(chosen, named=bool(wanted))


def one_system(faults: list[Fault], *, named: bool) -> list[Fault]:
    """Faults for one system: Redis cannot be both behind Sentinel and behind the proxy. By
    default the Sentinel faults are left out (said on stderr); named together, an error."""
    sentinel = [fault.name for fault in faults if fault.sentinel]
    if not sentinel or not any(fault.link == "redis" for fault in faults):
        return faults
    if named:
        raise SystemExit(SENTINEL_AND_REDIS_PROXY)
    print(f"acd chaos: {', '.join(sentinel)} left out ({SENTINEL_AND_REDIS_PROXY[11:]})", file=sys.stderr)
    return [fault for fault in faults if not fault.sentinel]


async def run_chaos(args: argparse.Namespace, stop: asyncio.Event) -> dict[str, Any]:
    scenario = load_scenario(args.scenario or SCENARIO)
    faults = chosen_faults(args)
    settings = chaos_settings(args)
    if getattr(args, "soak", None) is not None:
        return await _timed(soak_run(scenario, settings, args, faults), stop)
    if getattr(args, "together", False):
        together = FaultRun(scenario, settings, faults, fault_at_s=settings.fault_at_s, dwell_s=TOGETHER_DWELL_S)
        report = await _timed(together, stop)
        for result in report["faults"]:
            print(json.dumps(result), file=sys.stderr, flush=True)
        return report
    results = []
    for fault in faults:
        if stop.is_set():
            break
        dwell = max(0.0, settings.duration - settings.fault_at_s)
        alone = FaultRun(scenario, settings, [fault], fault_at_s=settings.fault_at_s, dwell_s=dwell)
        report = await _timed(alone, stop)
        result = report["faults"][0] | {key: report[key] for key in ("run_s", "kept_run_dir") if key in report}
        print(json.dumps(result), file=sys.stderr, flush=True)
        results.append(result)
    return {"faults": results}


def soak_run(
    scenario: Scenario, settings: argparse.Namespace, args: argparse.Namespace, faults: list[Fault]
) -> FaultRun:
    """``--soak``: the faults drawn in advance (seeded), one every ``--every`` seconds; with
    ``--no-faults``, none, over the same links (proxies included)."""
    rng = random.Random(scenario.seed if args.seed is None else args.seed)
    duration = args.soak * 60
    count = max(0, math.floor((duration - SOAK_FIRST_AT_S) / args.every))
    drawn = [rng.choice(faults) for _ in range(count)]
    links = frozenset(f.link for f in faults if f.link is not None)
    settings.duration = duration
    return FaultRun(
        scenario,
        settings,
        [] if args.no_faults else drawn,
        fault_at_s=SOAK_FIRST_AT_S,
        every_s=args.every,
        links=links,
        sentinel=any(f.sentinel for f in faults),
    )


def offered_in(pbx: Pbx, strike: Strike) -> int:
    """Calls offered to the ACD that entered in ``strike``'s window so far (the verdict's
    ``calls``: those that arrived while their queue was closed were never offered)."""
    return sum(1 for call in pbx.ledger.calls.values() if strike.holds(call.entered_at) and call.state != "closed")


async def _timed(run: FaultRun, stop: asyncio.Event) -> dict[str, Any]:
    started = time.monotonic()
    report = await run.run(stop)
    report["run_s"] = round(time.monotonic() - started, 1)
    return report


def clean(report: dict[str, Any]) -> bool:
    """Nothing lost, double-booked, leaked or unrecorded, by any fault or in the totals."""
    figures = [*report["faults"], *([report["totals"]] if "totals" in report else [])]
    return all(
        f["lost"] == 0
        and f["double_assigned"] == 0
        and not f["leaked_reservations"]
        and f["records_missing"] == 0
        for f in figures
    )


def run_chaos_command(args: argparse.Namespace) -> int:
    async def main() -> dict[str, Any]:
        stop = asyncio.Event()
        install_stop_signals(stop)
        return await run_chaos(args, stop)

    report = asyncio.run(main())
    print(json.dumps(report) if args.json else json.dumps(report, indent=2))
    return 0 if clean(report) else 1
