"""A routing worker that stops cleanly leaves nothing it applied uncommitted, over a real
broker and Redis: its batches' offsets are committed behind the loop (workers/routing.py,
tests/test_offset_commits.py with a fake reader), and the stop waits for the last of them."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from load_tests.embedded import EmbeddedRedis
from router.bus import KafkaEnvelopeProducer, KafkaGroupReader, Topics, ensure_topics
from router.catchup import mark_of
from router.clock import ScaledClock
from router.domain import QueueConfig
from router.envelope import AMI_EVENT, Envelope
from router.settings import AcdSettings, KafkaSettings, RedisSettings
from router.store.keys import Keys
from tests.polling import eventually
from workers.routing import run_routing

CALLS = 40
SITE = "stopcommit"


def queued(n: int) -> Envelope:
    """A call entering queue ``q`` as ingest would publish it (sequenced, one key per call)."""
    call_id = f"c{n}"
    fields = {"Event": "UserEvent", "UserEvent": "AcdCallQueued", "Queue": "q"}
    fields |= {"Channel": f"PJSIP/trunk-{call_id}", "Uniqueid": call_id, "Linkedid": call_id}
    return Envelope(
        type=AMI_EVENT, id=f"e{n}", source="test", ts=float(n), key=f"call:{call_id}", data=fields,
        session=1, seq=n, prev=None,
    )


async def test_a_clean_stop_right_after_the_last_batch_leaves_its_offsets_committed(
    redis_server: EmbeddedRedis, redis: Redis, kafka_bootstrap: str, topic_prefix: str
) -> None:
    kafka = KafkaSettings(
        bootstrap_servers=kafka_bootstrap,
        topic_prefix=topic_prefix,
        partitions=2,
        consumer_group=f"{topic_prefix}-routing",  # its own group: no member of another test
        session_timeout_ms=1000,
        heartbeat_interval_ms=250,
    )
    settings = AcdSettings(
        site=SITE, queues=(QueueConfig(name="q"),), kafka=kafka, redis=RedisSettings(url=redis_server.url)
    )
    topic = Topics(topic_prefix).ami_events
    await ensure_topics(kafka, [topic])
    stop = asyncio.Event()
    route = asyncio.create_task(run_routing(settings, ScaledClock(time_scale=1.0), stop))
    try:
        producer = KafkaEnvelopeProducer(kafka)
        await producer.start()
        try:
            delivered = [await producer.send(topic, queued(n)) for n in range(1, CALLS + 1)]
            await producer.flush()
            marks: dict[str, int] = {}
            for metadata in [await d for d in delivered]:
                mark_of(marks, metadata.topic, metadata.partition, metadata.offset)
        finally:
            await producer.stop()
        waiting = Keys(SITE).waiting
        # The moment the last call is in line, its batch's commit may still be under way.
        await eventually(
            lambda: _all_waiting(redis, waiting), f"{CALLS} calls in line", within=30, every=0.002
        )
        stop.set()
        await asyncio.wait_for(route, timeout=15)
    finally:
        stop.set()
        if not route.done():
            route.cancel()
            await asyncio.gather(route, return_exceptions=True)
    member = KafkaGroupReader(kafka, [topic], kafka.consumer_group)
    await member.start()
    try:
        assert await member.behind(marks) == []
    finally:
        await member.stop()


async def _all_waiting(redis: Redis, waiting: str) -> bool:
    return await redis.zcard(waiting) == CALLS
