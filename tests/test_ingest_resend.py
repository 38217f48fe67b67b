"""Ingest's resend of what Kafka refused or lost: nothing dropped, nothing out of order,
also when the broker loses more while a resend is in flight, and nothing written while it is gone."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from router.envelope import AMI_EVENT, AMI_RESYNC, Envelope
from router.errors import BrokerUnavailableError
from router.metrics import IngestMetrics
from router.settings import AcdSettings
from workers.ingest import IngestWorker, _Listing, _Snapshot


class ControlledProducer:
    """Records what is sent; each send's outcome is decided by the test."""

    def __init__(self) -> None:
        self.sent: list[tuple[Envelope, asyncio.Future[Any]]] = []
        self.started = True
        self.reachable = True
        self.offset = -1

    async def knows_partitions(self, topic: str) -> bool:
        return True

    async def send(self, topic: str, envelope: Envelope) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.sent.append((envelope, future))
        return future

    async def abandon(self, reason: BaseException) -> None:
        self.started = False
        for _, future in self.sent:
            if not future.done():
                future.set_exception(reason)

    async def restart(self) -> bool:
        self.started = self.reachable
        return self.started

    def settle(self, *, refuse: set[int] = frozenset()) -> None:  # type: ignore[assignment]
        for envelope, future in self.sent:
            if not future.done():
                if envelope.seq in refuse:
                    future.set_exception(RuntimeError("refused"))
                else:
                    self.offset += 1  # one partition: Kafka's acknowledgement names where it went
                    future.set_result(SimpleNamespace(topic="events", partition=0, offset=self.offset))


class HeldLease:
    """The ingest lease, held by this ingest in term 1."""

    token = 1


def active_worker(producer: ControlledProducer) -> IngestWorker:
    worker = IngestWorker(AcdSettings(), producer, None, IngestMetrics(CollectorRegistry()), HeldLease())  # type: ignore[arg-type]
    worker._term = 1
    return worker


def call_event(n: int) -> dict[str, str]:
    return {"Event": "Newstate", "Uniqueid": f"1.{n}", "Linkedid": f"1.{n}"}


async def test_a_loss_noticed_while_a_resend_is_in_flight_drops_nothing() -> None:
    producer = ControlledProducer()
    worker = active_worker(producer)
    await worker._publish(call_event(1), 1.0)  # seq 1, call 1: acknowledged
    producer.settle()
    worker._topics_lost(["acd.ami.events.v1"])  # the broker lost it: held again, call 1 blocked
    await worker._publish(call_event(2), 1.0)  # seq 2, call 2: goes straight out, acknowledged
    producer.settle()
    await worker._publish(call_event(1), 1.0)  # seq 3, call 1: held behind seq 1

    resend = asyncio.create_task(worker._resend_held())
    await asyncio.sleep(0)
    assert [e.seq for e, future in producer.sent if not future.done()] == [1, 3]
    # While that resend is in flight, a refusal makes ingest hold everything recent again
    # (seq 2 included: the broker that refused may have lost it).
    await worker._publish(call_event(4), 1.0)  # seq 4, call 4: refused
    producer.settle(refuse={4})
    async with asyncio.timeout(5):
        while not resend.done():  # from now on the broker takes everything
            await asyncio.sleep(0)
            producer.settle()
        while not await worker._resend_held():
            producer.settle()

    delivered = [e.seq for e, future in producer.sent if not future.exception()]
    assert delivered.count(2) == 2, delivered  # sent, then resent after the refusal
    assert set(delivered) == {1, 2, 3, 4}
    assert not worker._held and not worker._blocked_keys


