"""The replication barrier (router/store/replication.py) over a real primary and replica:
offsets are committed only once a replica has the batch's writes, and a promotion is seen.

The whole story (writes lost with a killed primary, the routing workers reading their
events again) is the redis_failover chaos fault, which freezes the replica before the kill.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.asyncio import Redis

from load_tests.embedded import EmbeddedRedis, EmbeddedSentinelRedis
from router.errors import ConfigError, RedisUnavailableError
from router.settings import RedisSettings, load_settings
from router.store.connect import open_redis
from router.store.replication import ReplicationBarrier, Settled, replication_fields
from tests.polling import eventually

WAIT_MS = 50
FOLLOWS_WITHIN_S = 15.0  # a promotion: 2-4 s on an idle machine (tests/test_redis_sentinel.py)


@pytest.mark.unit
def test_the_replication_fields_as_text_or_as_parsed() -> None:
    """Replicas still copying the data set (state wait_bgsave, send_bulk) are not counted."""
    text = (
        "# Replication\r\nrole:master\r\nconnected_slaves:2\r\n"
        "slave0:ip=127.0.0.1,port=7001,state=online,offset=90,lag=0\r\n"
        "slave1:ip=127.0.0.1,port=7002,state=wait_bgsave,offset=0,lag=0\r\n"
        "master_replid:ab12\r\nmaster_repl_offset:90\r\n"
    )
    assert replication_fields(text) == ("ab12", 1)
    parsed = {
        "role": "master",
        "connected_slaves": 2,
        "slave0": {"ip": "127.0.0.1", "port": 7001, "state": "send_bulk", "offset": 0, "lag": 0},
        "slave1": {"ip": "127.0.0.1", "port": 7002, "state": "online", "offset": 90, "lag": 0},
        "master_replid": "cd34",
    }
    assert replication_fields(parsed) == ("cd34", 1)
    assert replication_fields({"role": "master", "connected_slaves": 0, "master_replid": "ef56"}) == ("ef56", 0)


@pytest.mark.unit
def test_only_with_sentinels_and_a_wait_below_the_socket_timeout(tmp_path: Path) -> None:
    assert not RedisSettings().replication_barrier  # one server: no replica to wait for
    assert RedisSettings(sentinels=("s1:26379",)).replication_barrier
    assert not RedisSettings(sentinels=("s1:26379",), replica_wait_ms=0).replication_barrier
    config = tmp_path / "acd.yaml"
    config.write_text("redis: {replica_wait_ms: 900, socket_timeout_s: 0.5}\n")
    with pytest.raises(ConfigError, match=r"replica_wait_ms \(900\) must stay below redis\.socket_timeout_s"):
        load_settings(config)


async def test_offsets_wait_for_a_replica_that_does_not_answer(tmp_path: Path) -> None:
    async with (
        EmbeddedRedis(tmp_path / "a") as primary,
        EmbeddedRedis(tmp_path / "b", replica_of=primary.port) as replica,
    ):
        client = Redis.from_url(primary.url, decode_responses=True)
        try:
            barrier = ReplicationBarrier(client, "s1", wait_ms=WAIT_MS)
            await barrier.start()
            await eventually(lambda: _settles(barrier, Settled.REPLICATED), "the replica to acknowledge")
            replica.pause()  # connected, not answering: as a replica far behind
            try:
                await client.set("a-write", "1")
                settled = await barrier.settle()
                assert settled is Settled.NOT_YET and not settled.committable
            finally:
                replica.resume()
            await eventually(lambda: _settles(barrier, Settled.REPLICATED), "the thawed replica to acknowledge")
            await replica.stop(kill=True)
            # No replica at all: the offsets wait too (a replica cut off a moment ago may yet
            # be promoted without the writes since), and no batch waits for WAIT's timeout.
            await eventually(lambda: _settles(barrier, Settled.NO_REPLICA), "the primary to see its replica gone")
            assert not Settled.NO_REPLICA.committable
            waits = await _waits(client)
            for _ in range(5):
                assert await barrier.settle() is Settled.NO_REPLICA
            assert await _waits(client) == waits
        finally:
            await client.aclose()


async def test_a_promotion_is_seen_at_the_next_barrier(tmp_path: Path) -> None:
    async with EmbeddedSentinelRedis(tmp_path / "sentinel", appendonly=True) as group:
        client = await open_redis(RedisSettings(**group.settings(socket_timeout_s=1.0)))
        try:
            barrier = ReplicationBarrier(client, "s1", wait_ms=WAIT_MS)
            await barrier.start()
            assert await barrier.settle() is Settled.REPLICATED
            old = await group.primary()
            await old.stop(kill=True)
            await group.promoted(old)
            settled = await eventually(
                barrier.settle,
                "a barrier on the promoted replica",
                within=FOLLOWS_WITHIN_S,
                ignoring=(RedisUnavailableError,),
            )
            assert settled is Settled.PRIMARY_CHANGED and not settled.committable
            # Once seen, the new primary is the one the next barriers compare with; it has had
            # no replica yet (the old primary is down), so none could lose its writes.
            assert await barrier.settle() is Settled.ALONE
        finally:
            await client.aclose()


async def _settles(barrier: ReplicationBarrier, expected: Settled) -> bool:
    return await barrier.settle() is expected



async def _waits(client: Redis) -> int:
    """How many WAIT commands the server has run."""
    stats = await client.info("commandstats")
    return int(stats.get("cmdstat_wait", {}).get("calls", 0))
