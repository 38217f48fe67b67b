"""The record relay: the site's outbox in Redis to the records topics in Kafka.

Every routing worker runs one (docs/records.md). The scripts that make transitions append
their records to the outbox; the relay reads batches of them through the ``relay``
consumer group, produces each as an envelope, waits until the broker has acknowledged all
of them, and only then acknowledges (and deletes) the entries. So a record is published
at least once, never lost:

- the broker or Redis unreachable: the batch is held and tried again with backoff (a batch
  already published is not produced again, only acknowledged);
- a relay killed between producing and acknowledging: its entries stay pending in the
  group, and another relay claims them once they have been idle ``claim_idle_s``
  (XAUTOCLAIM) and publishes them again, with the same ``record_id``;
- an entry that is no record (a bug) goes to the dead-letter topic rather than blocking
  the ones behind it;
- a broker that was unreachable may come back without what it had acknowledged (Tansu
  keeps its data in memory; a Kafka that lost a disk), and a producer that retried into it
  before its topics were recreated may have lost writes: ``watch_broker`` notices the
  outage, and once the broker is back with the records topics the relay publishes again
  what it published in the last RECENT_S (the recorder keeps a record once).

It adds nothing to the routing path: the records are written by the scripts the events
run anyway, and the relay reads them in batches of up to ``batch`` entries.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence

from router.bus import KafkaEnvelopeProducer, KafkaLink, Topics, ensure_topics
from router.envelope import Envelope
from router.errors import AcdError, MalformedEventError
from router.metrics import RelayMetrics
from router.records import CALL, outbox_envelope
from router.settings import KafkaSettings
from router.store.outbox import OutboxEntry, RedisOutboxStore
from workers.runtime import wait_or_stop

logger = logging.getLogger(__name__)

BLOCK_MS = 100  # how long a read waits for new entries (real milliseconds)
BACKLOG_EVERY_S = 1.0
BACKOFF_MIN_S, BACKOFF_MAX_S = 0.1, 5.0
DRAIN_BATCHES = 20  # at stop: what is in the outbox now, at most this many batches
RECENT_S = 30.0  # real seconds of published records kept, in case the broker loses them
BROKER_PROBE_S = 0.25  # how often the relay checks that the broker is reachable


class RecordRelay:
    """Publishes a site's outbox; see the module docstring."""

    def __init__(
        self,
        outbox: RedisOutboxStore,
        producer: KafkaEnvelopeProducer,
        topics: Topics,
        metrics: RelayMetrics,
        *,
        site: str,
        consumer: str,
        batch: int = 500,
        claim_idle_s: float = 30.0,
    ) -> None:
        self.outbox = outbox
        self.producer = producer
        self.topics = topics
        self.metrics = metrics
        self.site = site
        self.consumer = consumer
        self.batch = batch
        self.claim_idle_s = claim_idle_s
        self.claim_every_s = max(0.05, claim_idle_s / 4)
        self.source = f"router:{site}"
        self._held: list[OutboxEntry] = []  # read, not acknowledged yet
        self._published = False  # ... and already acknowledged by the broker
        self._group_ready = False
        self._next_claim = 0.0
        self._next_backlog = 0.0
        self._backlog = 0  # as last shown
        self._recent: deque[tuple[float, OutboxEntry]] = deque()  # published, with when
        self._republish: list[OutboxEntry] = []  # after an outage: published again first

    async def run(
        self, stop: asyncio.Event, *, before_drain: Callable[[], Awaitable[object]] | None = None
    ) -> None:
        """Until ``stop``; then (once ``before_drain`` returns: the process's last transitions
        are made) what the outbox holds is published, as far as it goes."""
        delay = BACKOFF_MIN_S
        while not stop.is_set():
            try:
                await self.step(BLOCK_MS)
            except AcdError as exc:
                if not exc.retriable:
                    raise
                logger.warning("record relay: %s; trying again in %.1fs", exc, delay)
                if await wait_or_stop(stop, delay):
                    break
                delay = min(delay * 2, BACKOFF_MAX_S)
            else:
                delay = BACKOFF_MIN_S
        if before_drain is not None:
            await before_drain()
        await self._drain()

    async def step(self, block_ms: int | None = None) -> int:
        """One batch: the one held from a failed attempt, else entries claimed from a dead
        relay, else new ones (waiting up to ``block_ms``; None: not at all). Returns its size."""
        if not self._group_ready:
            await self.outbox.ensure_group()
            self._group_ready = True
        if self._republish:
            await self._publish(self._republish)
            logger.warning(
                "record relay: published %d recent records again after a broker outage", len(self._republish)
            )
            self._republish = []
        if not self._held:
            self._held = await self._claim_due() or await self.outbox.read(
                self.consumer, self.batch, block_ms
            )
            self._published = False
        handled = len(self._held)
        if self._held:
            if not self._published:
                await self._publish(self._held)
                self._published = True
                self._remember(self._held)
            await self.outbox.ack([entry.entry_id for entry in self._held])
            self._held = []
        await self._report_backlog(handled)
        return handled

    def _remember(self, entries: Sequence[OutboxEntry]) -> None:
        now = time.monotonic()
        self._recent.extend((now, entry) for entry in entries)
        while self._recent and now - self._recent[0][0] > RECENT_S:
            self._recent.popleft()

    async def watch_broker(self, stop: asyncio.Event) -> None:
        """Probe the broker; after an outage, once the records topics are there again, have
        ``step`` publish the recent records again (see the module docstring)."""
        settings = self.producer.settings
        link = KafkaLink(settings, every_s=BROKER_PROBE_S)
        try:
            while not await wait_or_stop(stop, BROKER_PROBE_S):
                if await link.check():
                    continue
                logger.warning(
                    "record relay: the broker does not answer; recent records go again once it does"
                )
                while not await wait_or_stop(stop, BROKER_PROBE_S):
                    if await link.check():
                        break
                if stop.is_set():
                    return
                await self._topics_back(stop, settings)
                self._republish = [entry for _, entry in self._recent]
        finally:
            link.close()

    async def _topics_back(self, stop: asyncio.Event, settings: KafkaSettings) -> None:
        """The records topics exist again (made here if no other process made them yet), and
        the producer's view of them is fresh (``metadata_max_age_ms``)."""
        while not stop.is_set():
            try:
                await ensure_topics(settings, [self.topics.call_records, self.topics.agent_records])
                break
            except AcdError as exc:
                if not exc.retriable:
                    raise
                await wait_or_stop(stop, BROKER_PROBE_S)
        await wait_or_stop(stop, settings.metadata_max_age_ms / 1000)

    async def _drain(self) -> None:
        try:
            for _ in range(DRAIN_BATCHES):
                if not await self.step(None):
                    await self.outbox.leave(self.consumer)
                    return
        except AcdError as exc:
            if not exc.retriable:
                raise
            logger.warning(
                "record relay stopped with records unpublished (%s): another relay publishes them", exc
            )

    async def _claim_due(self) -> list[OutboxEntry]:
        now = time.monotonic()
        if now < self._next_claim:
            return []
        self._next_claim = now + self.claim_every_s
        claimed = await self.outbox.claim(self.consumer, int(self.claim_idle_s * 1000), self.batch)
        if claimed:
            self.metrics.claimed.inc(len(claimed))
            logger.warning(
                "record relay: took over %d records another relay read and never published", len(claimed)
            )
        return claimed

    async def _publish(self, entries: Sequence[OutboxEntry]) -> None:
        """Produce every record of the batch; return once the broker has all of them."""
        by_topic: dict[str, list[Envelope]] = {}
        published: Counter[str] = Counter()
        for entry in entries:
            try:
                kind, envelope = outbox_envelope(self.site, entry.entry_id, entry.fields, self.source)
            except MalformedEventError as exc:
                await self._dead_letter(entry, exc)
                continue
            topic = self.topics.call_records if kind == CALL else self.topics.agent_records
            by_topic.setdefault(topic, []).append(envelope)
            published[kind] += 1
        sent: set[asyncio.Future[object]] = set()  # one per batch
        try:
            for topic, envelopes in by_topic.items():
                sent.update(await self.producer.send_many(topic, envelopes))
        except AcdError:
            # What was sent before the refusal settles first (no delivery left unobserved).
            await asyncio.gather(*sent, return_exceptions=True)
            raise
        outcomes = await asyncio.gather(*sent, return_exceptions=True)
        failed = next((outcome for outcome in outcomes if isinstance(outcome, BaseException)), None)
        if failed is not None:
            raise failed
        for kind, count in published.items():
            self.metrics.published.labels(kind).inc(count)

    async def _dead_letter(self, entry: OutboxEntry, exc: MalformedEventError) -> None:
        logger.error("outbox entry %s is no record (%s): dead-lettered", entry.entry_id, exc)
        self.metrics.malformed.inc()
        body = json.dumps({"outbox_entry": entry.entry_id, "fields": entry.fields, "error": str(exc)})
        await self.producer.send_raw(self.topics.dead_letters, body.encode(), f"outbox:{self.site}".encode())

    async def _report_backlog(self, handled: int) -> None:
        """Once a second; and as soon as the relay finds nothing to do while it showed a backlog."""
        now = time.monotonic()
        if now >= self._next_backlog or (not handled and self._backlog):
            self._next_backlog = now + BACKLOG_EVERY_S
            self._backlog = await self.outbox.backlog()
            self.metrics.backlog.set(self._backlog)
