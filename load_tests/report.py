"""The load-test report: DIR/report.md with PNG plots, a CSV of the samples and the JSON summary.

Plots (matplotlib, Agg backend: no display needed), against simulated time since the
traffic started:

- ``service_level_asa.png``: service level and ASA, cumulative and over a rolling window,
  with the target and, where it applies, Erlang C's (or A's) figures;
- ``waiting.png``: calls waiting and the oldest wait;
- ``agents.png``: agents by state;
- ``latency.png``: routing decision latency percentiles per sample interval, and decisions
  per second.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from load_tests.erlang_check import Comparison
from load_tests.scenario import Scenario
from load_tests.summary import percentile
from load_tests.timeseries import Sample, window_figures, write_csv

PLOTS = {
    "service_level_asa.png": "Service level and ASA",
    "waiting.png": "Calls waiting",
    "agents.png": "Agents by state",
    "latency.png": "Routing decision latency",
}
STATE_COLOURS = {
    "available": "#4caf50",
    "reserved": "#ffc107",
    "on_call": "#2196f3",
    "wrap_up": "#9c27b0",
    "paused": "#ff5722",
    "logged_out": "#9e9e9e",
}


@dataclass(frozen=True)
class ReportInput:
    scenario: Scenario
    scenario_path: Path | None
    summary: dict[str, Any]
    samples: Sequence[Sample]
    comparison: Comparison | None
    warmup_s: float


def write_report(directory: Path, data: ReportInput) -> Path:
    """Write report.md, the PNGs, samples.csv and summary.json into ``directory``; report.md's path."""
    directory.mkdir(parents=True, exist_ok=True)
    write_csv(directory / "samples.csv", data.samples)
    (directory / "summary.json").write_text(json.dumps(data.summary, indent=2) + "\n")
    plotted = plot_all(directory, data) if len(data.samples) >= 2 else []
    path = directory / "report.md"
    path.write_text(markdown(data, plotted))
    return path


# -- plots --------------------------------------------------------------------------------


def plot_all(directory: Path, data: ReportInput) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    written = []
    for name, draw in (
        ("service_level_asa.png", _plot_sl_asa),
        ("waiting.png", _plot_waiting),
        ("agents.png", _plot_agents),
        ("latency.png", _plot_latency),
    ):
        figure = draw(data)
        figure.savefig(directory / name, dpi=110, bbox_inches="tight")
        _close(figure)
        written.append(name)
    return written


def _close(figure: Any) -> None:
    import matplotlib.pyplot as plt

    plt.close(figure)


def _minutes(samples: Sequence[Sample]) -> list[float]:
    return [s.t_sim_s / 60 for s in samples]


