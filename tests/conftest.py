"""Real servers for the whole test session: redis-server and a Kafka-protocol broker.

Set ACD_TEST_KAFKA_BOOTSTRAP=host:port to run the Kafka tests against an external
cluster instead of the embedded Tansu broker.

Every test gets one tier marker, so that `make test-unit` and friends pick them without
anybody having to remember to mark a test (an explicit tier marker wins):

- ``system``: the test (or one of its fixtures) drives the whole pipeline as processes
  (the demo, chaos, `pipeline()` of tests/test_api_support.py, ChildProcesses);
- ``integration``: it uses the session's redis-server or broker, or starts its own;
- ``unit``: everything else (no servers; the whole tier runs in seconds).

Under pytest-xdist every worker runs its own session, so each has its own redis-server
and Tansu broker (a few MB of memory each): workers share no server. `make test` runs
with ``--dist loadscope``: a module stays on one worker, so a module fixture (a demo run
watched by Prometheus, a venv) is set up once, and the chaos faults run one at a time.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from types import CodeType

import pytest
from hypothesis import HealthCheck, settings
from redis.asyncio import Redis

from load_tests.embedded import EmbeddedKafka, EmbeddedRedis

# Shared, noisy machines: no per-example deadline (timing is not what these tests check).
settings.register_profile("acd", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("acd")

REDIS_FIXTURES = {"redis", "redis_server", "store"}
KAFKA_FIXTURES = {"kafka_bootstrap", "kafka_settings"}
TIERS = ("unit", "integration", "system")
# (module, name) of what a test module holds when it runs the whole pipeline, or its own servers.
SYSTEM_HARNESSES = {
    ("load_tests.demo", "Demo"),
    ("load_tests.chaos", "run_chaos"),
    ("load_tests.children", "ChildProcesses"),
    ("tests.test_api_support", "pipeline"),
}
OWN_SERVERS = {("load_tests.embedded", "EmbeddedRedis"), ("load_tests.embedded", "EmbeddedKafka")}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests by the real servers they use, so `-m "not kafka"` and friends work, and
    by tier (`-m unit`, `-m integration`, `-m system`)."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & REDIS_FIXTURES:
            item.add_marker(pytest.mark.redis)
        if names & KAFKA_FIXTURES:
            item.add_marker(pytest.mark.kafka)
        if not any(item.get_closest_marker(tier) for tier in TIERS):
            item.add_marker(tier_of(item))


def tier_of(item: pytest.Item) -> str:
    used = _references(item)
    if used & SYSTEM_HARNESSES:
        return "system"
    if used & OWN_SERVERS or item.get_closest_marker("redis") or item.get_closest_marker("kafka"):
        return "integration"
    return "unit"


def _references(item: pytest.Item) -> set[tuple[str, str]]:
    """The module-level objects the test and its fixtures name, as (defining module, name),
    following the test module's own helper functions (a test that calls ``_judge``, which
    runs the pipeline, is a pipeline test too)."""
    functions = [getattr(item, "function", None)]
    fixture_info = getattr(item, "_fixtureinfo", None)
    for defs in getattr(fixture_info, "name2fixturedefs", {}).values():
        functions.extend(d.func for d in defs)
    found: set[tuple[str, str]] = set()
    seen: set[int] = set()
    while functions:
        function = functions.pop()
        code = getattr(function, "__code__", None)
        if code is None or id(code) in seen:
            continue
        seen.add(id(code))
        namespace = getattr(function, "__globals__", {})
        for name in _names(code):
            value = namespace.get(name)
            module = getattr(value, "__module__", "")
            found.add((module, getattr(value, "__name__", "")))
            if module == getattr(function, "__module__", None) and callable(value):
                functions.append(value)
    return found


def _names(code: CodeType) -> set[str]:
    """Global names a function's code (nested functions included) refers to."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, CodeType):
            names |= _names(const)
    return names


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
