"""Envelopes through a real Kafka-protocol broker (Tansu, or ACD_TEST_KAFKA_BOOTSTRAP)."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from aiokafka.consumer import fetcher as aiokafka_fetcher

from load_tests.embedded import free_port
from router.bus import (
    Consumed,
    KafkaEnvelopeProducer,
    KafkaGroupReader,
    Topics,
    ensure_topics,
    idle_fetch_wait_ms,
)
from router.catchup import mark_of
from router.envelope import AMI_EVENT, Envelope, decode
from router.errors import BrokerUnavailableError
from router.settings import KafkaSettings
from tests.polling import eventually

# A new member of a group waits until the broker has expired the member that left before it
# (Tansu: after its session timeout, 6 s by default), so these tests, which stop a reader and start
# another in its group, keep that short; heartbeats stay several times within it.
REJOIN = {"session_timeout_ms": 1000, "heartbeat_interval_ms": 250}


def envelope(i: int, key: str) -> Envelope:
    return Envelope(type=AMI_EVENT, id=f"e{i}", source="test", ts=float(i), key=key, data={"n": i})


async def read_until(reader: KafkaGroupReader, count: int, within: float = 20.0) -> list[Consumed]:
    got: list[Consumed] = []
    async with asyncio.timeout(within):
        while len(got) < count:
            got.extend(await reader.read(timeout_ms=200))
    return got


async def test_keyed_envelopes_arrive_in_order_and_commits_survive_a_restart(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    settings = KafkaSettings(bootstrap_servers=kafka_bootstrap, topic_prefix=topic_prefix, partitions=3, **REJOIN)
    topic = Topics(topic_prefix).ami_events
    await ensure_topics(settings, [topic])
    await ensure_topics(settings, [topic])  # idempotent
    producer = KafkaEnvelopeProducer(settings)
    await producer.start()
    for i in range(30):
        await producer.send(topic, envelope(i, f"call:{i % 3}"))
    await producer.flush()

    reader = KafkaGroupReader(settings, [topic], f"{topic_prefix}-g")
    await reader.start()
    first = await read_until(reader, 30)
    by_key: dict[bytes | None, list[int]] = {}
    for message in first:
        by_key.setdefault(message.key, []).append(decode(message.value).data["n"])
    assert all(numbers == sorted(numbers) for numbers in by_key.values())
    assert len({m.partition for m in first if m.key == b"call:1"}) == 1
    await reader.commit(first[:10] if len(first) >= 10 else first)
    await reader.stop()

    for i in range(30, 35):
        await producer.send(topic, envelope(i, "call:0"))
    await producer.flush()
    await producer.stop()
    reader = KafkaGroupReader(settings, [topic], f"{topic_prefix}-g")
    await reader.start()
    # Not a pause and a last look: every message after the committed offsets comes again
    # (new and uncommitted ones), so read exactly as many, then check none was committed.
    committed_to: dict[int, int] = {}
    for m in first[:10]:
        committed_to[m.partition] = max(committed_to.get(m.partition, 0), m.offset + 1)
    again = await read_until(reader, 35 - sum(committed_to.values()))
    await reader.stop()
    seen = {decode(m.value).data["n"] for m in again}
    assert {30, 31, 32, 33, 34} <= seen  # new ones arrive; uncommitted ones are redelivered
    committed = {(m.partition, m.offset) for m in first[:10]}
    assert not committed & {(m.partition, m.offset) for m in again}


async def test_envelopes_sent_together_go_where_one_by_one_would_in_order(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    """``send_many`` (the record relay's batches): each key on the partition ``send`` picks,
    each key's envelopes in order, batches split when full, one larger than a batch sent alone."""
    settings = KafkaSettings(
        bootstrap_servers=kafka_bootstrap, topic_prefix=topic_prefix, partitions=3, max_batch_bytes=16_384, **REJOIN
    )
    topic = Topics(topic_prefix).ami_events
    await ensure_topics(settings, [topic])
    producer = KafkaEnvelopeProducer(settings)
    await producer.start()
    try:
        keys = [f"call:{k}" for k in range(7)]
        for k, key in enumerate(keys):  # one by one first: where each key goes
            await (await producer.send(topic, envelope(k, key)))
        together = [envelope(100 + i, keys[i % 7]) for i in range(400)]  # about 40 kB: several batches
        big = dataclasses.replace(envelope(999, "call:big"), data={"n": 999, "pad": "x" * 20_000})
        deliveries = await producer.send_many(topic, [*together, big])
        assert len(deliveries) > 3  # one per partition, more where a batch filled
        await asyncio.gather(*deliveries)
    finally:
        await producer.stop()

    reader = KafkaGroupReader(settings, [topic], f"{topic_prefix}-many")
    await reader.start()
    try:
        got = await read_until(reader, 7 + 401)
    finally:
        await reader.stop()
    partitions: dict[bytes | None, set[int]] = {}
    numbers: dict[bytes | None, list[int]] = {}
    for message in got:
        partitions.setdefault(message.key, set()).add(message.partition)
        numbers.setdefault(message.key, []).append(decode(message.value).data["n"])
    assert all(len(found) == 1 for found in partitions.values())  # each key on one partition
    assert len({p for key, (p,) in partitions.items() if key != b"call:big"}) > 1  # keys spread
    assert all(found == sorted(found) for found in numbers.values())
    assert sorted(n for found in numbers.values() for n in found) == [*range(7), *range(100, 500), 999]


async def test_unreachable_broker_is_a_clear_retriable_error() -> None:
    settings = KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}", startup_timeout_s=0.5)
    with pytest.raises(BrokerUnavailableError, match=r"cannot reach Kafka at 127\.0\.0\.1") as caught:
        await ensure_topics(settings, ["x"])
    assert caught.value.retriable


