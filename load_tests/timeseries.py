"""Sampling a run once a second: what the router measures, as it goes.

Each sample holds cumulative counters (so any interval's service level and ASA follow from
two samples), the calls waiting, agents by state, and the percentiles of the routing
decisions made since the previous sample. All read from the router's Redis state, the
same figures the summary ends with.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from load_tests.summary import percentile
from router import kpi
from router.clock import Clock
from router.domain import QueueConfig
from router.store import RedisSummaryStore


@dataclass(frozen=True, slots=True)
class Sample:
    """The run at one moment; counters are cumulative since the run began."""

    t_real_s: float  # real seconds since traffic started
    t_sim_s: float  # simulated seconds since traffic started
    offered: int
    answered: int
    abandoned: int
    sl_numerator: float
    sl_denominator: float
    answer_wait_sum: float
    waiting: int
    oldest_wait_s: float
    agents: dict[str, int] = field(default_factory=dict)
    decisions: int = 0
    interval_latency_p50_ms: float | None = None
    interval_latency_p90_ms: float | None = None
    interval_latency_p99_ms: float | None = None
    # The decisions' latencies themselves, for percentiles over longer stretches (not in the CSV).
    interval_latencies_ms: tuple[float, ...] = field(default=(), repr=False)

    @property
    def service_level(self) -> float | None:
        return self.sl_numerator / self.sl_denominator if self.sl_denominator else None

    @property
    def asa_seconds(self) -> float | None:
        return self.answer_wait_sum / self.answered if self.answered else None


def window_figures(earlier: Sample, later: Sample) -> tuple[float | None, float | None]:
    """(service level, ASA) of the calls counted between two samples."""
    denominator = later.sl_denominator - earlier.sl_denominator
    answered = later.answered - earlier.answered
    sl = (later.sl_numerator - earlier.sl_numerator) / denominator if denominator > 0 else None
    asa = (later.answer_wait_sum - earlier.answer_wait_sum) / answered if answered > 0 else None
    return sl, asa


class Sampler:
    """Takes a ``Sample`` on each ``take()``; keeps them all in ``samples``."""

    def __init__(
        self,
        store: RedisSummaryStore,
        queues: Mapping[str, QueueConfig],
        clock: Clock,
        decision_ms: Sequence[float] = (),
    ) -> None:
        """``decision_ms``: the run's decision latencies as they come (a DecisionTap's list)."""
        self.store = store
        self.decision_ms = decision_ms
        self.queues = dict(queues)
        self.clock = clock
        self.samples: list[Sample] = []
        self._latencies_seen = 0
        self._started_real = time.monotonic()
        self._started_sim = clock.now()

    def start(self) -> None:
        """Traffic starts now: times are counted from here."""
        self._started_real = time.monotonic()
        self._started_sim = self.clock.now()

    @property
    def started_sim(self) -> float:
        return self._started_sim

    async def take(self) -> Sample:
        per_queue = {name: await self.store.queue_stats(name) for name in self.queues}
        total = kpi.combine(per_queue.values())
        parts = [
            kpi.service_level_parts(per_queue[n], q.service_level.formula) for n, q in self.queues.items()
        ]
        state = await self.store.state_summary()
        now = self.clock.now()
        fresh = self._new_latencies()
        oldest = min(state.oldest_entered_at.values(), default=None)
        sample = Sample(
            t_real_s=time.monotonic() - self._started_real,
            t_sim_s=now - self._started_sim,
            offered=int(total.get("offered", 0) - total.get("overflow_in", 0) - total.get("transfer_in", 0)),
            answered=int(total.get("answered", 0)),
            abandoned=int(total.get("abandoned", 0)),
            sl_numerator=sum(p[0] for p in parts),
            sl_denominator=sum(p[1] for p in parts),
            answer_wait_sum=total.get("answer_wait_sum", 0.0),
            waiting=sum(state.waiting.values()),
            oldest_wait_s=max(0.0, now - oldest) if oldest else 0.0,
            agents={name: count for name, count in sorted(state.agents.items()) if count},
            decisions=self._latencies_seen,
            interval_latency_p50_ms=percentile(fresh, 50),
            interval_latency_p90_ms=percentile(fresh, 90),
            interval_latency_p99_ms=percentile(fresh, 99),
            interval_latencies_ms=tuple(fresh),
        )
        self.samples.append(sample)
        return sample

    def _new_latencies(self) -> list[float]:
        # The list only grows during a run (one entry per decision): read past what we saw.
        fresh = list(self.decision_ms[self._latencies_seen :])
        self._latencies_seen += len(fresh)
        return fresh


def write_csv(path: Path, samples: Sequence[Sample]) -> None:
    """One row per sample; agents by state as ``agents_<state>`` columns."""
    states = sorted({state for sample in samples for state in sample.agents})
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        names = [
            name for name in Sample.__dataclass_fields__ if name not in ("agents", "interval_latencies_ms")
        ]
        writer.writerow([*names, "service_level", "asa_seconds", *(f"agents_{s}" for s in states)])
        for sample in samples:
            row = asdict(sample)
            writer.writerow(
                [
                    *(_cell(row[name]) for name in names),
                    _cell(sample.service_level),
                    _cell(sample.asa_seconds),
                    *(sample.agents.get(s, 0) for s in states),
                ]
            )


def _cell(value: object) -> object:
    if value is None:
        return ""
    return round(value, 4) if isinstance(value, float) else value
