"""`acd demo`: the whole pipeline on embedded servers, driven by a scenario.

Starts a redis-server, a Tansu broker and the AMI simulator on free loopback ports, runs
ingest, routing workers, the dispatcher and the state collector as child processes (the
same `acd` commands as in production, with a generated configuration file), places the
scenario's traffic, prints a live summary, and ends with one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Protocol

from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from load_tests.amisim.pbx import Pbx
from load_tests.amisim.perms import AmiUser
from load_tests.amisim.server import AmiSimulator
from load_tests.children import ChildProcesses, ChildSpec, scrape_totals
from load_tests.decision_tap import ACKED_HISTOGRAM, DecisionTap, histogram_buckets, histogram_quantile
from load_tests.embedded import EmbeddedKafka, EmbeddedPostgres, EmbeddedRedis, EmbeddedSentinelRedis
from load_tests.records_check import records_account
from load_tests.run_reports import read_run_reports, table, write_run_reports
from load_tests.scenario import Scenario, default_scenario_path, load_scenario
from load_tests.summary import LISTED_CALLS, RoutingLatency, run_summary, write_assignments
from load_tests.traffic import TrafficGenerator
from router import kpi
from router.bus import Topics
from router.clock import ScaledClock
from router.domain import QueueConfig
from router.settings import KafkaSettings, PostgresSettings, RedisSettings, load_settings
from router.store import RedisStateStore
from router.store.connect import open_redis
from workers.records.migrate import upgrade
from workers.runtime import install_stop_signals

logger = logging.getLogger(__name__)

AMI_USER = "acd-router"
AMI_READ = frozenset({"system", "call", "agent", "user"})
AMI_WRITE = frozenset({"call", "reporting", "agent", "system"})  # as deploy/asterisk/manager.conf
# At the end, the run is judged once the routers have caught up with the phones; while they
# are still applying events (their account changes) it waits on, up to SETTLE_MAX_S, and it
# gives up SETTLE_S after their account last changed. A fixed 5 s was too short for the last
# calls of a run on a loaded machine (the race test, CI 2026-11-30: 2 of 1,532 "lost").
SETTLE_S = 5.0
SETTLE_MAX_S = 60.0
# The router's counts of a run (its summary's keys).
ROUTER_COUNTS = ("offered", "answered", "abandoned", "overflowed", "transferred", "transferred_back")
LAB_REDIS_RETRIES = 15
DEFAULT_METRICS_PORT = 9400
# Prometheus counters summed over all processes at the end, next to the Redis statistics.
METRIC_TOTALS = (
    "acd_calls_offered_total",
    "acd_calls_answered_total",
    "acd_calls_abandoned_total",
    "acd_calls_transferred_total",
    "acd_routing_decisions_total",
    "acd_ami_events_produced_total",
)


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scenario", type=Path, default=None, help="scenario YAML (default: the embedded demo)"
    )
    parser.add_argument(
        "--duration", type=float, default=60.0, help="seconds of traffic, real time (default 60)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON summary object last on stdout")
    parser.add_argument(
        "--assignments", type=Path, default=None, help="write one JSON line per answered call"
    )
    parser.add_argument("--workers", type=int, default=2, help="routing worker processes (default 2)")
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=DEFAULT_METRICS_PORT,
        help=f"first of the ports the processes serve /metrics on (default {DEFAULT_METRICS_PORT}; 0 = any free)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the run directory (config, logs)")
    parser.add_argument(
        "--records",
        action="store_true",
        help="also run PostgreSQL and `acd record`, and check that every ended call was recorded",
    )
    parser.add_argument(
        "--report-out",
        type=Path,
        default=None,
        help="write calls.csv, intervals_by_queue.csv and intervals_by_agent.csv there, read back from "
        "PostgreSQL at the end (implies --records; the run ends by hanging up every caller still on the line)",
    )
    parser.add_argument(
        "--report-interval",
        choices=("15m", "30m", "1h", "1d"),
        default="15m",
        help="interval of the --report-out reports, in simulated time (default 15m)",
    )


class DemoObserver(Protocol):
    """Hooks for whoever watches a run from outside (the real-Prometheus test)."""

    async def started(self, http_ports: dict[str, int]) -> None:
        """Every process is ready (``http_ports``: name -> /metrics port); traffic starts next."""

    async def finishing(self, store: RedisStateStore) -> None:
        """Traffic has stopped, the processes still run; the summary is taken next."""


class Demo:
    """One demo run; ``run`` returns the summary."""

    observer: DemoObserver | None = None
    listed_calls: int | None = LISTED_CALLS
    ingests = 1  # `acd ingest` processes: 2 run as a pair (one active, one standby)
    dispatchers = 1  # `acd dispatch` processes: more share the commands' partitions (a group)

    def __init__(self, scenario: Scenario, args: argparse.Namespace) -> None:
        self.scenario = scenario
        self.args = args
        self.clock = ScaledClock(scenario.time_scale)
        self.run_dir = Path(tempfile.mkdtemp(prefix="acd-demo-"))
        self.secret = secrets.token_urlsafe(16)
        self.out = sys.stderr if args.json else sys.stdout
        self.traffic_s = args.duration  # real seconds the traffic ran (a subclass may run longer)
        self.postgres: EmbeddedPostgres | None = None

    async def run(self, stop: asyncio.Event) -> dict[str, Any]:
        async with contextlib.AsyncExitStack() as stack:
            redis_server = self._redis_server()
            await stack.enter_async_context(redis_server)
            kafka = EmbeddedKafka()
            kafka.advertised_port = await self._link(stack, "kafka", kafka.port)
            await stack.enter_async_context(kafka)
            self._linked("kafka", kafka.port)  # another port, if its first was taken meanwhile
            if self.records_wanted:
                self.postgres = await stack.enter_async_context(EmbeddedPostgres(durable=True))
                await upgrade(PostgresSettings(dsn=self.postgres.dsn()))
            pbx = Pbx(self.clock, seed=self.scenario.seed)
            stack.push_async_callback(pbx.aclose)
            simulator = AmiSimulator(pbx, users={AMI_USER: AmiUser(self.secret, AMI_READ, AMI_WRITE)})
            await simulator.start()
            stack.push_async_callback(simulator.stop)
            children = ChildProcesses(
                self.run_dir, log_level=os.environ.get("ACD_DEMO_CHILD_LOG_LEVEL", "INFO")
            )
            stack.push_async_callback(children.stop)
            # Kept for subclasses that act on the running system (fault injection).
            self.redis_server, self.kafka, self.simulator, self.children = (
                redis_server,
                kafka,
                simulator,
                children,
            )
            config = self.config_path = self._write_config(
                await self._redis_section(stack, redis_server),
                kafka.bootstrap_servers,
                await self._link(stack, "ami", simulator.port),
            )
            await children.start(self._child_specs(config))
            self._banner(children)
            await children.wait_ready(timeout_s=60)
            await self._start_tap(stack, kafka.bootstrap_servers)
            if self.observer is not None:
                await self.observer.started(children.http_ports())
            redis = await self._lab_redis(redis_server)
            stack.push_async_callback(redis.aclose)
            store = RedisStateStore(redis, "demo")
            traffic = TrafficGenerator(self.scenario, pbx, self.clock)
            traffic.add_agents()
            traffic.login_agents()
            await self._drive(traffic, store, children, stop)
            summary = await self._finish(store, pbx, children)
        if self.args.keep:
            return summary
        if self.found_defects(summary):
            # A run that went wrong keeps its logs: a rare failure may not come again.
            summary["kept_run_dir"] = str(self.run_dir)
            logger.warning("the referee found calls lost or misjudged: run directory kept at %s", self.run_dir)
        else:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        return summary

    def found_defects(self, summary: dict[str, Any]) -> bool:
        """Whether the referee found what must never happen: a call lost, double-booked,
        ended otherwise than it did, or without its record."""
        missing = summary.get("records", {}).get("missing_count", 0)
        return not invariants_held(summary) or bool(missing)

    @property
    def records_wanted(self) -> bool:
        return bool(getattr(self.args, "records", False)) or self.report_out is not None

    @property
    def report_out(self) -> Path | None:
        out: Path | None = getattr(self.args, "report_out", None)
        return out

    async def _link(self, stack: contextlib.AsyncExitStack, name: str, port: int) -> int:
        """The loopback port the processes reach link ``name`` (redis, kafka, ami) on: the
        server's own here; a fault run may put something in between."""
        return port

    def _linked(self, name: str, port: int) -> None:
        """The server behind link ``name`` listens on ``port`` (a fault run's proxy follows)."""

    async def _start_tap(self, stack: contextlib.AsyncExitStack, bootstrap: str) -> None:
        """Read every offer's decision latency, as the dispatcher reads the offers."""
        self.tap = DecisionTap(
            KafkaSettings(bootstrap_servers=bootstrap), Topics(KafkaSettings().topic_prefix)
        )
        tap_stop = asyncio.Event()
        task = asyncio.get_running_loop().create_task(self.tap.run(tap_stop))

        async def stop_tap() -> None:
            tap_stop.set()
            await task  # fails loudly if the tap did

        stack.push_async_callback(stop_tap)

    async def _latency(self, children: ChildProcesses) -> RoutingLatency:
        """The run's routing latencies, once the tap has read every offer made so far."""
        await self.tap.caught_up()
        acked = await histogram_buckets(children.http_ports(), ACKED_HISTOGRAM)
        return RoutingLatency(
            decision_ms=list(self.tap.decision_ms),
            acked_p50_ms=histogram_quantile(acked, 0.50),
            acked_p99_ms=histogram_quantile(acked, 0.99),
        )

    def _redis_server(self) -> EmbeddedRedis | EmbeddedSentinelRedis:
        return EmbeddedRedis(self.run_dir / "redis")

    async def _redis_section(
        self, stack: contextlib.AsyncExitStack, server: EmbeddedRedis | EmbeddedSentinelRedis
    ) -> dict[str, Any]:
        """The processes' ``redis`` settings: the server's URL (or the link in front of it),
        or the sentinels that name the primary."""
        if isinstance(server, EmbeddedSentinelRedis):
            return server.settings()
        return {"url": f"redis://127.0.0.1:{await self._link(stack, 'redis', server.port)}/0"}

    async def _lab_redis(self, server: EmbeddedRedis | EmbeddedSentinelRedis) -> Redis:
        """The run's own client (the referee's): to the server, or through the sentinels as
        the processes, following a failover."""
        if isinstance(server, EmbeddedSentinelRedis):
            return await open_redis(RedisSettings(**server.settings()))
        # Unlike the processes (which retry on RedisUnavailableError themselves), the lab's
        # fault code and referee call Redis once: a connection that a restart of Redis left
        # dead is reconnected, and a Redis still starting is waited for (about 10 s at most).
        retry = Retry(ExponentialBackoff(cap=1.0, base=0.05), LAB_REDIS_RETRIES)
        errors = [redis_errors.ConnectionError, redis_errors.TimeoutError, redis_errors.BusyLoadingError]
        return Redis.from_url(server.url, decode_responses=True, retry=retry, retry_on_error=errors)

    def _write_config(self, redis: dict[str, Any], bootstrap: str, ami_port: int) -> Path:
        config = {
            "site": "demo",
            "queues": [q.model_dump(mode="json", exclude_none=True) for q in self.scenario.queues],
            "agents": [a.model_dump(mode="json", exclude_none=True) for a in self.scenario.all_agents()],
            "ami": {"host": "127.0.0.1", "port": ami_port, "username": AMI_USER},
            "kafka": {"bootstrap_servers": bootstrap, "partitions": 6},
            "redis": redis,
            "clock": {"time_scale": self.clock.time_scale, "epoch": self.clock.epoch},
        }
        path = self.run_dir / "acd.yaml"
        path.write_text(json.dumps(config, indent=2))  # JSON is YAML
        # So that an `acd api` started by hand can join the run (README: try the API).
        secret = self.run_dir / "ami-secret"
        secret.write_text(self.secret)
        secret.chmod(0o600)
        return path

    def _child_specs(self, config: Path) -> list[ChildSpec]:
        names = ["ingest", "dispatch", "collect"] + [f"route-{i + 1}" for i in range(self.args.workers)]
        if self.postgres is not None:
            names.append("record")  # last: the others keep their metrics ports
        # The second of an ingest pair (docs/operations.md), after all the others for the same
        # reason.
        names += [f"ingest-{n + 2}" for n in range(self.ingests - 1)]
        names += [f"dispatch-{n + 2}" for n in range(self.dispatchers - 1)]
        base = self.args.metrics_port
        specs = []
        for index, name in enumerate(names):
            command = name.split("-")[0]
            env = {"ACD_AMI__SECRET": self.secret, "ACD_HTTP__PORT": str(base + index if base else 0)}
            if name == "record" and self.postgres is not None:
                env["ACD_POSTGRES__DSN"] = self.postgres.dsn()
            specs.append(ChildSpec(name, ["--config", str(config)], command, env))
        return specs

    def _banner(self, children: ChildProcesses) -> None:
        print(f"acd demo: run directory {self.run_dir} (time x{self.clock.time_scale:g})", file=self.out)
        for name, port in children.http_ports().items():
            print(f"  {name:<9} http://127.0.0.1:{port}/metrics", file=self.out)

    async def _drive(
        self, traffic: TrafficGenerator, store: RedisStateStore, children: ChildProcesses, stop: asyncio.Event
    ) -> None:
        traffic_stop = asyncio.Event()
        started = time.monotonic()
        async with asyncio.TaskGroup() as group:
            group.create_task(traffic.run(traffic_stop))
            group.create_task(children.watch(traffic_stop))
            while not traffic_stop.is_set():
                elapsed = time.monotonic() - started
                if stop.is_set() or elapsed >= self.args.duration:
                    traffic_stop.set()
                    break
                await self._print_progress(store, elapsed)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(traffic_stop.wait(), min(1.0, self.args.duration - elapsed))
        children.check_alive()

    async def _print_progress(self, store: RedisStateStore, elapsed: float) -> None:
        total = kpi.combine([await store.queue_stats(q.name) for q in self.scenario.queues])
        summary = await store.state_summary()
        sl = kpi.service_level(total)
        asa = kpi.asa_seconds(total)
        agents = ", ".join(f"{n} {s}" for s, n in sorted(summary.agents.items()) if n)
        print(
            f"t={elapsed:5.1f}s offered={int(total.get('offered', 0))} answered={int(total.get('answered', 0))} "
            f"abandoned={int(total.get('abandoned', 0))} waiting={sum(summary.waiting.values())} "
            f"SL={'-' if sl is None else f'{sl:.0%}'} ASA={'-' if asa is None else f'{asa:.1f}s'} | agents: {agents}",
            file=self.out,
            flush=True,
        )

    async def _with_metrics(
        self,
        summary: dict[str, Any],
        store: RedisStateStore,
        queues: dict[str, QueueConfig],
        pbx: Pbx,
        children: ChildProcesses,
    ) -> dict[str, Any]:
        """The Prometheus totals (and the assignments file) beside the summary, read so that
        they describe the same moment: the phones keep going (a ringing call may be answered
        between two reads), so read until the summary did not move while they were read."""
        for _ in range(20):
            metrics = await scrape_totals(children.http_ports(), METRIC_TOTALS)
            if self.args.assignments:
                await write_assignments(self.args.assignments, store, list(pbx.ledger.calls))
            latency = await self._latency(children)
            again = await run_summary(store, queues, pbx.ledger, listed=self.listed_calls, latency=latency)
            if moving_counts(again) == moving_counts(summary):
                break
            summary = again
        summary["metrics"] = metrics
        return summary

    async def _finish(self, store: RedisStateStore, pbx: Pbx, children: ChildProcesses) -> dict[str, Any]:
        """Let in-flight events land, judge the run, then stop the processes cleanly."""
        if self.observer is not None:
            await self.observer.finishing(store)
        if self.report_out is not None:
            await self._end_every_call(store, pbx)
        queues = {q.name: q for q in self.scenario.queues}
        started = time.monotonic()
        deadline = started + SETTLE_S
        latency = await self._latency(children)
        summary = await run_summary(store, queues, pbx.ledger, listed=self.listed_calls, latency=latency)
        while not _settled(summary) and time.monotonic() < min(deadline, started + SETTLE_MAX_S):
            await asyncio.sleep(0.25)
            before = _progress(summary)
            latency = await self._latency(children)
            summary = await run_summary(store, queues, pbx.ledger, listed=self.listed_calls, latency=latency)
            if _progress(summary) != before:  # the routers are still catching up: wait on
                deadline = time.monotonic() + SETTLE_S
        summary = await self._with_metrics(summary, store, queues, pbx, children)
        if self.postgres is not None:
            summary["records"] = await records_account(
                store.redis, self.postgres.dsn(), store.keys.site, list(pbx.ledger.calls), listed=self.listed_calls
            )
        if self.postgres is not None and self.report_out is not None:
            summary["report_out"] = await self._write_reports(self.report_out, self.postgres.dsn(), pbx)
        exit_codes = await children.stop()
        summary["duration_s"] = round(self.traffic_s, 1)
        summary["simulated_s"] = round(self.traffic_s * self.clock.time_scale, 1)
        summary["time_scale"] = self.clock.time_scale
        summary["routing_workers"] = self.args.workers
        summary["process_exit_codes"] = exit_codes
        return summary

    async def _end_every_call(self, store: RedisStateStore, pbx: Pbx) -> None:
        """Hang up every caller still on the line and let the agents' wrap-ups end, so that
        every call of the run is finished, recorded and in the reports."""
        for call_id in list(pbx.ledger.calls):
            pbx.hangup_call(call_id)
        deadline = (
            time.monotonic()
            + SETTLE_S
            + max(q.wrapup_s for q in self.scenario.queues) / self.clock.time_scale
        )
        while time.monotonic() < deadline:
            agents = (await store.state_summary()).agents
            if not agents.get("wrap_up") and not agents.get("on_call") and not agents.get("reserved"):
                return
            await asyncio.sleep(0.1)

    async def _write_reports(self, out: Path, dsn: str, pbx: Pbx) -> str:
        calls = pbx.ledger.calls.values()
        span = (min(c.entered_at for c in calls), max((c.ended_at or c.entered_at) for c in calls))
        settings = load_settings(self.config_path)
        reports = await read_run_reports(settings, dsn, span, self.args.report_interval)
        await asyncio.to_thread(write_run_reports, out, reports)
        print(table(reports), file=self.out)
        print(
            f"acd demo: {len(reports.calls)} calls; reports in {out}/ (calls.csv, intervals_by_queue.csv, "
            "intervals_by_agent.csv)",
            file=self.out,
            flush=True,
        )
        return str(out)