async def test_while_kafka_is_unreachable_everything_is_held_then_sent_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    producer = ControlledProducer()
    ensured: list[tuple[str, ...]] = []

    async def ensure_topics(settings: object, topics: tuple[str, ...]) -> list[str]:
        ensured.append(topics)
        return []

    monkeypatch.setattr("workers.ingest.ensure_topics", ensure_topics)
    worker = active_worker(producer)

    async def broker_answers() -> bool:  # the probe (KafkaLink) asks the same "broker"
        return producer.reachable

    monkeypatch.setattr(worker.broker, "check", broker_answers)
    await worker._publish(call_event(1), 1.0)  # seq 1: acknowledged
    producer.settle()
    await worker._publish(call_event(2), 1.0)  # seq 2: buffered when Kafka goes away
    producer.reachable = False
    await worker._fence()
    await asyncio.sleep(0)  # the failed send's callback
    await worker._publish(call_event(3), 1.0)  # seq 3, a new call: held too, not sent
    assert [e.seq for e, _ in producer.sent] == [1, 2]

    assert not await worker._resend_held()  # the broker still refuses a producer
    assert [e.seq for e, _ in producer.sent] == [1, 2] and not ensured

    producer.reachable = True
    resend = asyncio.create_task(worker._resend_held())
    async with asyncio.timeout(5):
        while not resend.done():
            await asyncio.sleep(0)
            producer.settle()
    assert resend.result() and ensured  # topics made before anything was written
    await worker._publish(call_event(4), 1.0)  # seq 4: straight out again
    assert [e.seq for e, _ in producer.sent] == [1, 2, 1, 2, 3, 4]  # 1 resent: it may be lost


async def test_a_resend_refused_at_once_keeps_everything_held_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A send can fail before it is queued (no topic metadata within the request timeout,
    as with a broker that stopped answering): the resend reports failure and tries again
    later; ingest does not stop."""
    producer = ControlledProducer()
    worker = active_worker(producer)
    for n in (1, 2, 3):
        await worker._publish(call_event(n), 1.0)
    producer.settle(refuse={1, 2, 3})  # Kafka refused them: held
    await asyncio.sleep(0)
    sends = producer.send

    async def refuse_the_second(topic: str, envelope: Envelope) -> asyncio.Future[Any]:
        if envelope.seq == 2:
            raise BrokerUnavailableError("test: no metadata in time")
        return await sends(topic, envelope)

    monkeypatch.setattr(producer, "send", refuse_the_second)
    resend = asyncio.create_task(worker._resend_held())
    async with asyncio.timeout(5):
        while not resend.done():
            await asyncio.sleep(0)
            producer.settle()
    assert resend.result() is False
    assert [e.seq for e in worker._held] == [2, 3]  # 1 went out; 2 and what follows wait, in order

    monkeypatch.setattr(producer, "send", sends)
    resend = asyncio.create_task(worker._resend_held())
    async with asyncio.timeout(5):
        while not resend.done():
            await asyncio.sleep(0)
            producer.settle()
    assert resend.result() and not worker._held


async def listing_after(worker: IngestWorker, producer: ControlledProducer, *, refuse: set[int]) -> None:
    """The snapshot is listed; Kafka answers (refusing ``refuse``); the marker, queued once
    it has answered for everything before it, goes out as the pump would send it."""
    await worker._publish_snapshot(_Snapshot([], ["1.2"], 2.0, {}))
    assert worker._inbox.empty()  # not before Kafka's answers
    producer.settle(refuse=refuse)
    async with asyncio.timeout(5):
        marker = await worker._inbox.get()
    assert isinstance(marker, _Listing)
    await worker._publish_listing(marker)


async def test_a_resync_listing_is_marked_with_where_everything_before_it_landed() -> None:
    """router.catchup: the marker names, per partition, one past the last envelope Kafka
    acknowledged before it, once Kafka has answered for all of them."""
    producer = ControlledProducer()
    worker = active_worker(producer)
    for n in range(3):
        await worker._publish(call_event(n), 1.0)
    await listing_after(worker, producer, refuse=set())
    resync = producer.sent[-1][0]
    assert resync.type == AMI_RESYNC and resync.data["marks"] == {"events:0": 3}


async def test_a_resync_listing_waits_for_what_kafka_refused_before_it() -> None:
    producer = ControlledProducer()
    worker = active_worker(producer)
    for n in range(3):
        await worker._publish(call_event(n), 1.0)
    await listing_after(worker, producer, refuse={2})
    assert [e.type for e, _ in producer.sent] == [AMI_EVENT] * 3  # no marker yet
    assert worker._held and worker._needs_resync.is_set()  # resent first, then listed again


async def test_events_keep_flowing_while_a_listing_waits_for_kafka() -> None:
    producer = ControlledProducer()
    worker = active_worker(producer)
    await worker._publish(call_event(1), 1.0)
    await worker._publish_snapshot(_Snapshot([], [], 2.0, {}))
    await worker._publish(call_event(2), 3.0)  # Kafka has answered for nothing yet
    assert [e.seq for e, _ in producer.sent] == [1, 2]
