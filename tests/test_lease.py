"""The lease with a fencing token (router/lease.py) and the fencing of late envelopes
(router/fencing.py), over a real Redis."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from redis.asyncio import Redis

from router.errors import RedisUnavailableError
from router.fencing import FenceGate
from router.lease import Lease
from router.store import Keys, RedisFenceStore, RedisLeaseStore
from router.store.replies import LeaseGrant
from tests.polling import eventually

SITE = "lease-test"


class ManualClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _lease(redis: Redis, owner: str, clock: ManualClock | None = None, ttl_s: float = 1.5) -> Lease:
    store = RedisLeaseStore(redis, SITE)
    if clock is None:
        return Lease(store, "ingest_lease", owner, ttl_s=ttl_s, renew_s=ttl_s / 3)
    return Lease(store, "ingest_lease", owner, ttl_s=ttl_s, renew_s=ttl_s / 3, now=clock)


async def test_one_holder_at_a_time_and_its_token_stays_while_it_renews(redis: Redis) -> None:
    first, second = _lease(redis, "a"), _lease(redis, "b")
    token = await first.hold()
    assert token >= 1 and first.held
    assert await second.hold() == 0 and not second.held and second.token == 0
    assert await first.hold() == token  # a renewal keeps the term's token


async def test_the_standby_takes_over_after_the_ttl_with_a_higher_token(redis: Redis) -> None:
    first, second = _lease(redis, "a", ttl_s=0.3), _lease(redis, "b", ttl_s=0.3)
    old = await first.hold()
    assert await second.hold() == 0
    # The holder dies (stops renewing): Redis lets the key expire.
    new = await eventually(second.hold, "the standby takes the lease once the TTL ran out", within=3)
    assert new > old
    assert not first.held  # its own clock says its term is over too
    assert await first.hold() == 0


async def test_a_holder_steps_down_on_its_own_clock_before_redis_lets_anyone_in(redis: Redis) -> None:
    clock = ManualClock()
    lease = _lease(redis, "a", clock)
    token = await lease.hold()
    clock.t += 1.49
    assert lease.token == token
    clock.t += 0.02  # 1.5 s since the renewal began: deposed, whatever Redis says
    assert not lease.held and lease.token == 0


async def test_a_renewal_that_redis_does_not_answer_keeps_the_term_only_until_its_ttl() -> None:
    class Unreachable:
        async def fenced_lease(self, name: str, owner: str, ttl_s: float) -> LeaseGrant:
            raise RedisUnavailableError("redis down")

        async def release_lease(self, name: str, owner: str) -> bool:
            raise RedisUnavailableError("redis down")

    class Once(Unreachable):
        async def fenced_lease(self, name: str, owner: str, ttl_s: float) -> LeaseGrant:
            return LeaseGrant(7, unbroken=True)

    clock = ManualClock()
    lease = Lease(Once(), "x", "a", ttl_s=1.5, renew_s=0.5, now=clock)
    assert await lease.hold() == 7
    lease.store = Unreachable()
    clock.t += 1.0
    assert await lease.hold() == 7  # not answered: the term goes on until its TTL
    clock.t += 0.6
    assert await lease.hold() == 0
    await lease.release()  # nothing held: no error


async def test_a_term_says_whether_nobody_else_held_the_lease_since_this_holders_last(redis: Redis) -> None:
    """A holder whose key expired (a starved process) and who takes the lease again gets a
    higher token, and learns that nobody else held it between: nobody else did its work."""
    first, second = _lease(redis, "a", ttl_s=0.2), _lease(redis, "b", ttl_s=0.2)
    old = await first.hold()
    assert not first.follows_own_term  # its first term follows nothing of its own
    await asyncio.sleep(0.3)  # its key expired; nobody asked meanwhile
    again = await first.hold()
    assert again > old and first.follows_own_term
    await asyncio.sleep(0.3)
    assert await second.hold() > again and not second.follows_own_term
    await asyncio.sleep(0.3)  # the second's key expired too
    assert await first.hold() > again and not first.follows_own_term  # the second held it


async def test_release_hands_over_at_once_and_only_the_holder_can(redis: Redis) -> None:
    first, second = _lease(redis, "a", ttl_s=30), _lease(redis, "b", ttl_s=30)
    old = await first.hold()
    await second.release()  # not the holder: changes nothing
    assert await first.hold() == old
    await first.release()
    assert not first.held
    assert await second.hold() > old


async def test_keep_reports_the_term_and_its_end(redis: Redis) -> None:
    first, second = _lease(redis, "a", ttl_s=0.3), _lease(redis, "b", ttl_s=0.3)
    seen_first: list[int] = []
    seen_second: list[int] = []
    keeping = asyncio.create_task(first.keep(seen_first.append))
    standby = asyncio.create_task(second.keep(seen_second.append))
    try:
        await eventually(lambda: seen_first, "the first takes the lease")
        keeping.cancel()  # dies: no more renewals
        await eventually(lambda: seen_second, "the standby takes over", within=3)
        assert seen_second[0] > seen_first[0]
    finally:
        for task in (keeping, standby):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@pytest.mark.unit
async def test_a_standby_asks_once_per_renewal_period_not_in_a_loop() -> None:
    """The standby ingest once asked Redis without pause (a core of CPU, and Redis's)."""

    class HeldByAnother:
        asked = 0

        async def fenced_lease(self, name: str, owner: str, ttl_s: float) -> LeaseGrant:
            self.asked += 1
            return LeaseGrant(0, unbroken=False)

        async def release_lease(self, name: str, owner: str) -> bool:
            return False

    store = HeldByAnother()
    lease = Lease(store, "x", "standby", ttl_s=0.3, renew_s=0.1)
    seen: list[int] = []
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(lease.keep(seen.append), timeout=0.35)
    assert seen == []
    assert 1 <= store.asked <= 5, store.asked  # at 0, 0.1, 0.2 and 0.3 s


@pytest.mark.unit
def test_renewing_must_be_more_frequent_than_the_ttl() -> None:
    with pytest.raises(ValueError, match="shorter than its TTL"):
        Lease(object(), "x", "a", ttl_s=1.0, renew_s=1.0)  # type: ignore[arg-type]


async def test_envelopes_of_a_deposed_ingest_written_after_its_successors_are_dropped(redis: Redis) -> None:
    gate = FenceGate(RedisFenceStore(redis, SITE))
    part = "acd.ami.events.v1:0"
    assert await gate.admit(part, 10, 3)
    assert await gate.admit(part, 11, None)  # no token (another producer): always applied
    assert await gate.admit(part, 20, 4)  # the successor's first envelope
    assert not await gate.admit(part, 21, 3)  # the deposed one, late: dropped
    assert await gate.admit(part, 15, 3)  # written before the take-over (a lagging read): applied
    # Another worker after a rebalance goes on from the mark in Redis.
    other = FenceGate(RedisFenceStore(redis, SITE))
    assert not await other.admit(part, 30, 3)
    assert await other.admit("acd.ami.events.v1:1", 30, 3)  # other partition: its own mark
    # A redelivery of the successor's term read earlier moves the mark back to it, never down.
    assert await other.admit(part, 18, 4)
    assert not await other.admit(part, 19, 3)
    assert await FenceGate(RedisFenceStore(redis, SITE)).admit(part, 17, 3)


async def test_tokens_keep_growing_across_a_redis_that_lost_its_data(redis: Redis) -> None:
    """A Redis restarted without persistence (or a replica promoted before the last raise
    reached it) has no counter: the next token still beats every token readers have seen."""
    first, second = _lease(redis, "a", ttl_s=30), _lease(redis, "b", ttl_s=30)
    old = await first.hold()
    await asyncio.sleep(0.01)  # a take-over comes a TTL later; Redis' clock must only move on
    keys = Keys(SITE)
    await redis.delete(keys.ingest_lease, keys.ingest_lease + ":fence")
    assert await second.hold() > old