def moving_counts(summary: dict[str, Any]) -> tuple[Any, ...]:
    """Every count a run's Prometheus totals are held against (tests/test_e2e*.py), the
    phones' own included: if one moved while the totals were read, they are read again.
    (Transfers were left out once: one made between the reads showed 20 in Prometheus
    against 19 in Redis and in the ledger.)"""
    phones = ("offered", "answered", "abandoned", "transfers", "requeued_by_transfer")
    truth = summary["ground_truth"]
    return (*(summary[key] for key in ROUTER_COUNTS), *(truth[key] for key in phones))


def _progress(summary: dict[str, Any]) -> tuple[Any, ...]:
    """The router's account of the run, to see whether it still changes."""
    return tuple(summary[key] for key in (*ROUTER_COUNTS, "decisions", "lost_calls"))


def invariants_held(summary: dict[str, Any]) -> bool:
    """The referee's account of the router: no call double-booked, lost, or ended otherwise
    than the phones say."""
    return not summary["double_assignments"] and not summary["lost_calls"] and not summary["state_mismatches"]


def _settled(summary: dict[str, Any]) -> bool:
    """The router has caught up with the phones: same counts, every call accounted for."""
    truth = summary["ground_truth"]
    same = all(summary[key] == truth[key] for key in ("offered", "answered", "abandoned"))
    return same and not summary["lost_calls"] and not summary["state_mismatches"]


def run_demo_command(args: argparse.Namespace) -> int:
    scenario = load_scenario(args.scenario or default_scenario_path())
    demo = Demo(scenario, args)

    async def main() -> dict[str, Any]:
        stop = asyncio.Event()
        install_stop_signals(stop)
        return await demo.run(stop)

    summary = asyncio.run(main())
    if args.json:
        print(json.dumps(summary))
    else:
        _print_summary(summary)
    clean = summary["double_assignments"] == 0 and summary["lost_calls"] == 0
    return 0 if clean else 1


def _print_summary(summary: dict[str, Any]) -> None:
    print("\nsummary:")
    for key in (
        "offered",
        "answered",
        "abandoned",
        "waiting_at_end",
        "service_level",
        "asa_seconds",
        "routing_latency_p50_ms",
        "routing_latency_p99_ms",
        "double_assignments",
        "lost_calls",
    ):
        print(f"  {key:<24} {summary[key]}")
    for name, figures in summary["queues"].items():
        print(f"  queue {name}: {json.dumps(figures)}")
