"""Real servers for the whole test session: redis-server, a Kafka-protocol broker and
PostgreSQL (a cluster of its own, started on first use; each test gets a fresh database).

Set ACD_TEST_KAFKA_BOOTSTRAP=host:port to run the Kafka tests against an external
cluster instead of the embedded Tansu broker.

Every test gets one tier marker, so that `make test-unit` and friends pick them without
anybody having to remember to mark a test (an explicit tier marker wins):

- ``system``: the test (or one of its fixtures) drives the whole pipeline as processes
  (the demo, chaos, `pipeline()` of tests/test_api_support.py, ChildProcesses);
- ``integration``: it uses the session's redis-server or broker, or starts its own;
- ``unit``: everything else (no servers; the whole tier runs in seconds).

Under pytest-xdist every worker runs its own session, so each has its own redis-server,
Tansu broker and PostgreSQL cluster (a few MB of memory each, ~40 MB on disk for the
cluster): workers share no server. As root, PostgreSQL runs as the unprivileged user that
scripts/bootstrap.sh creates (load_tests/embedded.py, ``postgres_run_as``). `make test` runs
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

from load_tests.embedded import EmbeddedKafka, EmbeddedPostgres, EmbeddedRedis

# Shared, noisy machines: no per-example deadline (timing is not what these tests check).
settings.register_profile("acd", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("acd")

REDIS_FIXTURES = {"redis", "redis_server", "store"}
KAFKA_FIXTURES = {"kafka_bootstrap", "kafka_settings"}
POSTGRES_FIXTURES = {"postgres_server", "postgres_dsn"}
TIERS = ("unit", "integration", "system")
# (module, name) of what a test module holds when it runs the whole pipeline, or its own servers.
SYSTEM_HARNESSES = {
    ("load_tests.demo", "Demo"),
    ("load_tests.chaos", "run_chaos"),
    ("load_tests.children", "ChildProcesses"),
    ("tests.test_api_support", "pipeline"),
}
OWN_SERVERS = {
    ("load_tests.embedded", "EmbeddedRedis"),
    ("load_tests.embedded", "EmbeddedKafka"),
    ("load_tests.embedded", "EmbeddedPostgres"),
    ("load_tests.embedded", "EmbeddedSentinelRedis"),
}


# The system tier's longest runs (a few minutes of real time apiece, measured with
# `--durations`): `--dist loadscope` hands out modules and classes in collection order, so
# these go first and the short ones fill in beside them, rather than a long one starting
# last while the other workers sit idle.
LONGEST_FIRST = (
    "tests/test_install.py",
    "tests/test_callback_pipeline.py",
    "tests/test_e2e_transfer.py",
    "tests/test_prometheus.py",
    "tests/test_demo_run.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests by the real servers they use, so `-m "not kafka"` and friends work, and
    by tier (`-m unit`, `-m integration`, `-m system`); the longest runs first."""
    rank = {path: index for index, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & REDIS_FIXTURES:
            item.add_marker(pytest.mark.redis)
        if names & KAFKA_FIXTURES:
            item.add_marker(pytest.mark.kafka)
        if names & POSTGRES_FIXTURES:
            item.add_marker(pytest.mark.postgres)
        if not any(item.get_closest_marker(tier) for tier in TIERS):
            item.add_marker(tier_of(item))


def tier_of(item: pytest.Item) -> str:
    used = _references(item)
    if used & SYSTEM_HARNESSES:
        return "system"
    servers = ("redis", "kafka", "postgres")
    if used & OWN_SERVERS or any(item.get_closest_marker(server) for server in servers):
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


@pytest.fixture(scope="session")
async def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[EmbeddedPostgres]:
    async with EmbeddedPostgres(tmp_path_factory.mktemp("postgres")) as server:
        yield server


@pytest.fixture
async def postgres_dsn(postgres_server: EmbeddedPostgres) -> AsyncIterator[str]:
    """A DSN of a fresh, empty database of the session's cluster, dropped after the test."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    await postgres_server.create_database(name)
    yield postgres_server.dsn(name)
    await postgres_server.drop_database(name)


@pytest.fixture
def topic_prefix() -> str:
    """Each test gets its own topics."""
    return f"acdtest-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def tmp_config(tmp_path: Path) -> Path:
    return tmp_path / "acd.yaml"
