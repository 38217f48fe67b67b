"""The routing worker's command sink (workers/routing.py): commands made side by side go to
Kafka together, each in order for its key; ``flush`` returns once the broker has them all, and
reports a refusal."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from prometheus_client import CollectorRegistry

from router.bus import KafkaEnvelopeProducer, KafkaGroupReader, Topics, ensure_topics
from router.commands import OfferCommand, OverflowCommand, PauseCommand
from router.envelope import ROUTING_OFFER, ROUTING_OVERFLOW, ROUTING_PAUSE, Envelope, decode
from router.errors import BrokerUnavailableError
from router.metrics import RoutingMetrics
from router.settings import KafkaSettings
from workers.routing import KafkaCommandSink

T0 = 1_800_000_000.0


def offer(call: int, agent: int) -> OfferCommand:
    return OfferCommand(
        f"o{call}-{agent}", f"c{call}", f"Local/c{call}", f"a{agent}", f"Local/a{agent}", "agents", "s", "q", T0
    )


async def test_commands_made_side_by_side_all_reach_kafka_in_order_per_key(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    settings = KafkaSettings(bootstrap_servers=kafka_bootstrap, topic_prefix=topic_prefix, partitions=3)
    topics = Topics(topic_prefix)
    await ensure_topics(settings, [topics.routing_commands])
    producer = KafkaEnvelopeProducer(settings)
    await producer.start()
    registry = CollectorRegistry()
    metrics = RoutingMetrics(registry)
    sink = KafkaCommandSink(producer, topics, metrics, "router:test")
    try:

        async def handler(call: int) -> None:  # one call's commands (one key), in order
            for agent in range(5):
                await sink.offer(offer(call, agent), asyncio.get_running_loop().time())
                await asyncio.sleep(0)
            await sink.overflow(OverflowCommand(f"c{call}", f"Local/c{call}", "q", "out", "s", "1", T0))
            await sink.pause(PauseCommand(f"a{call}", f"Local/a{call}", "rna", T0))

        await asyncio.gather(*(handler(call) for call in range(8)))
        await sink.flush()
    finally:
        await producer.stop()
    assert registry.get_sample_value("acd_routing_command_acked_seconds_count") == 40

    reader = KafkaGroupReader(settings, [topics.routing_commands], f"{topic_prefix}-sink")
    await reader.start()
    got: list[Envelope] = []
    try:
        async with asyncio.timeout(20):
            while len(got) < 56:
                got += [decode(message.value) for message in await reader.read(timeout_ms=200)]
    finally:
        await reader.stop()
    assert sum(e.type == ROUTING_PAUSE for e in got) == 8
    for call in range(8):
        mine = [e for e in got if e.key == f"call:c{call}"]
        assert [e.id if e.type == ROUTING_OFFER else e.type for e in mine] == [
            *(f"o{call}-{agent}" for agent in range(5)),
            ROUTING_OVERFLOW,
        ]


class RefusingProducer:
    """A broker that refuses the first batch of commands, then takes everything."""

    def __init__(self) -> None:
        self.refusals = 1
        self.sent: list[Envelope] = []

    async def send_many(self, topic: str, envelopes: Sequence[Envelope]) -> list[asyncio.Future[object]]:
        if self.refusals:
            self.refusals -= 1
            raise BrokerUnavailableError("Kafka unavailable (test)")
        self.sent += envelopes
        done: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return [done] * len(envelopes)


async def test_a_refused_batch_is_reported_by_the_next_flush_once() -> None:
    producer = RefusingProducer()
    sink = KafkaCommandSink(producer, Topics("t"), RoutingMetrics(CollectorRegistry()), "router:test")  # type: ignore[arg-type]
    await sink.offer(offer(1, 1), 0.0)  # the handler goes on: the event stays applied
    with pytest.raises(BrokerUnavailableError):
        await sink.flush()
    await sink.offer(offer(2, 1), 0.0)
    await sink.flush()
    assert [e.data["call_id"] for e in producer.sent] == ["c2"]
