"""Bad input of every kind: the parsers and the event consumer survive it, count it, log it,
and move it to the dead-letter topic; nothing poisons a partition."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from redis.asyncio import Redis

from load_tests.embedded import EmbeddedRedis
from router.ami.translate import partition_key, translate
from router.bus import KafkaEnvelopeProducer, KafkaGroupReader, Topics, ensure_topics
from router.domain import AgentConfig, QueueConfig
from router.envelope import AMI_EVENT, Envelope, decode
from router.errors import MalformedEventError
from router.settings import AcdSettings, AmiSettings, KafkaSettings, RedisSettings
from tests.polling import eventually
from workers.routing import run_routing

header_names = st.sampled_from(
    [
        "Event",
        "UserEvent",
        "Uniqueid",
        "Linkedid",
        "Channel",
        "DestChannel",
        "DialStatus",
        "Queue",
        "Priority",
        "Requirements",
        "ChanVariable",
        "Paused",
        "Interface",
        "StateInterface",
        "MemberName",
        "Device",
        "State",
        "BridgeId",
        "Duration",
        "Cause",
        "x" * 300,
    ]
)
event_names = st.sampled_from(
    [
        "UserEvent",
        "DialBegin",
        "DialEnd",
        "Hangup",
        "QueueMemberAdded",
        "QueueMemberPause",
        "QueueMemberRemoved",
        "QueueMember",
        "CoreShowChannel",
        "DeviceStateChange",
        "MusicOnHoldStart",
        "NoSuchEvent",
        "",
    ]
)
values = st.one_of(st.text(max_size=50), st.lists(st.text(max_size=20), max_size=3), st.integers(), st.none())


@settings(max_examples=400)
@given(event_names, st.dictionaries(header_names, values, max_size=12), st.floats(allow_nan=False))
def test_translation_survives_any_headers(event: str, headers: dict[str, Any], ts: float) -> None:
    fields = {"Event": event, **headers}
    envelope = Envelope(type=AMI_EVENT, id="x", source="fuzz", ts=ts, key=partition_key(fields), data=fields)
    translate(envelope)  # returns an event or None; never raises


@settings(max_examples=400)
@given(st.binary(max_size=2000))
def test_envelope_decoding_rejects_garbage_with_one_error_type(raw: bytes) -> None:
    with contextlib.suppress(MalformedEventError):
        decode(raw)


@given(
    st.fixed_dictionaries(
        {
            "v": st.one_of(st.integers(), st.text()),
            "id": st.one_of(st.text(), st.integers()),
            "type": st.text(),
            "source": st.text(),
            "ts": st.one_of(st.floats(), st.text(), st.booleans()),
            "key": st.text(),
            "data": st.one_of(st.dictionaries(st.text(), st.text()), st.text()),
        }
    )
)
def test_envelope_decoding_checks_every_field(body: dict[str, Any]) -> None:
    try:
        envelope = decode(json.dumps(body).encode())
    except MalformedEventError:
        return
    assert envelope.v == 1 and isinstance(envelope.data, dict)


async def test_poison_messages_go_to_the_dead_letter_topic_and_the_partition_moves_on(
    tmp_path_factory: Any, kafka_bootstrap: str, topic_prefix: str, redis: Redis
) -> None:
    kafka = KafkaSettings(
        bootstrap_servers=kafka_bootstrap,
        topic_prefix=topic_prefix,
        partitions=1,
        consumer_group=f"{topic_prefix}-routing",
    )
    topics = Topics(topic_prefix)
    await ensure_topics(kafka, topics.all())
    async with EmbeddedRedis(tmp_path_factory.mktemp("poison"), unix_socket_only=True) as server:
        settings = AcdSettings(
            site="poison",
            queues=(QueueConfig(name="q"),),
            agents=(AgentConfig(id="a1"),),
            ami=AmiSettings(port=1, secret=SecretStr("x")),
            kafka=kafka,
            redis=RedisSettings(url=server.url),
        )
        producer = KafkaEnvelopeProducer(kafka)
        await producer.start()
        garbage = [b"\xff\xfe not json", b'{"v": 9}', b"[]", json.dumps({"v": 1, "id": 1}).encode(), None]
        for raw in garbage:
            await producer.send_raw(topics.ami_events, raw, b"call:x")
        caller = {"Uniqueid": "c1", "Linkedid": "c1", "Channel": "PJSIP/t-1"}
        queued = caller | {"Event": "UserEvent", "UserEvent": "AcdCallQueued", "Queue": "q"}
        await producer.send_and_wait(
            topics.ami_events,
            Envelope(type=AMI_EVENT, id="ok", source="t", ts=time.time(), key="call:c1", data=queued),
        )
        stop = asyncio.Event()
        worker = asyncio.create_task(run_routing(settings, settings.clock.build(), stop))
        client = Redis.from_url(server.url, decode_responses=True)

        async def waiting() -> bool:
            return await client.hget("acd:{poison}:call:c1", "state") == "waiting"

        await eventually(waiting, "c1 waiting", within=30)
        stop.set()
        await asyncio.wait_for(worker, 15)
        await client.aclose()
        reader = KafkaGroupReader(kafka, [topics.dead_letters], f"{topic_prefix}-dl")
        await reader.start()
        dead: list[bytes | None] = []
        async with asyncio.timeout(20):
            while len(dead) < len(garbage):
                dead.extend(m.value for m in await reader.read(timeout_ms=200))
        await reader.stop()
        await producer.stop()
    assert dead == garbage
