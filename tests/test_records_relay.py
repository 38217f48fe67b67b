"""The record relay (workers/relay.py): the outbox in Redis to the records topics, with a real
redis-server and a real broker; outages and a relay killed mid-batch lose nothing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from router.bus import KafkaEnvelopeProducer, KafkaGroupReader, Topics, ensure_topics
from router.domain import AgentConfig
from router.envelope import RECORD_AGENT_STATE, RECORD_CALL, Envelope, decode
from router.errors import BrokerUnavailableError, RedisUnavailableError
from router.metrics import RelayMetrics
from router.records import CallRecord, parse_agent_state_record, parse_call_record
from router.settings import KafkaSettings
from router.store import NO_POSITION, NewCall, RedisStateStore
from router.store.outbox import GROUP, RedisOutboxStore
from tests.polling import eventually
from workers.relay import RecordRelay

T0 = 1_800_000_000.0
SITE = "relay"


async def make_calls(redis: Redis, count: int) -> RedisStateStore:
    """``count`` calls that enter and are abandoned, and an agent that logs in and out:
    ``count`` call records and two agent-state records in the outbox."""
    store = RedisStateStore(redis, SITE)
    await store.upsert_agent(AgentConfig(id="a1", skills={}), T0)
    await store.agent_presence("a1", "available", "", T0 + 1, NO_POSITION)
    await store.agent_presence("a1", "logged_out", "", T0 + 2, NO_POSITION)
    for i in range(count):
        call = NewCall(f"c{i}", "q", 0, False, None, f"PJSIP/t-{i}", T0 + i, None, None, 20.0, 0.0, f"+1{i}")
        await store.enqueue(call, NO_POSITION)
        await store.caller_hung_up(f"c{i}", T0 + i + 5, NO_POSITION)
    return store


def settings_for(bootstrap: str, prefix: str) -> KafkaSettings:
    return KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=prefix, partitions=2)


def relay_for(
    outbox: RedisOutboxStore,
    producer: Any,
    topics: Topics,
    name: str,
    *,
    claim_idle_s: float = 30.0,
    batch: int = 500,
) -> tuple[RecordRelay, RelayMetrics]:
    metrics = RelayMetrics(CollectorRegistry())
    relay = RecordRelay(
        outbox, producer, topics, metrics, site=SITE, consumer=name, batch=batch, claim_idle_s=claim_idle_s
    )
    return relay, metrics


async def read_records(settings: KafkaSettings, topics: Topics, count: int) -> list[Envelope]:
    """Everything on the two records topics, until ``count`` envelopes have come."""
    reader = KafkaGroupReader(settings, [topics.call_records, topics.agent_records], f"{topics.prefix}-check")
    await reader.start()
    got: list[Envelope] = []
    try:
        async with asyncio.timeout(30):
            while len(got) < count:
                got.extend(decode(message.value) for message in await reader.read(timeout_ms=200))
        got.extend(decode(message.value) for message in await reader.read(timeout_ms=500))  # and no more
    finally:
        await reader.stop()
    return got


async def test_the_relay_publishes_every_record_then_deletes_it(
    redis: Redis, kafka_bootstrap: str, topic_prefix: str
) -> None:
    store = await make_calls(redis, 12)
    settings = settings_for(kafka_bootstrap, topic_prefix)
    topics = Topics(topic_prefix)
    await ensure_topics(settings, topics.all())
    producer = KafkaEnvelopeProducer(settings)
    await producer.start()
    try:
        outbox = RedisOutboxStore(redis, SITE)
        relay, metrics = relay_for(outbox, producer, topics, "r1", batch=5)
        while await relay.step(None):
            pass
    finally:
        await producer.stop()
    assert await redis.xlen(store.keys.outbox) == 0  # published, acknowledged and deleted
    assert await redis.xpending(store.keys.outbox, GROUP) == {
        "pending": 0,
        "min": None,
        "max": None,
        "consumers": [],
    }
    envelopes = await read_records(settings, topics, 14)
    calls = [parse_call_record(e) for e in envelopes if e.type == RECORD_CALL]
    agents = [parse_agent_state_record(e) for e in envelopes if e.type == RECORD_AGENT_STATE]
    assert sorted(c.call_id for c in calls) == sorted(f"c{i}" for i in range(12))
    assert all(
        e.key == f"call:{c.call_id}" and e.id == c.record_id
        for e, c in zip([e for e in envelopes if e.type == RECORD_CALL], calls, strict=True)
    )
    assert {c.call_id: c.caller_number for c in calls}["c3"] == "+13"
    assert [(a.state, a.start, a.end) for a in agents] == [
        ("logged_out", T0, T0 + 1),
        ("available", T0 + 1, T0 + 2),
    ]
    assert metrics.published.labels("call")._value.get() == 12
    assert metrics.published.labels("agent_state")._value.get() == 2
    assert metrics.backlog._value.get() == 0


class KilledAfterProducing(RedisOutboxStore):
    """A relay's process dies right after the broker acknowledged, before Redis heard of it."""

    async def ack(self, entry_ids: Sequence[str]) -> None:
        raise asyncio.CancelledError("killed")