def rolling_window(samples: Sequence[Sample]) -> int:
    """Samples in the rolling window: a tenth of the run, between 5 and 60."""
    return max(5, min(60, len(samples) // 10))


def _rolling(samples: Sequence[Sample]) -> tuple[list[float | None], list[float | None]]:
    width = rolling_window(samples)
    sls: list[float | None] = []
    asas: list[float | None] = []
    for i, sample in enumerate(samples):
        sl, asa = window_figures(samples[max(0, i - width)], sample) if i else (None, None)
        sls.append(sl)
        asas.append(asa)
    return sls, asas


def _decorate(axis: Any, data: ReportInput, *, warmup: bool = False) -> None:
    """Shade the drain (and the warm-up, with ``warmup``); mark phase boundaries."""
    traffic_end = _traffic_end_sim(data)
    if warmup and data.comparison is not None and data.warmup_s > 0:
        axis.axvspan(
            0, data.warmup_s / 60, color="#eeeeee", zorder=0, label="warm-up (left out of the check)"
        )
    if traffic_end is not None and data.samples and data.samples[-1].t_sim_s > traffic_end:
        axis.axvspan(
            traffic_end / 60, data.samples[-1].t_sim_s / 60, color="#fff3e0", zorder=0, label="drain"
        )
    start = 0.0
    for phase in data.scenario.phases[:-1]:
        start += phase.duration_s
        if traffic_end is None or start < traffic_end:
            axis.axvline(start / 60, color="#999999", linestyle=":", linewidth=1)
    axis.grid(True, alpha=0.3)


def _label_phases(axis: Any, data: ReportInput) -> None:
    """Phase names along the top of the plot, in the middle of each phase that was reached."""
    end = _traffic_end_sim(data) or (data.samples[-1].t_sim_s if data.samples else 0.0)
    start = 0.0
    for phase in data.scenario.phases:
        if phase.name and start < end:
            middle = (start + min(start + phase.duration_s, end)) / 2 / 60
            axis.text(middle, 1.01, phase.name, transform=axis.get_xaxis_transform(), ha="center", fontsize=8)
        start += phase.duration_s


def _traffic_end_sim(data: ReportInput) -> float | None:
    traffic_s = data.summary.get("traffic_s")
    if traffic_s is None:
        return None
    return float(traffic_s) * data.scenario.time_scale


def _plot_sl_asa(data: ReportInput) -> Any:
    import matplotlib.pyplot as plt

    samples = data.samples
    x = _minutes(samples)
    rolling_sl, rolling_asa = _rolling(samples)
    width = rolling_window(samples)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    top.plot(x, _pct([s.service_level for s in samples]), label="cumulative", color="#1565c0")
    top.plot(x, _pct(rolling_sl), label=f"rolling ({width} s real)", color="#90caf9")
    targets = {q.service_level.target for q in data.scenario.queues}
    thresholds = sorted({q.service_level.threshold_s for q in data.scenario.queues})
    for target in targets:
        top.axhline(target * 100, color="#c62828", linestyle="--", linewidth=1, label=f"target {target:.0%}")
    if data.comparison is not None:
        top.axhline(
            data.comparison.service_level_theory * 100,
            color="#2e7d32",
            linestyle=":",
            label=_model_name(data.comparison.model),
        )
    top.set_ylabel(f"service level within {'/'.join(f'{t:g}' for t in thresholds)} s (%)")
    top.set_ylim(0, 105)
    _decorate(top, data, warmup=True)
    _label_phases(top, data)
    _legend_right(top)
    bottom.plot(x, [s.asa_seconds for s in samples], label="cumulative", color="#6a1b9a")
    bottom.plot(x, rolling_asa, label=f"rolling ({width} s real)", color="#ce93d8")
    if data.comparison is not None:
        bottom.axhline(
            data.comparison.asa_seconds_theory,
            color="#2e7d32",
            linestyle=":",
            label=_model_name(data.comparison.model),
        )
    bottom.set_ylabel("ASA (simulated s)")
    bottom.set_xlabel(_x_label(data))
    bottom.set_ylim(bottom=0)
    _decorate(bottom, data, warmup=True)
    _legend_right(bottom)
    fig.suptitle("Service level and average speed of answer (router's measurements)")
    fig.tight_layout()
    return fig


def _plot_waiting(data: ReportInput) -> Any:
    import matplotlib.pyplot as plt

    samples = data.samples
    x = _minutes(samples)
    fig, axis = plt.subplots(figsize=(10, 4))
    axis.fill_between(
        x, [s.waiting for s in samples], step="post", color="#ef6c00", alpha=0.5, label="calls waiting"
    )
    axis.set_ylabel("calls waiting")
    axis.set_xlabel(_x_label(data))
    axis.set_ylim(bottom=0)
    _decorate(axis, data)
    oldest = axis.twinx()
    oldest.plot(x, [s.oldest_wait_s for s in samples], color="#4e342e", linewidth=1, label="oldest wait")
    oldest.set_ylabel("oldest wait (simulated s)")
    oldest.set_ylim(bottom=0)
    _merged_legend(axis, oldest)
    fig.suptitle("Calls waiting")
    fig.tight_layout()
    return fig


def _plot_agents(data: ReportInput) -> Any:
    import matplotlib.pyplot as plt

    samples = data.samples
    x = _minutes(samples)
    states = [s for s in STATE_COLOURS if any(sample.agents.get(s) for sample in samples)]
    states += sorted({s for sample in samples for s in sample.agents} - set(states))
    fig, axis = plt.subplots(figsize=(10, 4))
    if states:
        axis.stackplot(
            x,
            [[sample.agents.get(state, 0) for sample in samples] for state in states],
            labels=states,
            colors=[STATE_COLOURS.get(state, "#607d8b") for state in states],
            alpha=0.8,
        )
    axis.set_ylabel("agents")
    axis.set_xlabel(_x_label(data))
    _decorate(axis, data)
    _legend_right(axis)
    fig.suptitle("Agents by state (reserved = offered, phone ringing)")
    fig.tight_layout()
    return fig


MAX_LATENCY_BINS = 100


@dataclass(frozen=True)
class LatencyBin:
    """Decisions of consecutive samples taken together (long runs would be a blur otherwise)."""

    minute: float  # simulated minutes at the end of the bin
    p50: float | None
    p90: float | None
    p99: float | None
    per_second: float


def latency_bins(samples: Sequence[Sample], max_bins: int = MAX_LATENCY_BINS) -> list[LatencyBin]:
    """Latency percentiles and decisions per real second, over bins of consecutive samples."""
    size = max(1, math.ceil(len(samples) / max_bins))
    bins = []
    for start in range(0, len(samples), size):
        group = samples[start : start + size]
        before = samples[start - 1] if start else None
        last = group[-1]
        elapsed = last.t_real_s - (before.t_real_s if before else 0.0)
        made = last.decisions - (before.decisions if before else 0)
        values = [v for sample in group for v in getattr(sample, "interval_latencies_ms", ())]
        if not values and size == 1:  # samples without the raw values: their own percentiles
            p50, p90, p99 = (
                last.interval_latency_p50_ms,
                last.interval_latency_p90_ms,
                last.interval_latency_p99_ms,
            )
        else:
            p50, p90, p99 = (percentile(values, q) for q in (50, 90, 99))
        bins.append(LatencyBin(last.t_sim_s / 60, p50, p90, p99, made / elapsed if elapsed > 0 else 0.0))
    return bins


def _plot_latency(data: ReportInput) -> Any:
    import matplotlib.pyplot as plt

    bins = latency_bins(data.samples)
    x = [b.minute for b in bins]
    fig, axis = plt.subplots(figsize=(10, 4.5))
    for name, colour in (("p50", "#2e7d32"), ("p90", "#f9a825"), ("p99", "#c62828")):
        values = [getattr(b, name) for b in bins]
        axis.plot(x, values, marker=".", linestyle="-", linewidth=0.8, markersize=3, color=colour, label=name)
    for key, style in (("routing_latency_p50_ms", "--"), ("routing_latency_p99_ms", "-.")):
        value = data.summary.get(key)
        if value is not None:
            axis.axhline(
                value, color="#555555", linestyle=style, linewidth=1, label=f"run {key.split('_')[2]}"
            )
    axis.set_ylabel("decision latency (real ms, log scale)")
    axis.set_yscale("log")
    axis.yaxis.set_major_formatter(_plain_formatter())
    axis.yaxis.set_minor_formatter(_plain_formatter(only=(2, 5)))
    axis.set_xlabel(_x_label(data))
    _decorate(axis, data)
    rate = axis.twinx()
    per_second = [b.per_second for b in bins]
    rate.step(x, per_second, where="pre", color="#78909c", linewidth=1, label="decisions/s")
    rate.fill_between(x, per_second, step="pre", color="#90a4ae", alpha=0.2)
    rate.set_ylabel("decisions per real second")
    rate.set_ylim(bottom=0)
    rate.set_zorder(axis.get_zorder() - 1)
    axis.patch.set_visible(False)
    _merged_legend(axis, rate)
    seconds = _bin_seconds(data.samples, len(bins))
    fig.suptitle(
        f"Routing decision latency (event consumed -> routing command produced), per {seconds} real s"
    )
    fig.tight_layout()
    return fig


def _bin_seconds(samples: Sequence[Sample], bins: int) -> str:
    if not samples or not bins:
        return "1"
    return f"{samples[-1].t_real_s / bins:.0f}"


def _plain_formatter(only: tuple[int, ...] = ()) -> Any:
    """Tick labels as plain numbers (``only``: just those leading digits, for minor ticks)."""
    from matplotlib.ticker import FuncFormatter

    def label(value: float, _: object) -> str:
        if value <= 0:
            return ""
        leading = round(value / 10 ** math.floor(math.log10(value)))
        return f"{value:g}" if not only or leading in only else ""

    return FuncFormatter(label)


def _legend_right(
    axis: Any, handles: list[Any] | None = None, labels: list[str] | None = None, offset: float = 1.01
) -> None:
    """The legend outside the plot, on its right, so it never hides data."""
    if handles is None or labels is None:
        handles, labels = axis.get_legend_handles_labels()
    axis.legend(handles, labels, loc="upper left", bbox_to_anchor=(offset, 1.0), fontsize=8, frameon=False)


def _merged_legend(left: Any, right: Any) -> None:
    handles, labels = left.get_legend_handles_labels()
    more_handles, more_labels = right.get_legend_handles_labels()
    _legend_right(left, handles + more_handles, labels + more_labels, offset=1.09)


def _pct(values: Sequence[float | None]) -> list[float | None]:
    return [None if v is None else v * 100 for v in values]


def _x_label(data: ReportInput) -> str:
    return f"simulated minutes since traffic started (time x{data.scenario.time_scale:g})"


# -- markdown -----------------------------------------------------------------------------


def markdown(data: ReportInput, plots: Sequence[str]) -> str:
    s = data.summary
    lines = [
        "# Load test report",
        "",
        f"Written {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} by `acd loadtest`.",
        "",
        *_scenario_section(data),
        "## Summary",
        "",
        "Router's measurements (Redis) over the whole run; times in simulated seconds, latencies in real ms.",
        "",
        "| figure | value |",
        "|---|---|",
        *(f"| `{key}` | {_fmt(s.get(key))} |" for key in _SUMMARY_KEYS if key in s),
        "",
        *_queue_section(s),
        *_erlang_section(data),
        *_truth_section(s),
        "## Plots",
        "",
    ]
    lines += [f"### {PLOTS[name]}\n\n![{PLOTS[name]}]({name})\n" for name in plots] or [
        "(too few samples to plot)",
        "",
    ]
    lines += ["Samples (one a second): `samples.csv`; the JSON summary: `summary.json`.", ""]
    return "\n".join(lines)


_SUMMARY_KEYS = (
    "offered",
    "answered",
    "abandoned",
    "overflowed",
    "waiting_at_end",
    "service_level",
    "asa_seconds",
    "abandon_rate",
    "occupancy",
    "routing_latency_p50_ms",
    "routing_latency_p99_ms",
    "decisions",
    "decisions_per_second",
    "double_assignments",
    "lost_calls",
    "state_mismatches",
    "traffic_s",
    "drain_s",
    "simulated_s",
    "routing_workers",
)


def _scenario_section(data: ReportInput) -> list[str]:
    sc, s = data.scenario, data.summary
    source = str(data.scenario_path) if data.scenario_path else "(in-process scenario)"
    lines = [
        "## Scenario",
        "",
        f"`{source}`: {len(sc.all_agents())} agents, {len(sc.queues)} queue(s), time x{sc.time_scale:g}, "
        f"seed {sc.seed}; {s.get('traffic_s')} s of traffic (real) with {s.get('routing_workers')} routing "
        f"worker(s), then {s.get('drain_s')} s of drain (arrivals stopped, waiting calls answered or abandoned).",
        "",
        "| queue | calls/h | handle time | patience | SL target |",
        "|---|---|---|---|---|",
    ]
    queues = {q.name: q for q in sc.queues}
    for line in sc.traffic:
        q = queues[line.queue]
        patience = _dist(line.patience_s.model_dump()) if line.patience_s else "never abandon"
        lines.append(
            f"| {line.queue} | {line.calls_per_hour:g} | {_dist(line.handle_time_s.model_dump())} | {patience} "
            f"| {q.service_level.target:.0%} within {q.service_level.threshold_s:g} s |"
        )
    if sc.phases:
        phases = ", ".join(
            f"{p.name or f'phase {i + 1}'} {p.duration_s:g} s x{p.rate_factor:g}"
            for i, p in enumerate(sc.phases)
        )
        lines += ["", f"Phases (simulated time, arrival-rate factor): {phases}."]
    return [*lines, ""]


def _dist(d: dict[str, Any]) -> str:
    if d["dist"] == "uniform":
        return f"uniform {d['min']:g}-{d['max']:g} s"
    if d["dist"] == "lognormal":
        return f"lognormal mean {d['mean']:g} s (sigma {d['sigma']:g})"
    return f"{d['dist']} mean {d['mean']:g} s"


def _queue_section(s: dict[str, Any]) -> list[str]:
    queues = s.get("queues") or {}
    if not queues:
        return []
    lines = [
        "## Per queue",
        "",
        "| queue | offered | answered | abandoned | SL | target | ASA (s) | abandon rate |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, q in queues.items():
        lines.append(
            f"| {name} | {q['offered']} | {q['answered']} | {q['abandoned']} | {_fmt(q['service_level'])} "
            f"| {q['service_level_target']:.0%} in {q['service_level_threshold_s']:g} s | {_fmt(q['asa_seconds'])} "
            f"| {_fmt(q['abandon_rate'])} |"
        )
    return [*lines, ""]


def _model_name(model: str) -> str:
    return "Erlang A" if model == "erlang-a" else "Erlang C"


def _erlang_section(data: ReportInput) -> list[str]:
    check = data.summary.get("erlang_c") or {}
    c = data.comparison
    name = _model_name(str(check.get("model", "")))
    if not check.get("applies"):
        return ["## Erlang C comparison", "", f"Not applicable: {check.get('why_not', 'not computed')}.", ""]
    if c is None:
        return [f"## {name} comparison", "", f"Not computed: {check.get('why_not')}.", ""]
    verdict = "**agrees**" if c.agrees else "**disagrees**"
    patience = f", callers' mean patience {c.patience_s:g} s (exponential)" if c.patience_s is not None else ""
    rows = [
        f"| service level within {c.threshold_s:g} s | {c.service_level:.4f} | {c.service_level_theory:.4f} "
        f"| {c.service_level_se:.4f} | {c.service_level_z:+.2f} | {_fmt(c.service_level_batch_se)} "
        f"| {c.finite_run_service_level:.4f} |",
        f"| ASA (s) | {c.asa_seconds:.3f} | {c.asa_seconds_theory:.3f} | {c.asa_seconds_se:.3f} | {c.asa_z:+.2f} "
        f"| {_fmt(c.asa_seconds_batch_se)} | {c.finite_run_asa_seconds:.3f} |",
    ]
    if c.model == "erlang-a":
        rows.append(
            f"| abandon rate ({c.abandoned} calls) | {c.abandon_rate:.4f} | {c.abandon_rate_theory:.4f} "
            f"| {c.abandon_rate_se:.4f} | {c.abandon_z:+.2f} | | {c.finite_run_abandon_rate:.4f} |"
        )
    rows.append(f"| occupancy (offer to hang-up) | {_fmt(c.occupancy)} | {c.occupancy_theory:.4f} | | | | |")
    judged = "all three" if c.model == "erlang-a" else "both"
    return [
        f"## {name} comparison",
        "",
        f"{c.agents} agents, {c.calls_per_hour:g} calls/h{patience}, AHT {c.aht_s:.2f} s (expected talk, plus the "
        f"pipeline's times measured in this run: offer to answer {c.offer_to_answer_s:.2f} s, hang-up to the "
        f"agent's next offer {c.free_lag_s:.2f} s, arrival to offer when an agent was free "
        f"{c.arrival_lag_s:.2f} s; measured offer-to-hang-up per call {_fmt(c.aht_measured_s)} s), "
        f"traffic {c.traffic_erlangs:.3f} Erlangs, P(wait) {c.p_wait:.4f}. "
        f"Measured: the router's records of the {c.calls} calls that arrived after a {c.warmup_s:g} s warm-up "
        f"and were answered ({c.not_answered} not answered); service level by {c.service_level_formula}.",
        "",
        f"| | measured | {name} | standard error | z | batch-means SE | finite-run mean (model) |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"Verdict: {verdict} (|z| <= {c.z_limit:g} for {judged}). The standard error is the spread of the same "
        f"statistic over {c.replications} replications of the ideal M/G/N{'+M' if c.model == 'erlang-a' else ''} "
        "queue with this run's length and warm-up (see docs/load-testing.md).",
        "",
    ]


def _truth_section(s: dict[str, Any]) -> list[str]:
    truth = s.get("ground_truth") or {}
    if not truth:
        return []
    return [
        "## Invariants and ground truth",
        "",
        f"Double assignments {s.get('double_assignments')}, lost calls {s.get('lost_calls')}, state mismatches "
        f"{s.get('state_mismatches')}. The AMI simulator's ledger: "
        + ", ".join(f"{k} {v}" for k, v in truth.items())
        + ".",
        "",
    ]


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
