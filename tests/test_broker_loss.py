"""A broker that restarts empty must not receive what the producer buffered while it was down.

aiokafka retries buffered batches into whichever broker answers next. Tansu acknowledges
writes to topics it does not have yet and later serves them interleaved with the recreated
topic's records, so that envelopes written after the topic was recreated are never read
(this lost calls in `acd chaos`, fault broker_restarted). ``KafkaEnvelopeProducer.abandon``
fails the buffered sends instead; ingest holds and resends them once the topics exist.
"""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from load_tests.embedded import EmbeddedKafka
from router.bus import (
    KafkaEnvelopeProducer,
    Topics,
    bootstrap_addresses,
    broker_answers,
    client_options,
    ensure_topics,
)
from router.envelope import AMI_EVENT, Envelope, decode
from router.errors import BrokerUnavailableError
from router.settings import KafkaSettings

pytestmark = pytest.mark.kafka


def envelope(i: int) -> Envelope:
    return Envelope(type=AMI_EVENT, id=f"e{i}", source="test", ts=float(i), key="call:1", data={"n": i})


async def read_all(settings: KafkaSettings, topic: str) -> list[int]:
    """Every envelope's number in every partition of ``topic``, from the beginning."""
    consumer = AIOKafkaConsumer(**client_options(settings), enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(settings.partitions)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        numbers: list[int] = []
        for _ in range(5):  # a few fetches: the partitions are tiny
            for messages in (await consumer.getmany(timeout_ms=300)).values():
                numbers.extend(decode(m.value).data["n"] for m in messages)
        return numbers
    finally:
        await consumer.stop()


async def test_abandoned_sends_fail_and_never_reach_the_broker_that_comes_back() -> None:
    async with EmbeddedKafka() as kafka:
        settings = KafkaSettings(bootstrap_servers=kafka.bootstrap_servers, topic_prefix="loss", partitions=2)
        topic = Topics("loss").ami_events
        await ensure_topics(settings, [topic])
        producer = KafkaEnvelopeProducer(settings)
        await producer.start()
        try:
            await producer.send_and_wait(topic, envelope(0))
            await kafka.stop()
            assert not await broker_answers(settings)
            buffered = [await producer.send(topic, envelope(i)) for i in range(1, 6)]

            await producer.abandon(BrokerUnavailableError("test: broker gone"))
            results = await asyncio.gather(*buffered, return_exceptions=True)
            assert all(isinstance(r, BrokerUnavailableError) for r in results), results

            await kafka.start()  # empty
            assert await broker_answers(settings)
            await asyncio.sleep(1.5)  # time enough for aiokafka's retries, had they survived
            assert await producer.restart()
            await ensure_topics(settings, [topic])
            await producer.send_and_wait(topic, envelope(6))
            assert await read_all(settings, topic) == [6]
        finally:
            await producer.stop()


async def test_restart_reports_a_broker_still_down() -> None:
    async with EmbeddedKafka() as kafka:
        settings = KafkaSettings(bootstrap_servers=kafka.bootstrap_servers, request_timeout_s=2)
        producer = KafkaEnvelopeProducer(settings)
        await producer.start()
        await kafka.stop()
        await producer.abandon(BrokerUnavailableError("test"))
        assert not await producer.restart()
        await kafka.start()
        assert await producer.restart()
        await producer.stop()


def test_bootstrap_addresses_default_to_kafkas_port() -> None:
    assert bootstrap_addresses("k1:9093, k2 ,[::1]:9094,::1,") == [
        ("k1", 9093),
        ("k2", 9092),
        ("::1", 9094),
        ("::1", 9092),
    ]
