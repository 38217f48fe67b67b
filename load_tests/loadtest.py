"""`acd loadtest`: a scenario's traffic through the whole pipeline, measured as it runs.

The same embedded pipeline as `acd demo` (redis-server, Tansu, the AMI simulator and the
`acd` processes as children), with what a load test adds: a progress bar, a sample of the
router's figures every second, a drain after the traffic (arrivals stop, the calls still
waiting are answered or abandoned), the load-test figures (occupancy, decisions per
second), the Erlang C (or A) check where its assumptions hold, and with ``--report DIR`` a
Markdown report with PNG plots. The JSON object printed last is documented in
docs/load-testing.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from load_tests import erlang_check
from load_tests.amisim.pbx import Pbx
from load_tests.children import ChildProcesses
from load_tests.demo import Demo, invariants_held
from load_tests.figures import (
    contract_view,
    decisions_per_second,
    occupancy_inputs,
    router_call_times,
)
from load_tests.scenario import Scenario, load_scenario
from load_tests.timeseries import Sample, Sampler
from load_tests.traffic import TrafficGenerator
from router.store import RedisStateStore

SAMPLE_EVERY_S = 1.0
DEFAULT_DRAIN_S = 60.0
LOGIN_WAIT_S = 20.0
DEFAULT_SCENARIO = Path(__file__).resolve().parent / "scenarios" / "peak_hour.yaml"


def add_loadtest_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scenario",
        type=Path,
        default=None,
        help="scenario YAML (default: load_tests/scenarios/peak_hour.yaml)",
    )
    parser.add_argument(
        "--duration", type=float, default=60.0, help="seconds of traffic, real time (default 60)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON summary object last on stdout")
    parser.add_argument("--report", type=Path, default=None, help="write report.md and PNG plots into DIR")
    parser.add_argument("--workers", type=int, default=2, help="routing worker processes (default 2)")
    parser.add_argument(
        "--warmup",
        type=float,
        default=None,
        help="simulated seconds left out of the Erlang C (or A) check (default: the scenario's warmup_s, "
        "else a fifth of the run)",
    )
    parser.add_argument(
        "--drain",
        type=float,
        default=DEFAULT_DRAIN_S,
        help=f"after the traffic, wait up to S real seconds for waiting calls to end (default {DEFAULT_DRAIN_S:g})",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=0,
        help="first of the ports the processes serve /metrics on (default 0 = any free)",
    )
    parser.add_argument(
        "--assignments", type=Path, default=None, help="write one JSON line per answered call"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar or progress lines")
    parser.add_argument("--keep", action="store_true", help="keep the run directory (config, logs)")


class Progress:
    """A progress bar on a terminal; a line every few seconds otherwise (logs, CI)."""

    def __init__(self, duration_s: float, out: TextIO, *, enabled: bool = True) -> None:
        from tqdm import tqdm

        self.duration_s = duration_s
        self.out = out
        self.enabled = enabled
        self.tty = enabled and out.isatty()
        self.total = round(duration_s)  # kept here: tqdm's own total is typed Optional
        self.bar = tqdm(
            total=self.total,
            unit="s",
            file=out,
            disable=not self.tty,
            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} s{postfix}",
            desc="acd loadtest",
        )
        self._line_every = max(5.0, duration_s / 10)
        self._last_line = -1e9

    def update(self, sample: Sample, phase: str = "traffic") -> None:
        text = _progress_text(sample)
        if self.tty:
            done = phase != "traffic" or sample.t_real_s >= self.total
            self.bar.n = self.total if done else round(sample.t_real_s)
            self.bar.set_postfix_str(text if phase == "traffic" else f"{phase}: {text}")
        elif self.enabled and sample.t_real_s - self._last_line >= self._line_every:
            self._last_line = sample.t_real_s
            print(f"[{phase} t={sample.t_real_s:6.1f}s] {text}", file=self.out, flush=True)

    def close(self) -> None:
        self.bar.close()


def _progress_text(s: Sample) -> str:
    sl, asa = s.service_level, s.asa_seconds
    p99 = s.interval_latency_p99_ms
    return (
        f"offered={s.offered} answered={s.answered} abandoned={s.abandoned} waiting={s.waiting} "
        f"SL={'-' if sl is None else f'{sl:.0%}'} ASA={'-' if asa is None else f'{asa:.1f}s'} "
        f"p99={'-' if p99 is None else f'{p99:.0f}ms'}"
    )


class LoadTest(Demo):
    """One load-test run; ``run`` returns the summary (with ``samples`` kept on the object)."""

    def __init__(
        self, scenario: Scenario, args: argparse.Namespace, *, scenario_path: Path | None = None
    ) -> None:
        super().__init__(scenario, args)
        self.scenario_path = scenario_path
        self.out = sys.stderr
        self.samples: list[Sample] = []
        self.traffic_real_s = 0.0
        self.drain_real_s = 0.0
        self.traffic_start_sim = 0.0
        self.traffic_end_sim = 0.0
        self.occupancy: float | None = None
        self.traffic_decisions = 0
        self.comparison: erlang_check.Comparison | None = None

    def _banner(self, children: ChildProcesses) -> None:
        if not getattr(self.args, "no_progress", False):
            print(
                f"acd loadtest: run directory {self.run_dir} (time x{self.clock.time_scale:g}, "
                f"{len(self.scenario.all_agents())} agents, {self.args.duration:g} s of traffic)",
                file=self.out,
            )

    async def _drive(
        self, traffic: TrafficGenerator, store: RedisStateStore, children: ChildProcesses, stop: asyncio.Event
    ) -> None:
        sampler = Sampler(store, {q.name: q for q in self.scenario.queues}, self.clock, self.tap.decision_ms)
        progress = Progress(
            self.args.duration, self.out, enabled=not getattr(self.args, "no_progress", False)
        )
        arrivals_stop, behaviour_stop = asyncio.Event(), asyncio.Event()
        await self._wait_for_logins(store)
        try:
            async with asyncio.TaskGroup() as group:
                sampler.start()
                self.traffic_start_sim = sampler.started_sim
                group.create_task(traffic.run(behaviour_stop, arrivals_stop=arrivals_stop))
                group.create_task(children.watch(behaviour_stop))
                try:
                    await self._traffic_phase(sampler, progress, stop)
                    arrivals_stop.set()
                    self.traffic_end_sim = self.clock.now()
                    self.occupancy = (await occupancy_inputs(store, self.traffic_end_sim)).occupancy
                    await self.tap.caught_up()
                    self.traffic_decisions = len(self.tap.decision_ms)
                    await self._drain_phase(sampler, progress, traffic.pbx, stop)
                finally:
                    arrivals_stop.set()
                    behaviour_stop.set()
        finally:
            progress.close()
            self.samples = sampler.samples
        children.check_alive()

    async def _wait_for_logins(self, store: RedisStateStore) -> None:
        """Start the traffic once the router has seen every agent log in (or after a while)."""
        agents = len(self.scenario.all_agents())
        deadline = time.monotonic() + LOGIN_WAIT_S
        while time.monotonic() < deadline:
            states = (await store.state_summary()).agents
            if sum(states.values()) >= agents and not states.get("logged_out"):
                return
            await asyncio.sleep(0.1)

    async def _traffic_phase(self, sampler: Sampler, progress: Progress, stop: asyncio.Event) -> None:
        started = time.monotonic()
        while not stop.is_set():
            elapsed = time.monotonic() - started
            if elapsed >= self.args.duration:
                break
            progress.update(await sampler.take())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), min(SAMPLE_EVERY_S, self.args.duration - elapsed))
        self.traffic_real_s = time.monotonic() - started

    async def _drain_phase(self, sampler: Sampler, progress: Progress, pbx: Pbx, stop: asyncio.Event) -> None:
        """Arrivals have stopped: sample until no call waits (router and phones agree) or time is up."""
        started = time.monotonic()
        while not stop.is_set() and time.monotonic() - started < self.args.drain:
            sample = await sampler.take()
            progress.update(sample, "drain")
            if sample.waiting == 0 and not pbx.ledger.waiting_calls():
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), SAMPLE_EVERY_S)
        self.drain_real_s = time.monotonic() - started

    async def _finish(self, store: RedisStateStore, pbx: Pbx, children: ChildProcesses) -> dict[str, Any]:
        summary = await super()._finish(store, pbx, children)
        summary["occupancy"] = None if self.occupancy is None else round(self.occupancy, 4)
        summary["decisions_per_second"] = decisions_per_second(self.traffic_decisions, self.traffic_real_s)
        summary["traffic_s"] = round(self.traffic_real_s, 2)
        summary["drain_s"] = round(self.drain_real_s, 2)
        summary["samples"] = len(self.samples)
        summary["erlang_c"] = await self._erlang_check(store, pbx)
        if self.args.report is not None:
            from load_tests.report import write_report

            summary["report"] = str(write_report(self.args.report, self._report_input(summary)))
        return contract_view(summary)

    def warmup_s(self) -> float:
        if self.args.warmup is not None:
            return float(self.args.warmup)
        if self.scenario.warmup_s is not None:
            return self.scenario.warmup_s
        return (self.traffic_end_sim - self.traffic_start_sim) / 5

    async def _erlang_check(self, store: RedisStateStore, pbx: Pbx) -> dict[str, Any]:
        model = erlang_check.model_for(self.scenario)
        if isinstance(model, str):
            return {"applies": False, "why_not": model}
        times = await router_call_times(store, list(pbx.ledger.calls))
        comparison = erlang_check.compare(
            model,
            times,
            start_at=self.traffic_start_sim,
            end_at=self.traffic_end_sim,
            warmup_s=self.warmup_s(),
        )
        if comparison is None:
            return {"applies": True, "why_not": "no call answered after the warm-up"}
        self.comparison = comparison
        return {"applies": True, **comparison.as_dict()}

    def _report_input(self, summary: dict[str, Any]) -> Any:
        from load_tests.report import ReportInput

        return ReportInput(
            scenario=self.scenario,
            scenario_path=self.scenario_path,
            summary=summary,
            samples=self.samples,
            comparison=self.comparison,
            warmup_s=self.warmup_s(),
        )


def run_loadtest_command(args: argparse.Namespace) -> int:
    path = args.scenario or DEFAULT_SCENARIO
    test = LoadTest(load_scenario(path), args, scenario_path=path)

    async def main() -> dict[str, Any]:
        from workers.runtime import install_stop_signals

        stop = asyncio.Event()
        install_stop_signals(stop)
        return await test.run(stop)

    summary = asyncio.run(main())
    if args.json:
        print(json.dumps(summary))
    else:
        print_summary(summary)
    return 0 if verdict_clean(summary) else 1


def verdict_clean(summary: dict[str, Any]) -> bool:
    """No double assignment, no lost call, no wrong account, and Erlang C (or A) agrees where it applies."""
    check = summary.get("erlang_c") or {}
    return invariants_held(summary) and check.get("agrees", True) is not False


def print_summary(summary: dict[str, Any]) -> None:
    print("\nload test summary:")
    for key, value in summary.items():
        if key in ("queues", "ground_truth", "metrics", "erlang_c", "lost_call_ids", "mismatched_calls"):
            continue
        print(f"  {key:<24} {value}")
    check = summary.get("erlang_c") or {}
    if check.get("applies") and "agrees" in check:
        for line in erlang_check.summary_lines(erlang_check.Comparison(**_comparison_fields(check))):
            print(line)
    elif check:
        print(f"  Erlang C/A check: not applicable ({check.get('why_not')})")


def _comparison_fields(check: dict[str, Any]) -> dict[str, Any]:
    names = erlang_check.Comparison.__dataclass_fields__
    return {k: v for k, v in check.items() if k in names}
