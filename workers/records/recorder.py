"""`acd record`: call and agent-state records from Kafka into PostgreSQL.

A consumer group of its own (``<kafka.consumer_group>-recorder``) reads both records
topics. Each poll's batch is written in one transaction, and its offsets are committed
only once that transaction has committed: a crash or a stop re-reads, never skips, and
the writes are idempotent (store.py), so a batch written twice changes nothing. While
PostgreSQL is unavailable the batch in hand is retried with back-off, nothing is committed
and /ready says so; once PostgreSQL answers again the recorder catches up. A message that
is not a valid record is logged and counted, and skipped: it never stops its partition.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from router.bus import Consumed, KafkaGroupReader, ensure_topics
from router.envelope import decode
from router.errors import AcdError, MalformedEventError, RecordRejectedError
from router.postgres import Pool, dsn_target
from router.records import Record
from router.settings import AcdSettings, PostgresSettings
from workers.lifecycle import Component, ProcessContext, process_main
from workers.records.metrics import RecorderMetrics
from workers.records.migrate import check_schema
from workers.records.parse import parse_record, records_topics
from workers.records.store import PostgresRecordStore, Written
from workers.runtime import wait_or_stop

logger = logging.getLogger(__name__)

RETRY_MIN_S = 0.2
LAG_EVERY_S = 1.0
GROUP_SUFFIX = "-recorder"


def recorder_group(settings: AcdSettings) -> str:
    return settings.kafka.consumer_group + GROUP_SUFFIX


class Recorder:
    """Reads record batches, writes each in one transaction, then commits its offsets."""

    def __init__(
        self,
        *,
        reader: KafkaGroupReader,
        store: PostgresRecordStore,
        metrics: RecorderMetrics,
        settings: PostgresSettings,
        topics: tuple[str, ...],
    ) -> None:
        self.reader = reader
        self.store = store
        self.metrics = metrics
        self.settings = settings
        self.topics = topics

    def component(self) -> Component:
        """Consume drains at stop (the batch in hand is written and committed); the lag gauge stops."""
        return Component(draining=[self.consume], background=[self.report_lag])

    async def consume(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            batch = await self._read(stop)
            if batch and await self.write_until_done(self.parse(batch), stop):
                await self.reader.commit(batch)

    async def _read(self, stop: asyncio.Event) -> list[Consumed]:
        try:
            return await self.reader.read(timeout_ms=200)
        except AcdError as exc:  # a broker restarting, a rebalance: wait and read again
            if not exc.retriable:
                raise
            logger.warning("reading records from Kafka failed (%s); retrying", exc)
            await wait_or_stop(stop, 0.5)
            return []

    def parse(self, batch: Sequence[Consumed]) -> list[tuple[Consumed, Record]]:
        """The batch's records; what is not a valid record is logged, counted and left out."""
        parsed = []
        for message in batch:
            try:
                parsed.append((message, parse_record(decode(message.value))))
            except MalformedEventError as exc:
                self.metrics.malformed.labels(message.topic, "malformed").inc()
                logger.error("skipping %s@%s: not a valid record: %s", message.part, message.offset, exc)
        return parsed

    async def write_until_done(self, parsed: Sequence[tuple[Consumed, Record]], stop: asyncio.Event) -> bool:
        """Write the records; while PostgreSQL is unavailable, retry with back-off. False
        when ``stop`` came first: nothing may be committed then."""
        delay = RETRY_MIN_S
        while True:
            try:
                await self._write(parsed)
                return True
            except AcdError as exc:
                if not exc.retriable:
                    raise
                self.metrics.retries.inc()
                logger.warning("records not written, PostgreSQL unavailable (%s); retrying in %.1fs", exc, delay)
            if await wait_or_stop(stop, delay):
                logger.warning("stopping with %d records not written: their offsets stay uncommitted", len(parsed))
                return False
            delay = min(delay * 2, self.settings.retry_max_s)

    async def _write(self, parsed: Sequence[tuple[Consumed, Record]]) -> None:
        records = [record for _, record in parsed]
        if not records:
            return
        started = time.monotonic()
        try:
            written = await self.store.write(records)
        except RecordRejectedError as exc:
            logger.warning("PostgreSQL rejected the batch (%s): writing its records one by one", exc)
            written = await self.store.write_each(records)
        self.metrics.batch_seconds.observe(time.monotonic() - started)
        self._count(written, parsed)

    def _count(self, written: Written, parsed: Sequence[tuple[Consumed, Record]]) -> None:
        for kind, count in written.written.items():
            self.metrics.written.labels(kind).inc(count)
        for kind, count in written.unchanged.items():
            self.metrics.unchanged.labels(kind).inc(count)
        messages = {id(record): message for message, record in parsed}
        for record, exc in written.rejected:
            message = messages[id(record)]
            self.metrics.malformed.labels(message.topic, "rejected").inc()
            logger.error("skipping %s@%s: PostgreSQL rejected the record: %s", message.part, message.offset, exc)

    async def report_lag(self, stop: asyncio.Event) -> None:
        """Keep the consumer-lag gauge current (a topic with no partition assigned reads 0)."""
        while True:
            try:
                lag = await self.reader.lag()
            except AcdError as exc:
                if not exc.retriable:
                    raise
                logger.debug("consumer lag not read: %s", exc)
            else:
                for topic in self.topics:
                    self.metrics.lag.labels(topic).set(lag.get(topic, 0))
            if await wait_or_stop(stop, LAG_EVERY_S):
                return


async def open_recorder(ctx: ProcessContext) -> Component:
    """PostgreSQL (its schema at this installation's revision), the topics, then the
    consumer group; ready while PostgreSQL answers, the broker answers and the group has
    given the partitions."""
    settings = ctx.settings
    topics = records_topics(settings.kafka.topic_prefix)
    metrics = RecorderMetrics(ctx.registry, topics)
    pool: Pool = await ctx.postgres()
    where = dsn_target(settings.postgres.require_dsn())
    await check_schema(pool, where)
    metrics.postgres_up.set_function(lambda: float(ctx.probe("postgres")()))
    await ensure_topics(settings.kafka, topics)
    reader = KafkaGroupReader(settings.kafka, topics, recorder_group(settings))
    await ctx.open(reader.start, reader.stop)
    broker = ctx.kafka(reader)
    ctx.link("kafka", lambda: reader.assigned and broker.ready)
    recorder = Recorder(
        reader=reader,
        store=PostgresRecordStore(pool, where),
        metrics=metrics,
        settings=settings.postgres,
        topics=topics,
    )
    return recorder.component()


run_recorder = process_main("record", open_recorder)
