"""Redis through Sentinel: the settings, and a store that follows a promotion.

Over a real primary, replica and three sentinels (``EmbeddedSentinelRedis``): the primary
is killed, or demoted by a switchover; the store's writes fail retriably (never as a script
error) until they reach the promoted replica, within seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from load_tests.embedded import EmbeddedRedis, EmbeddedSentinelRedis, replication
from router.errors import ConfigError, RedisUnavailableError
from router.settings import RedisSettings, load_settings
from router.store import RedisTimerStore
from router.store.connect import node_options, open_redis
from router.store.keys import Keys
from router.store.scripts import LuaScripts

# A promotion takes down-after (1 s) + the sentinels' vote and the replica's switch: 2-4 s
# on an idle machine; this much is allowed on a busy one.
FOLLOWS_WITHIN_S = 15.0


# -- settings ---------------------------------------------------------------------------------


@pytest.mark.unit
def test_sentinels_are_host_and_port(tmp_path: Path) -> None:
    config = tmp_path / "acd.yaml"
    config.write_text("redis: {sentinels: ['10.0.0.5:26379', 'redis-sentinel-2:26379', '[::1]:26380']}\n")
    settings = load_settings(config).redis
    assert settings.sentinel_addresses == [("10.0.0.5", 26379), ("redis-sentinel-2", 26379), ("::1", 26380)]
    assert settings.target == "sentinel mymaster via 10.0.0.5:26379,redis-sentinel-2:26379,[::1]:26380"
    for bad, expected in (
        ("['10.0.0.5']", "'10.0.0.5' is not host:port"),
        ("['10.0.0.5:99999']", "'10.0.0.5:99999' is not host:port"),
        ("['a:26379', 'a:26379']", "sentinels given more than once: ['a:26379']"),
    ):
        config.write_text(f"redis: {{sentinels: {bad}}}\n")
        with pytest.raises(ConfigError, match=r"redis\.sentinels") as caught:
            load_settings(config)
        assert expected in str(caught.value)


@pytest.mark.unit
def test_sentinel_settings_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "sentinel-password"
    secret.write_text("s3cret\n")
    monkeypatch.setenv("ACD_REDIS__SENTINELS", '["s1:26379", "s2:26379"]')
    monkeypatch.setenv("ACD_REDIS__SENTINEL_MASTER", "acd-main")
    monkeypatch.setenv("ACD_REDIS__SENTINEL_PASSWORD_FILE", str(secret))
    settings = load_settings(None).redis
    assert settings.sentinels == ("s1:26379", "s2:26379")
    assert settings.sentinel_master == "acd-main"
    assert settings.sentinel_password is not None and settings.sentinel_password.get_secret_value() == "s3cret"
    monkeypatch.setenv("ACD_REDIS__SENTINEL_MASTER", "two words")
    with pytest.raises(ConfigError, match=r"redis\.sentinel_master = 'two words'"):
        load_settings(None)


@pytest.mark.unit
def test_with_sentinels_the_url_gives_the_database_and_password_not_the_host() -> None:
    settings = RedisSettings(url="rediss://acd:pw@ignored:6380/3", sentinels=("s1:26379",))
    assert node_options(settings) == {"db": 3, "username": "acd", "password": "pw", "ssl": True}
    from pydantic import SecretStr

    given = RedisSettings(url="redis://ignored/2", password=SecretStr("file"), sentinels=("s1:26379",))
    assert node_options(given) == {"db": 2, "password": "file"}
    with pytest.raises(ValueError, match=r"is a Unix socket but redis\.sentinels are given"):
        RedisSettings(url="unix:///run/redis.sock", sentinels=("s1:26379",))


# -- a demoted primary's answer is an outage ----------------------------------------------


async def test_a_replicas_readonly_answer_is_retriable_alone_and_in_a_batch(tmp_path: Path) -> None:
    """A write script run on a replica (a primary demoted by a failover, its clients still
    connected) fails with READONLY: the callers must retry, not take it for a script bug."""
    async with (
        EmbeddedRedis(tmp_path / "a") as primary,
        EmbeddedRedis(tmp_path / "b", replica_of=primary.port) as replica,
    ):
        client = Redis.from_url(replica.url, decode_responses=True)
        try:
            scripts = LuaScripts(client, Keys("ro"), ["lease", "read"])
            with pytest.raises(RedisUnavailableError, match="read only replica"):
                await scripts.run("lease", "timer", "me", 1000)
            with pytest.raises(RedisUnavailableError, match="read only replica"):
                await scripts.run_batch([("lease", ("timer", "me", 1000)), ("lease", ("collector", "me", 1000))])
        finally:
            await client.aclose()


# -- following a promotion ------------------------------------------------------------------


@pytest.fixture
async def sentinel_redis(tmp_path: Path) -> AsyncIterator[EmbeddedSentinelRedis]:
    async with EmbeddedSentinelRedis(tmp_path / "sentinel", appendonly=True) as group:
        yield group


async def _writes_until_they_land(store: RedisTimerStore, owner: str) -> tuple[float, set[str]]:
    """Seconds until a write succeeds, and the kinds of error seen before (all retriable)."""
    started, seen = time.monotonic(), set()
    while time.monotonic() - started < FOLLOWS_WITHIN_S:
        try:
            await store.hold_lease("timer", owner, 60)
            return time.monotonic() - started, seen
        except RedisUnavailableError as exc:  # anything else fails the test
            seen.add(type(exc.__cause__).__name__)
            await asyncio.sleep(0.05)
    raise AssertionError(f"writes did not resume within {FOLLOWS_WITHIN_S}s; errors seen: {seen}")


async def test_a_store_follows_the_promotion_when_the_primary_is_killed(sentinel_redis: EmbeddedSentinelRedis) -> None:
    client = await open_redis(RedisSettings(**sentinel_redis.settings(socket_timeout_s=1.0)))
    try:
        store = RedisTimerStore(client, "failover")
        assert await store.hold_lease("timer", "router-1", 60)
        old = await sentinel_redis.primary()
        await old.stop(kill=True)
        resumed_s, _ = await _writes_until_they_land(store, "router-1")
        new = await sentinel_redis.promoted(old)
        assert new is not old and resumed_s < FOLLOWS_WITHIN_S
        # The lease written before the kill was replicated, and the scripts' function library
        # with it.
        assert await client.get(store.keys.prefix + "timer") == "router-1"
        assert (await replication(new))["role"] == "master"
        # (That the old primary, started again, becomes the new one's replica takes the
        # sentinels 10-15 s: the redis_failover chaos fault checks it.)
    finally:
        await client.aclose()


async def test_a_store_follows_a_switchover_its_connections_still_open(sentinel_redis: EmbeddedSentinelRedis) -> None:
    """SENTINEL FAILOVER promotes the replica; the old primary, still up, is then made the new
    one's replica (here by hand, as the sentinels would, minus their CLIENT KILL): the pooled
    connection to it now reaches a replica, whose READONLY answer drops it, and the next one
    goes to the promoted node."""
    client = await open_redis(RedisSettings(**sentinel_redis.settings()))
    try:
        store = RedisTimerStore(client, "switchover")
        assert await store.hold_lease("timer", "router-1", 60)
        old = await sentinel_redis.primary()
        sentinel = sentinel_redis.sentinels[0].client()
        try:
            await sentinel.sentinel_failover(sentinel_redis.master_name)
        finally:
            await sentinel.aclose()
        new = await sentinel_redis.promoted(old, timeout_s=FOLLOWS_WITHIN_S)
        demote = Redis(unix_socket_path=str(old.unix_socket))
        try:
            await demote.replicaof("127.0.0.1", new.port)
        finally:
            await demote.aclose()
        _, seen = await _writes_until_they_land(store, "router-1")
        assert seen == {"ConnectionError"}  # redis-py's "The previous master is now a slave"
        assert client.connection_pool.master_address == ("127.0.0.1", new.port)  # type: ignore[attr-defined]
    finally:
        await client.aclose()


async def test_no_sentinel_answers_is_a_clear_error() -> None:
    settings = RedisSettings(sentinels=("127.0.0.1:1",), startup_timeout_s=0.3, socket_connect_timeout_s=0.2)
    with pytest.raises(RedisUnavailableError, match=r"sentinel mymaster via 127\.0\.0\.1:1.*ACD_REDIS__SENTINELS"):
        await open_redis(settings)


# -- which sentinel to believe ------------------------------------------------------------------


def _state(port: int, epoch: int) -> dict[str, object]:
    return {
        "ip": "127.0.0.1", "port": port, "config-epoch": epoch, "is_master": True, "is_sdown": False,
        "is_odown": False, "num-other-sentinels": 2,
    }


class _Answers:
    def __init__(self, answer: dict[str, object] | Exception) -> None:
        self.answer = answer

    async def sentinel_masters(self) -> dict[str, object]:
        if isinstance(self.answer, Exception):
            raise self.answer
        return {"acd": self.answer}


@pytest.mark.unit
async def test_the_primary_is_the_one_the_newest_configuration_names() -> None:
    """A sentinel that has not heard of a failover yet names the old primary; redis-py
    believed whichever sentinel answered first."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    from router.store.connect import LatestConfigSentinel

    sentinel = LatestConfigSentinel([])  # type: ignore[no-untyped-call]
    sentinel.sentinels = [  # type: ignore[list-item]
        _Answers(RedisConnectionError("refused")), _Answers(_state(6001, epoch=3)), _Answers(_state(6002, epoch=4)),
    ]
    assert await sentinel.discover_master("acd") == ("127.0.0.1", 6002)
    sentinel.sentinels = [_Answers(RedisConnectionError("refused"))]  # type: ignore[list-item]
    with pytest.raises(RedisConnectionError, match=r"No master found for 'acd': .*refused"):
        await sentinel.discover_master("acd")


async def test_a_sentinel_that_missed_the_failover_does_not_lead_writes_to_the_old_primary(
    sentinel_redis: EmbeddedSentinelRedis,
) -> None:
    """The old primary, back from its append-only file, is a primary again until the sentinels
    demote it; a sentinel that was away during the failover still names it. A write that
    went there would be lost at the demotion."""
    stale = sentinel_redis.sentinels[0]  # first in the client's list
    old = await sentinel_redis.primary()
    await stale.stop()
    await old.stop(kill=True)
    new = await sentinel_redis.promoted(old, timeout_s=FOLLOWS_WITHIN_S)
    await old.start()
    await stale.start()
    client = await open_redis(RedisSettings(**sentinel_redis.settings()))
    try:
        assert await RedisTimerStore(client, "stale").hold_lease("timer", "router-1", 60)
    finally:
        await client.aclose()
    for node, holds in ((new, "router-1"), (old, None)):
        direct = Redis(unix_socket_path=str(node.unix_socket), decode_responses=True)
        try:
            assert await direct.get(Keys("stale").prefix + "timer") == holds, node.url
        finally:
            await direct.aclose()
