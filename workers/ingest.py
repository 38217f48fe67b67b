"""Ingest: every AMI message becomes a versioned envelope on the AMI events topic.

Keyed by call (Linkedid) or agent device, so each call's and agent's events stay in order
on one partition. After every (re)connect, and after Kafka refused envelopes, it lists
every live channel (CoreShowChannels) and roster member (QueueStatus) and publishes the
listing plus a resync marker, so that routing workers learn what happened during a gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from panoramisk.message import Message
from prometheus_client import CollectorRegistry

from router.ami.gateway import AmiGateway
from router.ami.translate import AmiFields, partition_key
from router.bus import KafkaEnvelopeProducer, Topics, ensure_topics
from router.clock import Clock
from router.envelope import AMI_EVENT, AMI_RESYNC, Envelope
from router.errors import AmiError
from router.metrics import IngestMetrics
from router.settings import AcdSettings
from workers.runtime import ProcessEndpoints, run_until_stopped, wait_or_stop

logger = logging.getLogger(__name__)

LIST_EVENTS_TO_SKIP = frozenset({"coreshowchannelscomplete", "queuestatuscomplete"})


@dataclass(frozen=True)
class _Snapshot:
    """A resync listing, queued behind the live events that arrived before it completed."""

    items: list[dict[str, Any]]
    live_call_ids: list[str]
    taken_at: float


def message_fields(message: Message) -> dict[str, Any]:
    """AMI headers as a JSON-able dict (repeated headers stay lists)."""
    return {key: value for key, value in message.items() if not (key == "content" and not value)}


class IngestWorker:
    """AMI -> Kafka for one Asterisk."""

    def __init__(
        self,
        settings: AcdSettings,
        producer: KafkaEnvelopeProducer,
        clock: Clock,
        metrics: IngestMetrics,
    ) -> None:
        self.topics = Topics(settings.kafka.topic_prefix)
        self.producer = producer
        self.clock = clock
        self.metrics = metrics
        self.source = f"ami://{settings.ami.host}:{settings.ami.port}"
        self._session = uuid.uuid4().hex[:12]
        self._seq = 0
        self._inbox: asyncio.Queue[Message | _Snapshot] = asyncio.Queue()
        self._hung_up_since_resync: set[str] = set()
        self._needs_resync = asyncio.Event()
        self.gateway = AmiGateway(settings.ami, on_message=self._inbox.put_nowait)
        metrics.connected.set_function(lambda: float(self.gateway.connected))

    async def run(self, stop: asyncio.Event) -> None:
        await run_until_stopped(
            stop,
            draining=[self._pump(stop)],
            background=[self.gateway.run(on_connected=self._resync), self._resync_when_needed(stop)],
        )

    async def _pump(self, stop: asyncio.Event) -> None:
        """Publish inbox items in arrival order; on stop, publish what is queued, then return."""
        while not (stop.is_set() and self._inbox.empty()):
            try:
                item = await asyncio.wait_for(self._inbox.get(), 0.2)
            except TimeoutError:
                continue
            if isinstance(item, _Snapshot):
                await self._publish_snapshot(item)
            else:
                self.metrics.events.inc()
                await self._publish(message_fields(item), self.clock.now())
        await self.producer.flush()

    def _envelope(self, fields: dict[str, Any], at: float, *, kind: str = AMI_EVENT) -> Envelope:
        self._seq += 1
        return Envelope(
            type=kind,
            id=f"{self._session}-{self._seq}",
            source=self.source,
            ts=at,
            key=partition_key(fields) if kind == AMI_EVENT else "ami:resync",
            data=fields,
        )

    async def _publish(self, fields: dict[str, Any], at: float, *, kind: str = AMI_EVENT) -> None:
        if kind == AMI_EVENT:
            self._remember_hangup(fields)
        envelope = self._envelope(fields, at, kind=kind)
        future = await self.producer.send(self.topics.ami_events, envelope)
        future.add_done_callback(self._delivered)

    def _remember_hangup(self, fields: dict[str, Any]) -> None:
        ami = AmiFields(fields)
        if ami.get("Event").lower() == "hangup":
            self._hung_up_since_resync.add(ami.get("Uniqueid"))

    def _delivered(self, future: asyncio.Future[Any]) -> None:
        if future.cancelled() or future.exception() is not None:
            self.metrics.produce_errors.inc()
            if not self._needs_resync.is_set():
                logger.error("Kafka did not take an AMI envelope (%s): will resync", future.exception())
            self._needs_resync.set()
        else:
            self.metrics.produced.inc()

    async def _resync(self) -> None:
        """After (re)connect: list live channels and roster members, queue them as a snapshot."""
        if self.gateway.connects > 1:
            self.metrics.reconnects.inc()
        self._hung_up_since_resync.clear()
        taken_at = self.clock.now()
        try:
            channels = await self.gateway.send_action({"Action": "CoreShowChannels"})
            members = await self.gateway.send_action({"Action": "QueueStatus"})
        except AmiError as exc:
            logger.error("resync failed (%s); it will be retried", exc)
            self._needs_resync.set()
            return
        items = [message_fields(m) for m in _list_events(channels) + _list_events(members)]
        live = [
            AmiFields(i).get("Uniqueid")
            for i in items
            if AmiFields(i).get("Event").lower() == "coreshowchannel"
        ]
        self._inbox.put_nowait(_Snapshot(items, live, taken_at))

    async def _publish_snapshot(self, snapshot: _Snapshot) -> None:
        for fields in snapshot.items:
            # A caller that hung up while the listing was being read must not come back.
            if AmiFields(fields).get("Uniqueid") in self._hung_up_since_resync:
                continue
            fields["Resync"] = "1"
            await self._publish(fields, snapshot.taken_at)
        live = sorted(set(snapshot.live_call_ids) - self._hung_up_since_resync)
        await self._publish({"live_call_ids": live}, snapshot.taken_at, kind=AMI_RESYNC)
        self.metrics.resyncs.inc()
        logger.info("resync published: %d channels live, %d listed items", len(live), len(snapshot.items))

    async def _resync_when_needed(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self._needs_resync.wait()
            self._needs_resync.clear()
            while not self.gateway.connected:
                if await wait_or_stop(stop, 0.5):
                    return
            await wait_or_stop(stop, 1.0)  # let a recovering broker settle
            await self._resync()


def _list_events(response: Any) -> list[Message]:
    messages: Iterable[Message] = response if isinstance(response, list) else [response]
    return [
        m for m in messages if "event" in m and str(m.get("Event", "")).lower() not in LIST_EVENTS_TO_SKIP
    ]


async def run_ingest(settings: AcdSettings, clock: Clock, stop: asyncio.Event) -> None:
    """The `acd ingest` process."""
    registry = CollectorRegistry()
    metrics = IngestMetrics(registry)
    await ensure_topics(settings.kafka, Topics(settings.kafka.topic_prefix).all())
    producer = KafkaEnvelopeProducer(settings.kafka)
    await producer.start()
    worker = IngestWorker(settings, producer, clock, metrics)
    endpoints = ProcessEndpoints(settings.http, registry, ready=lambda: worker.gateway.connected)
    await endpoints.start()
    try:
        await worker.run(stop)
    finally:
        await endpoints.stop()
        with contextlib.suppress(Exception):
            await worker.gateway.close()
        await producer.stop()
