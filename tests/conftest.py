"""Real servers for the whole test session: redis-server and a Kafka-protocol broker.

Set ACD_TEST_KAFKA_BOOTSTRAP=host:port to run the Kafka tests against an external
cluster instead of the embedded Tansu broker.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from redis.asyncio import Redis

from load_tests.embedded import EmbeddedKafka, EmbeddedRedis

# Shared, noisy machines: no per-example deadline (timing is not what these tests check).
settings.register_profile("acd", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("acd")

REDIS_FIXTURES = {"redis", "redis_server", "store"}
KAFKA_FIXTURES = {"kafka_bootstrap", "kafka_settings"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests by the real servers they use, so `-m "not kafka"` and friends work."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & REDIS_FIXTURES:
            item.add_marker(pytest.mark.redis)
        if names & KAFKA_FIXTURES:
            item.add_marker(pytest.mark.kafka)


@pytest.fixture(scope="session")
async def redis_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[EmbeddedRedis]:
    async with EmbeddedRedis(tmp_path_factory.mktemp("redis"), unix_socket_only=True) as server:
        yield server


@pytest.fixture
async def redis(redis_server: EmbeddedRedis) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url, decode_responses=True)
    await client.flushdb()
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
async def kafka_bootstrap() -> AsyncIterator[str]:
    external = os.environ.get("ACD_TEST_KAFKA_BOOTSTRAP")
    if external:
        yield external
        return
    async with EmbeddedKafka() as broker:
        yield broker.bootstrap_servers


@pytest.fixture
def topic_prefix() -> str:
    """Each test gets its own topics."""
    return f"acdtest-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def tmp_config(tmp_path: Path) -> Path:
    return tmp_path / "acd.yaml"
