"""The routing worker's side of the replication barrier (workers/replica_gate.py), with the
barrier's answers scripted: which commands go, which are dropped, when the partitions are
read again. Over real Redis, Kafka and Sentinel: tests/test_replication_barrier.py and the
redis_failover chaos fault (tests/test_chaos.py)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
from prometheus_client import CollectorRegistry

from router.bus import KafkaGroupReader
from router.envelope import Envelope
from router.errors import RedisUnavailableError
from router.metrics import RoutingMetrics
from router.store.replication import ReplicationBarrier, Settled
from workers.replica_gate import Held, ReplicaGate

pytestmark = pytest.mark.unit


class ScriptedBarrier:
    def __init__(self, answers: list[Settled | Exception], changed: bool = False) -> None:
        self.answers = answers
        self.primary_changed = changed
        self.generation = 0

    async def settle(self) -> Settled:
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        self.generation += answer is Settled.PRIMARY_CHANGED
        return answer

    async def changed(self) -> bool:
        self.generation += self.primary_changed
        changed, self.primary_changed = self.primary_changed, False
        return changed


class Sink:
    def __init__(self, held: list[Held]) -> None:
        self.held = held
        self.released: list[list[Held]] = []

    def take_held(self) -> list[Held]:
        held, self.held = self.held, []
        return held

    async def release(self, held: list[Held]) -> None:
        self.released.append(held)


class Reader:
    def __init__(self) -> None:
        self.rewinds = 0

    async def rewind(self) -> int:
        self.rewinds += 1
        return 3


def _gate(answers: list[Settled | Exception], *, grace_s: float = 60.0, changed: bool = False) -> tuple[Any, ...]:
    commands = [Held(cast(Envelope, object()), 1.0, 0), Held(cast(Envelope, object()), None, 0)]
    sink, reader, forgotten = Sink(list(commands)), Reader(), []
    gate = ReplicaGate(
        cast(ReplicationBarrier, ScriptedBarrier(answers, changed)),
        sink,
        cast(KafkaGroupReader, reader),
        RoutingMetrics(CollectorRegistry()),
        forget_order=lambda: forgotten.append(True),
        grace_s=grace_s,
    )
    return gate, sink, reader, forgotten, commands


async def test_commands_go_once_a_replica_has_their_writes() -> None:
    gate, sink, reader, _, commands = _gate([Settled.NOT_YET, Settled.NOT_YET, Settled.REPLICATED])
    assert await gate.settle(asyncio.Event()) is Settled.REPLICATED
    assert sink.released == [commands] and reader.rewinds == 0


async def test_redis_down_holds_the_commands_until_it_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("workers.replica_gate.RETRY_S", 0.0)
    gate, sink, _, _, commands = _gate([RedisUnavailableError("down"), Settled.REPLICATED])
    assert await gate.settle(asyncio.Event()) is Settled.REPLICATED
    assert sink.released == [commands]


async def test_without_a_replica_the_commands_go_after_the_grace_and_offsets_wait() -> None:
    gate, sink, _, _, commands = _gate([Settled.NO_REPLICA], grace_s=0.0)
    settled = await gate.settle(asyncio.Event())
    assert settled is Settled.NO_REPLICA and not settled.committable
    assert sink.released == [commands]


async def test_a_primary_that_never_had_a_replica_holds_nothing_and_commits_nothing() -> None:
    gate, sink, _, _, commands = _gate([Settled.ALONE])
    settled = await gate.settle(asyncio.Event())
    assert settled is Settled.ALONE and not settled.committable
    assert sink.released == [commands]


async def test_a_failover_drops_the_commands_and_reads_the_partitions_again() -> None:
    gate, sink, reader, forgotten, _ = _gate([Settled.NOT_YET, Settled.PRIMARY_CHANGED])
    assert await gate.settle(asyncio.Event()) is Settled.PRIMARY_CHANGED
    assert sink.released == [] and reader.rewinds == 1 and forgotten == [True]


async def test_a_failover_a_timer_tick_saw_is_acted_on_before_the_next_batch() -> None:
    gate, _, reader, _, _ = _gate([Settled.PRIMARY_CHANGED])
    assert await gate.settle(asyncio.Event(), consuming=False) is Settled.PRIMARY_CHANGED
    assert reader.rewinds == 0 and gate.failed_over  # not under the consume loop's feet
    assert not await gate.before_tick()  # the timers wait for the consume loop's rewind
    assert not await gate.before_batch(asyncio.Event())
    assert reader.rewinds == 1 and not gate.failed_over
    assert await gate.before_batch(asyncio.Event())  # nothing new since
    assert await gate.before_tick()


async def test_commands_decided_before_a_failover_another_caller_saw_are_dropped() -> None:
    """The timers' barrier saw the failover first; the consume loop's commands, decided on
    the old primary, must not go although its own barrier sees no change any more."""
    gate, sink, _, _, commands = _gate([Settled.ALONE], changed=True)
    assert not await gate.before_tick()  # the timers: the primary changed
    fresh = Held(cast(Envelope, object()), None, 1)
    sink.held.append(fresh)
    assert await gate.settle(asyncio.Event()) is Settled.ALONE
    assert sink.released == [[fresh]] and commands[0] not in sink.released[0]


async def test_a_primary_changed_between_batches_is_read_again_before_the_next_one() -> None:
    gate, _, reader, forgotten, _ = _gate([], changed=True)
    assert not await gate.before_batch(asyncio.Event())
    assert reader.rewinds == 1 and forgotten == [True]


async def test_after_an_outage_the_batch_is_read_again_once() -> None:
    gate, sink, reader, _, commands = _gate([Settled.REPLICATED])
    await gate.after_outage(asyncio.Event())
    assert sink.released == [commands] and reader.rewinds == 1
    gate, sink, reader, _, _ = _gate([Settled.PRIMARY_CHANGED])
    await gate.after_outage(asyncio.Event())
    assert sink.released == [] and reader.rewinds == 1
