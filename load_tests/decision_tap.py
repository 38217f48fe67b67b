"""Routing-loop latencies for the lab's reports, measured without touching the routing loop.

- ``DecisionTap`` reads the routing commands the way the dispatcher does, in its own
  consumer group, and keeps each offer's ``decision_ms`` (the worker's time from reading the
  event to handing the command to Kafka, carried in the offer itself).
- ``histogram_buckets`` / ``histogram_quantile`` read a latency histogram the processes
  already keep (e.g. ``acd_routing_command_acked_seconds``) and interpolate a quantile
  within its buckets, as PromQL's histogram_quantile does.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from aiokafka.errors import KafkaError

from load_tests.children import scrape_samples
from router.bus import KafkaGroupReader, Topics
from router.envelope import ROUTING_OFFER, decode
from router.errors import MalformedEventError
from router.settings import KafkaSettings

logger = logging.getLogger(__name__)

ACKED_HISTOGRAM = "acd_routing_command_acked_seconds"


class DecisionTap:
    """Every offer's decision latency, in the order the offers were read."""

    def __init__(self, kafka: KafkaSettings, topics: Topics) -> None:
        self.reader = KafkaGroupReader(kafka, [topics.routing_commands], f"decision-tap-{uuid.uuid4().hex[:8]}")
        self.decision_ms: list[float] = []

    async def run(self, stop: asyncio.Event) -> None:
        await self.reader.start()
        try:
            while not stop.is_set():
                await self._read_once()
        finally:
            await self.reader.stop()

    async def _read_once(self) -> None:
        try:
            batch = await self.reader.read(timeout_ms=100)
        except KafkaError as exc:  # a broker restarting (chaos): read again
            logger.debug("decision tap: %s", exc)
            await asyncio.sleep(0.2)
            return
        for message in batch:
            try:
                envelope = decode(message.value)
            except MalformedEventError:
                continue
            if envelope.type == ROUTING_OFFER and "decision_ms" in envelope.data:
                self.decision_ms.append(float(envelope.data["decision_ms"]))

    async def caught_up(self, within_s: float = 10.0) -> bool:
        """Wait until every command produced so far has been read (False on time-out)."""
        deadline = asyncio.get_running_loop().time() + within_s
        while asyncio.get_running_loop().time() < deadline:
            try:
                if sum((await self.reader.lag()).values()) == 0:
                    return True
            except KafkaError:
                pass
            await asyncio.sleep(0.05)
        return False


async def histogram_buckets(ports: dict[str, int], name: str) -> dict[float, float]:
    """A histogram's cumulative bucket counts (le -> count), summed over processes."""
    buckets: dict[float, float] = {}
    for sample in await scrape_samples(ports):
        if sample.name == f"{name}_bucket":
            le = float(sample.labels["le"])
            buckets[le] = buckets.get(le, 0.0) + sample.value
    return buckets


def bucket_delta(before: dict[float, float], after: dict[float, float]) -> dict[float, float]:
    return {le: count - before.get(le, 0.0) for le, count in after.items()}


def histogram_quantile(buckets: dict[float, float], q: float) -> float | None:
    """Milliseconds at quantile ``q`` of cumulative buckets (in seconds), interpolated within
    the bucket; None without observations."""
    ordered = sorted(buckets.items())
    total = ordered[-1][1] if ordered else 0.0
    if total <= 0:
        return None
    rank, lower, below = q * total, 0.0, 0.0
    for le, count in ordered:
        if count >= rank:
            if le == float("inf"):
                return round(lower * 1000, 3)
            share = (rank - below) / (count - below) if count > below else 1.0
            return round((lower + (le - lower) * share) * 1000, 3)
        lower, below = le, count
    return round(lower * 1000, 3)