async def one_partition_with(kafka_bootstrap: str, topic_prefix: str, count: int) -> KafkaSettings:
    """A one-partition events topic holding envelopes 0..count-1 of one call."""
    settings = KafkaSettings(bootstrap_servers=kafka_bootstrap, topic_prefix=topic_prefix, partitions=1, **REJOIN)
    topic = Topics(topic_prefix).ami_events
    await ensure_topics(settings, [topic])
    producer = KafkaEnvelopeProducer(settings)
    await producer.start()
    for i in range(count):
        await producer.send(topic, envelope(i, "call:0"))
    await producer.flush()
    await producer.stop()
    return settings


async def group_member(settings: KafkaSettings) -> KafkaGroupReader:
    """A started member of the test's group, reading the events topic."""
    reader = KafkaGroupReader(
        settings, [Topics(settings.topic_prefix).ami_events], f"{settings.topic_prefix}-g"
    )
    await reader.start()
    return reader


async def reread(settings: KafkaSettings, count: int) -> list[int]:
    """What a new member of the group reads (from the committed offsets)."""
    reader = await group_member(settings)
    again = await read_until(reader, count)
    await reader.stop()
    return [decode(m.value).data["n"] for m in again]


async def test_a_commit_stops_before_a_message_not_handled_yet(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    settings = await one_partition_with(kafka_bootstrap, topic_prefix, 10)
    reader = await group_member(settings)
    first = await read_until(reader, 10)
    held_back = first[4]  # e.g. an envelope waiting for its predecessor
    await reader.commit(first, unhandled=[held_back])
    await reader.stop()
    assert await reread(settings, 6) == [4, 5, 6, 7, 8, 9]


async def test_a_rewind_reads_again_from_the_committed_offset_or_the_beginning(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    """After a Redis failover the routing worker reads again what it read since its last
    commit (workers/replica_gate.py): the same member, no rebalance."""
    settings = await one_partition_with(kafka_bootstrap, topic_prefix, 10)
    reader = await group_member(settings)
    try:
        first = await read_until(reader, 10)
        assert await reader.rewind() == 1  # nothing committed yet: from the beginning
        assert [m.offset for m in await read_until(reader, 10)] == [m.offset for m in first]
        await reader.commit(first[:6])
        assert await reader.rewind() == 1
        assert [decode(m.value).data["n"] for m in await read_until(reader, 4)] == [6, 7, 8, 9]
    finally:
        await reader.stop()


async def test_messages_read_before_a_rebalance_are_not_committed(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    settings = await one_partition_with(kafka_bootstrap, topic_prefix, 3)
    reader = await group_member(settings)
    first = await read_until(reader, 3)
    assert {m.generation for m in first} == {reader.generation} and reader.generation >= 1
    # As if a rebalance (after a broker lost its topics) happened since they were read:
    stale = [dataclasses.replace(m, generation=reader.generation - 1) for m in first]
    await reader.commit(stale)
    await reader.stop()
    assert await reread(settings, 3) == [0, 1, 2]


async def test_a_member_tells_which_partitions_the_group_has_not_applied_up_to_marks(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    """router.catchup: a resync listing waits until the group's commits (by any member)
    reach the marks ingest took from Kafka's acknowledgements."""
    settings = KafkaSettings(bootstrap_servers=kafka_bootstrap, topic_prefix=topic_prefix, partitions=2, **REJOIN)
    topic = Topics(topic_prefix).ami_events
    await ensure_topics(settings, [topic])
    producer = KafkaEnvelopeProducer(settings)
    await producer.start()
    delivered = [await producer.send(topic, envelope(i, f"call:{i % 4}")) for i in range(12)]
    await producer.flush()
    await producer.stop()
    marks: dict[str, int] = {}
    for metadata in [await d for d in delivered]:
        mark_of(marks, metadata.topic, metadata.partition, metadata.offset)
    reader = await group_member(settings)
    try:
        read = await read_until(reader, 12)
        by_partition = {p: [m for m in read if m.partition == p] for p in (0, 1)}
        assert marks == {f"{topic}:{p}": len(by_partition[p]) for p in (0, 1)}
        assert await reader.behind(marks) == sorted(marks)
        await reader.commit(by_partition[0])
        assert await reader.behind(marks) == [f"{topic}:1"]
        await reader.commit(by_partition[1][:-1])
        assert await reader.behind(marks) == [f"{topic}:1"]
        await reader.commit(by_partition[1])
        assert await reader.behind(marks) == []
    finally:
        await reader.stop()


def test_a_quiet_consumers_fetch_wait_grows_with_the_quiet_up_to_the_idle_wait() -> None:
    settings = KafkaSettings(fetch_max_wait_ms=10, fetch_idle_wait_ms=500)
    waits = [idle_fetch_wait_ms(settings, quiet_s) for quiet_s in (0.0, 0.05, 1.0, 2.5, 5.0, 60.0)]
    assert waits == [10, 10, 100, 250, 500, 500]
    off = KafkaSettings(fetch_max_wait_ms=10, fetch_idle_wait_ms=0)
    assert idle_fetch_wait_ms(off, 60.0) == 10
    kafka_like = KafkaSettings(fetch_max_wait_ms=500, fetch_idle_wait_ms=100)  # never below the busy wait
    assert idle_fetch_wait_ms(kafka_like, 60.0) == 500


async def test_a_quiet_reader_lets_the_broker_hold_its_fetches_longer_until_a_message_comes(
    kafka_bootstrap: str, topic_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """router.bus reaches into aiokafka's fetcher to change the wait (``_set_fetch_wait``):
    the fetch requests aiokafka builds must carry it, and carry the short wait again once
    messages flow. Fails when an aiokafka upgrade stops reading the attribute per request."""
    asked: list[int] = []

    class SpiedFetchRequest(aiokafka_fetcher.FetchRequest):  # type: ignore[misc,name-defined]
        def __init__(self, max_wait_time: int, *args: object, **kwargs: object) -> None:
            asked.append(max_wait_time)
            super().__init__(max_wait_time, *args, **kwargs)

    monkeypatch.setattr(aiokafka_fetcher, "FetchRequest", SpiedFetchRequest)
    settings = KafkaSettings(
        bootstrap_servers=kafka_bootstrap, topic_prefix=topic_prefix, fetch_max_wait_ms=10, fetch_idle_wait_ms=300
    )
    topic = Topics(topic_prefix).ami_events
    await ensure_topics(settings, [topic])
    reader = await group_member(settings)
    producer = KafkaEnvelopeProducer(settings)
    await producer.start()
    try:
        await eventually(lambda: 10 in asked, "fetches with the busy wait")
        reader._last_read_at -= 60.0  # as if nothing had come for a minute
        assert await reader.read(timeout_ms=50) == []
        asked.clear()
        await eventually(lambda: 300 in asked, "fetches with the idle wait")

        await producer.send(topic, envelope(1, "call:1"))
        await producer.flush()
        assert len(await read_until(reader, 1)) == 1
        asked.clear()
        await eventually(lambda: 10 in asked, "fetches with the busy wait once a message came")
    finally:
        await producer.stop()
        await reader.stop()