async def test_records_a_killed_relay_read_are_claimed_and_published_again(
    redis: Redis, kafka_bootstrap: str, topic_prefix: str
) -> None:
    store = await make_calls(redis, 4)
    settings = settings_for(kafka_bootstrap, topic_prefix)
    topics = Topics(topic_prefix)
    await ensure_topics(settings, topics.all())
    producer = KafkaEnvelopeProducer(settings)
    await producer.start()
    try:
        doomed, _ = relay_for(KilledAfterProducing(redis, SITE), producer, topics, "doomed")
        with pytest.raises(asyncio.CancelledError):
            await doomed.step(None)
        pending = await redis.xpending(store.keys.outbox, GROUP)
        assert pending["pending"] == 6 and pending["consumers"] == [{"name": "doomed", "pending": 6}]

        survivor, metrics = relay_for(
            RedisOutboxStore(redis, SITE), producer, topics, "survivor", claim_idle_s=0.3
        )
        assert (
            await survivor.step(None) == 0
        )  # nothing new; the dead relay's entries are not idle long enough
        await asyncio.sleep(0.4)
        assert await survivor.step(None) == 6
        assert metrics.claimed._value.get() == 6
    finally:
        await producer.stop()
    assert await redis.xlen(store.keys.outbox) == 0
    assert (await redis.xpending(store.keys.outbox, GROUP))["pending"] == 0

    envelopes = await read_records(settings, topics, 12)
    assert len(envelopes) == 12  # every record twice ...
    by_id: dict[str, list[bytes]] = {}
    for envelope in envelopes:
        by_id.setdefault(envelope.id, []).append(envelope.encode())
    # ... as byte-identical duplicates with the same record_id, which consumers drop.
    assert len(by_id) == 6 and all(len(copies) == 2 and copies[0] == copies[1] for copies in by_id.values())
    assert all(json.loads(copies[0])["data"]["record_id"] == record_id for record_id, copies in by_id.items())


