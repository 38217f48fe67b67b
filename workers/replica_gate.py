"""A routing worker's side of the replication barrier (router/store/replication.py).

With Sentinel, a failover can lose the last writes the old primary took. So that nothing
acts on a decision that may vanish, and nothing is forgotten that was lost:

- the routing commands a batch (or a timer tick) produced are held in the sink until a
  replica has the batch's writes; then they go, and the batch's offsets may be committed;
- a replica that does not acknowledge (lagging, or none connected: the sentinels may still
  promote one that was cut off a moment ago) holds routing for at most ``grace_s``; after
  that the commands go without it (a site without a working replica keeps routing; the
  offsets stay uncommitted until a replica acknowledges again, and an alert fires). A
  primary that has had no replica in sync since it was first seen (just promoted, its
  replica still copying the data set) holds nothing: no replica could be promoted
  without its writes;
- a promotion seen before a batch, after it, or by a timer tick: the held commands are
  dropped, and the worker reads again from its committed offsets before it applies
  anything on the new primary, so that the watermarks of later events cannot hide an
  earlier event whose effect was lost;
- Redis failing during a batch: the rest of the batch is not applied (it would go to
  whichever primary answers next); once Redis answers, the batch is settled as above and
  read again from the committed offsets.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import NamedTuple, Protocol

from router.bus import KafkaGroupReader
from router.envelope import Envelope
from router.errors import AcdError
from router.metrics import RoutingMetrics
from router.store.replication import ReplicationBarrier, Settled
from workers.runtime import wait_or_stop

logger = logging.getLogger(__name__)

RETRY_S = 0.5  # while Redis or the broker does not answer
NO_REPLICA_POLL_S = 0.05  # between barriers while no replica is connected (WAIT is skipped then)


class Held(NamedTuple):
    """A routing command held in the sink until a replica has its decision."""

    envelope: Envelope
    started: float | None  # when its decision started (offers and callbacks)
    generation: int  # the barrier's (primary changes seen) when the command was made


class HoldingSink(Protocol):
    def take_held(self) -> list[Held]: ...

    async def release(self, held: list[Held]) -> None: ...


class ReplicaGate:
    """See the module docstring."""

    def __init__(
        self,
        barrier: ReplicationBarrier,
        sink: HoldingSink,
        reader: KafkaGroupReader,
        metrics: RoutingMetrics,
        *,
        forget_order: Callable[[], None],
        grace_s: float,
    ) -> None:
        self.barrier = barrier
        self.sink = sink
        self.reader = reader
        self.metrics = metrics
        self.forget_order = forget_order
        self.grace_s = grace_s
        self.failed_over = False  # seen by a timer tick: the consume loop reads again
        self._unacknowledged_since: float | None = None

    async def before_batch(self, stop: asyncio.Event) -> bool:
        """False: the primary changed since the last look, and the partitions were rewound
        (the batch in hand is read again)."""
        changed = await self._answered(stop, self.barrier.changed, "the Redis primary not looked at")
        if changed is None:
            return False
        if changed:
            self._note(Settled.PRIMARY_CHANGED)
        if changed or self.failed_over:
            await self.read_again(stop)
            return False
        return True

    async def before_tick(self) -> bool:
        """False: the timers skip this tick, the primary having changed (seen now, or by
        the consume loop's barrier that has not read the partitions again yet): nothing may
        be written on the new primary before that."""
        if await self.barrier.changed():
            self._note(Settled.PRIMARY_CHANGED)
            self.failed_over = True
        return not self.failed_over

    async def settle(self, stop: asyncio.Event, *, consuming: bool = True) -> Settled | None:
        """Release the commands held so far once a replica has their writes. Returns how it
        settled: REPLICATED (the offsets may be committed), PRIMARY_CHANGED (the commands
        dropped; ``consuming``: the partitions rewound, else left to the consume loop through
        ``failed_over``), NOT_YET or NO_REPLICA (released after ``grace_s``), ALONE (released
        at once), None (stopping: released, as without Sentinel). Only REPLICATED commits."""
        held = self.sink.take_held()
        while True:
            settled = await self._answered(stop, self.barrier.settle, "replication not confirmed, commands held")
            if settled is None:
                await self._release(held)
                return None
            self._note(settled)
            if settled is Settled.PRIMARY_CHANGED:
                logger.warning("a Redis failover: %d routing commands dropped, their events decided again", len(held))
                if consuming:
                    await self.read_again(stop)
                else:
                    self.failed_over = True
                return settled
            if settled in (Settled.REPLICATED, Settled.ALONE):
                self._unacknowledged_since = None
            elif not self._waited_long_enough():
                if settled is Settled.NO_REPLICA:
                    await wait_or_stop(stop, NO_REPLICA_POLL_S)
                continue
            await self._release(held)
            return settled

    async def _release(self, held: list[Held]) -> None:
        """The held commands made since the primary last changed; those made before were
        decided on a primary that is gone (their events are read again)."""
        current = [command for command in held if command.generation == self.barrier.generation]
        if len(current) < len(held):
            logger.warning("%d routing commands decided before a failover dropped", len(held) - len(current))
        await self.sink.release(current)

    async def after_outage(self, stop: asyncio.Event) -> None:
        """Redis failed during the batch, whose rest was not applied: settle what was, then
        read the batch again (the settling did already, after a failover)."""
        if await self.settle(stop) is not Settled.PRIMARY_CHANGED:
            await self.read_again(stop)

    async def read_again(self, stop: asyncio.Event) -> None:
        """Every assigned partition back to its committed offset; what this worker knew of
        the order of keys is forgotten, as after a rebalance."""
        self.failed_over = False
        self.forget_order()
        rewound = await self._answered(stop, self.reader.rewind, "cannot read again from the committed offsets yet")
        if rewound is not None:
            logger.warning("%d partitions read again from their committed offsets", rewound)

    async def _answered[T](self, stop: asyncio.Event, ask: Callable[[], Awaitable[T]], what: str) -> T | None:
        """``ask()``, again while Redis or the broker cannot answer; None when stopping."""
        while not stop.is_set():
            try:
                return await ask()
            except AcdError as exc:
                if not exc.retriable:
                    raise
                logger.warning("%s (%s); retrying", what, exc)
                await wait_or_stop(stop, RETRY_S)
        return None

    def _waited_long_enough(self) -> bool:
        now = time.monotonic()
        if self._unacknowledged_since is None:
            self._unacknowledged_since = now
            logger.warning("no Redis replica acknowledges; routing commands held for up to %.1fs", self.grace_s)
        return now - self._unacknowledged_since >= self.grace_s

    def _note(self, settled: Settled) -> None:
        self.metrics.replication_barrier.labels(settled.value).inc()
