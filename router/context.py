"""What every part of the routing engine shares, built once and passed as one value."""

from __future__ import annotations

from dataclasses import dataclass

from router.clock import Clock
from router.commands import CommandSink
from router.live_config import LiveConfig
from router.metrics import RoutingMetrics
from router.settings import RoutingSettings


@dataclass(frozen=True, slots=True)
class RoutingContext:
    """The live configuration, the routing settings, the clock, where commands go, metrics."""

    config: LiveConfig
    settings: RoutingSettings
    clock: Clock
    sink: CommandSink
    metrics: RoutingMetrics
    # Quality sampling's seed (settings.qa.seed_for(site)): the same seed draws the same calls.
    qa_seed: str = ""