class FlakyProducer:
    """A broker that refuses the first ``failures`` sends, then takes everything."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.sent: list[tuple[str, Envelope]] = []

    async def send_many(self, topic: str, envelopes: Sequence[Envelope]) -> list[asyncio.Future[object]]:
        if self.failures > 0:
            self.failures -= 1
            raise BrokerUnavailableError("Kafka unavailable (test)")
        self.sent += [(topic, envelope) for envelope in envelopes]
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return [future] * len(envelopes)


class FlakyOutbox(RedisOutboxStore):
    """Redis goes away once, just as the relay acknowledges."""

    acks_refused = 0

    async def ack(self, entry_ids: Sequence[str]) -> None:
        if self.acks_refused == 0:
            self.acks_refused += 1
            raise RedisUnavailableError("Redis unavailable (test)")
        await super().ack(entry_ids)


async def test_outages_are_waited_out_and_lose_nothing(redis: Redis) -> None:
    store = await make_calls(redis, 3)
    producer = FlakyProducer(failures=2)
    relay, metrics = relay_for(FlakyOutbox(redis, SITE), producer, Topics("flaky"), "r1")
    stop = asyncio.Event()
    task = asyncio.get_running_loop().create_task(relay.run(stop))
    try:
        await eventually(
            lambda: metrics.published.labels("call")._value.get() == 3,
            "every call record published",
            within=15,
        )
        await eventually(lambda: _empty(redis, store), "the outbox emptied", within=15)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
    # The broker refused twice: the batch was produced again until it went through; Redis
    # refused the acknowledgement once: the batch, already published, was not produced again.
    assert len(producer.sent) == 5
    assert sorted(e.id for _, e in producer.sent) == sorted({e.id for _, e in producer.sent})
    assert {topic for topic, _ in producer.sent} == {"flaky.records.calls.v1", "flaky.records.agents.v1"}
    records = [parse_call_record(e) for _, e in producer.sent if e.type == RECORD_CALL]
    assert all(isinstance(r, CallRecord) and r.outcome == "abandoned" for r in records)


async def _empty(redis: Redis, store: RedisStateStore) -> bool:
    return await redis.xlen(store.keys.outbox) == 0


async def test_an_entry_that_is_no_record_is_dead_lettered_not_stuck(redis: Redis) -> None:
    store = RedisStateStore(redis, SITE)
    await redis.xadd(store.keys.outbox, {"t": "nonsense", "x": "1"})
    await redis.xadd(
        store.keys.outbox,
        {"t": "agent_state", "agent_id": "a1", "state": "available", "reason": "", "start": "1", "end": "2"},
    )
    dead: list[tuple[str, bytes | None]] = []

    class Producer(FlakyProducer):
        async def send_raw(self, topic: str, value: bytes | None, key: bytes | None) -> None:
            dead.append((topic, value))

    producer = Producer(failures=0)
    relay, metrics = relay_for(RedisOutboxStore(redis, SITE), producer, Topics("bad"), "r1")
    assert await relay.step(None) == 2
    assert [e.type for _, e in producer.sent] == [RECORD_AGENT_STATE]
    assert [topic for topic, _ in dead] == [
        "bad.deadletter.events.v1"
    ] and metrics.malformed._value.get() == 1
    assert await redis.xlen(store.keys.outbox) == 0


async def test_stopping_publishes_the_records_of_the_last_transitions_then_leaves(redis: Redis) -> None:
    store = await make_calls(redis, 2)
    producer = FlakyProducer(failures=0)
    relay, _ = relay_for(RedisOutboxStore(redis, SITE), producer, Topics("stop"), "r1")
    await relay.step(None)  # a member of the group now
    stop, quiet = asyncio.Event(), asyncio.Event()
    stop.set()
    task = asyncio.get_running_loop().create_task(relay.run(stop, before_drain=quiet.wait))
    await asyncio.sleep(0.2)
    assert not task.done()  # the worker's last events are still being applied ...
    late = NewCall("late", "q", 0, False, None, "PJSIP/t-late", T0, None, None, 20.0, 0.0)
    await store.enqueue(late, NO_POSITION)
    await store.caller_hung_up("late", T0 + 3, NO_POSITION)
    quiet.set()  # ... and now they are
    await asyncio.wait_for(task, 5)
    assert len(producer.sent) == 5 and await redis.xlen(store.keys.outbox) == 0
    assert producer.sent[-1][1].key == "call:late"
    assert await redis.xinfo_consumers(store.keys.outbox, GROUP) == []  # nothing pending: it left


async def test_a_relay_waiting_for_records_stops_promptly(redis: Redis) -> None:
    relay, _ = relay_for(RedisOutboxStore(redis, SITE), FlakyProducer(failures=0), Topics("idle"), "r1")
    stop = asyncio.Event()
    task = asyncio.get_running_loop().create_task(relay.run(stop))
    await asyncio.sleep(0.3)  # blocked reading an empty outbox
    stop.set()
    await asyncio.wait_for(task, 1.0)
    task = asyncio.get_running_loop().create_task(relay.run(asyncio.Event()))
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 1.0)


async def test_a_broker_that_comes_back_empty_gets_the_recent_records_again(redis: Redis) -> None:
    """Tansu keeps its data in memory: restarted, it has lost records it had acknowledged
    (and the relay had deleted from the outbox). The relay notices the outage and, once the
    broker is back, publishes the recent records again."""
    from load_tests.embedded import EmbeddedKafka

    await make_calls(redis, 4)
    async with EmbeddedKafka() as kafka:
        settings = settings_for(kafka.bootstrap_servers, "empty")
        topics = Topics("empty")
        await ensure_topics(settings, topics.all())
        producer = KafkaEnvelopeProducer(settings)
        await producer.start()
        relay, metrics = relay_for(RedisOutboxStore(redis, SITE), producer, topics, "r1")
        stop = asyncio.Event()
        tasks = [asyncio.get_running_loop().create_task(job(stop)) for job in (relay.run, relay.watch_broker)]
        try:
            await eventually(
                lambda: metrics.published.labels("call")._value.get() == 4, "the records published", within=15
            )
            await kafka.stop()
            await asyncio.sleep(1.0)  # the relay's probe sees the broker gone
            await kafka.start()
            await eventually(
                lambda: metrics.published.labels("call")._value.get() >= 8,
                "the records published again",
                within=30,
            )
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), 15)
            await producer.stop()
        envelopes = await read_records(settings, topics, 6)
    assert sorted(parse_call_record(e).call_id for e in envelopes if e.type == RECORD_CALL) == [
        f"c{i}" for i in range(4)
    ]
