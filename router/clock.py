"""Simulated-time clocks: one notion of "now" shared by every process of a deployment.

Production runs at ``time_scale`` 1 (wall-clock seconds). Scenarios and demos compress
time: at ``time_scale`` 10, ten simulated seconds pass per real second, so a 3-minute
handle time lasts 18 real seconds. All processes of one run share ``epoch`` so their
readings agree; every timestamp, wait time and metric is in simulated seconds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol


class Clock(Protocol):
    """Source of simulated time in seconds since the Unix epoch."""

    @property
    def time_scale(self) -> float: ...

    def now(self) -> float: ...

    def real_seconds(self, simulated_seconds: float) -> float: ...


@dataclass(frozen=True)
class ScaledClock:
    """Wall clock sped up by ``time_scale`` from ``epoch`` on (both in Unix seconds)."""

    time_scale: float = 1.0
    epoch: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        if not self.time_scale > 0:
            raise ValueError(f"time_scale must be > 0, got {self.time_scale!r}")

    def now(self) -> float:
        return self.epoch + (time.time() - self.epoch) * self.time_scale

    def real_seconds(self, simulated_seconds: float) -> float:
        """How long ``simulated_seconds`` last in real time (for sleeps and timeouts)."""
        return simulated_seconds / self.time_scale


WALL_CLOCK = ScaledClock(time_scale=1.0, epoch=0.0)
