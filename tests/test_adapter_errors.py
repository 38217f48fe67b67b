"""Adapters turn infrastructure failures into the project's errors with ``retriable`` set,
chained to the client library's error, so that workers decide on the flag alone."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiokafka.errors import KafkaTimeoutError, TopicAuthorizationFailedError
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from load_tests.embedded import EmbeddedKafka, EmbeddedRedis
from router.bus import KafkaEnvelopeProducer, broker_error
from router.envelope import AMI_EVENT, Envelope
from router.errors import AcdError, BrokerUnavailableError, ConfigError, RedisUnavailableError
from router.settings import KafkaSettings, RedisSettings
from router.store import RedisChainStore, RedisStateStore
from router.store.admin import AdminStore
from router.store.connect import RedisLink, open_redis


async def test_store_calls_against_a_stopped_redis_raise_a_retriable_project_error(tmp_path: Path) -> None:
    async with EmbeddedRedis(tmp_path) as server:
        redis = await open_redis(RedisSettings(url=server.url, socket_timeout_s=1))
        store, chains, admin = (
            RedisStateStore(redis, "errs"),
            RedisChainStore(redis, "errs"),
            AdminStore(redis, "errs"),
        )
        link = RedisLink(redis, server.url)
        assert await store.hold_lease("lease", "me", 5)  # a script, while Redis answers
        await server.stop()
        calls = {
            "script": store.hold_lease("lease", "me", 5),
            "command": store.agent_ids(),
            "pipeline": store.call_states(["c1", "c2"]),
            "chains": chains.positions(["k"]),
            "admin": admin.agent_ids(),
            # The script runner's own entry points, which no store method wraps here.
            "runner": store.scripts.run("read", "HGETALL", "call:c1"),
            "runner's batch": store.scripts.run_batch([("read", ("HGETALL", "call:c1"))]),
        }
        for name, call in calls.items():
            with pytest.raises(RedisUnavailableError) as caught:
                await call
            assert caught.value.retriable, name
            assert isinstance(caught.value.__cause__, RedisConnectionError | OSError), name
        assert not await link.check()

        await server.start()  # same port: the client reconnects on its next command
        assert await link.check()
        assert await store.agent_ids() == []
        await redis.aclose()


async def test_a_command_redis_rejects_is_not_an_outage(redis: Redis) -> None:
    """A wrong type or a script error is a bug: it is not made retriable."""
    store = RedisStateStore(redis, "errs")
    await redis.set(store.keys.agents, "not a set")
    with pytest.raises(ResponseError):
        await store.agent_ids()


def test_kafka_failures_map_to_retriable_unavailable_or_to_a_refusal() -> None:
    timeout = broker_error(KafkaTimeoutError("no metadata in 2s"))
    assert isinstance(timeout, BrokerUnavailableError) and timeout.retriable
    refused = broker_error(TopicAuthorizationFailedError())
    assert isinstance(refused, ConfigError) and not refused.retriable
    already = RedisUnavailableError("x")
    assert broker_error(already) is already


async def test_producer_send_to_a_stopped_broker_raises_broker_unavailable() -> None:
    async with EmbeddedKafka() as kafka:
        settings = KafkaSettings(bootstrap_servers=kafka.bootstrap_servers, request_timeout_s=1)
        producer = KafkaEnvelopeProducer(settings)
        await producer.start()
        try:
            await kafka.stop()
            envelope = Envelope(type=AMI_EVENT, id="e1", source="test", ts=0.0, key="k", data={})
            with pytest.raises(AcdError) as caught:
                await producer.send_and_wait("errs.never.created.v1", envelope)
            assert isinstance(caught.value, BrokerUnavailableError) and caught.value.retriable
            assert caught.value.__cause__ is not None
        finally:
            await producer.stop()
