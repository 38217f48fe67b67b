"""Consumer lag per topic, from a real Kafka-protocol broker: highwater - position."""

from __future__ import annotations

import asyncio

from router.bus import KafkaEnvelopeProducer, KafkaGroupReader, Topics, ensure_topics
from router.envelope import AMI_EVENT, Envelope
from router.settings import KafkaSettings
from tests.polling import eventually


def envelope(i: int) -> Envelope:
    return Envelope(
        type=AMI_EVENT, id=f"e{i}", source="test", ts=float(i), key=f"call:{i % 4}", data={"n": i}
    )


async def lag_becomes(reader: KafkaGroupReader, topic: str, expected: int, within: float = 20.0) -> None:
    async def reached() -> bool:
        return (await reader.lag()).get(topic) == expected

    await eventually(reached, f"lag {expected} on {topic}", within=within)


async def test_lag_counts_what_arrived_but_was_not_read_yet(kafka_bootstrap: str, topic_prefix: str) -> None:
    settings = KafkaSettings(bootstrap_servers=kafka_bootstrap, topic_prefix=topic_prefix, partitions=2)
    topic = Topics(topic_prefix).ami_events
    await ensure_topics(settings, [topic])
    producer = KafkaEnvelopeProducer(settings)
    reader = KafkaGroupReader(settings, [topic], f"{topic_prefix}-lag")
    await producer.start()
    await reader.start()
    try:
        # Until the reader has fetched from a partition it has no highwater: no lag reported.
        got = 0
        async with asyncio.timeout(20):
            while not reader.assignment() or len(await reader.lag()) == 0:
                got += len(await reader.read(timeout_ms=100))
        await lag_becomes(reader, topic, 0)
        for i in range(7):
            await producer.send(topic, envelope(i))
        await producer.flush()
        # The consumer prefetches in the background: highwater moves, the position does not.
        await lag_becomes(reader, topic, 7)
        async with asyncio.timeout(20):
            while got < 7:
                got += len(await reader.read(timeout_ms=100))
        assert (await reader.lag()).get(topic) == 0
    finally:
        await reader.stop()
        await producer.stop()
