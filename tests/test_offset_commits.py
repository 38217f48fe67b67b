"""The routing worker commits a batch's offsets behind it (workers/routing.py): the next poll
is read and applied meanwhile, one commit at a time, in order, and none is left behind."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, cast

import pytest

from router.bus import Consumed
from router.settings import AcdSettings
from workers.routing import RoutingWorker


def message(offset: int) -> Consumed:
    return Consumed("t", 0, offset, b"k", b"v", 0.0)


class HeldCommits:
    """A reader whose commits finish only when the test lets them (``release``)."""

    def __init__(self) -> None:
        self.started: list[list[int]] = []
        self.committed: list[list[int]] = []
        self.release = asyncio.Event()
        self.fail: BaseException | None = None

    async def commit(self, processed: Sequence[Consumed], unhandled: Sequence[Consumed] = ()) -> None:
        offsets = [m.offset for m in processed]
        self.started.append(offsets)
        await self.release.wait()
        if self.fail is not None:
            raise self.fail
        self.committed.append(offsets)


def worker_reading_from(reader: HeldCommits) -> RoutingWorker:
    unused = cast(Any, None)  # what committing does not touch
    return RoutingWorker(
        AcdSettings(),
        engine=unused,
        reader=cast(Any, reader),
        producer=unused,
        sink=unused,
        metrics=unused,
        sequencer=unused,
        fences=unused,
        relay=unused,
    )


async def settle() -> None:
    for _ in range(5):  # let every task that can run, run
        await asyncio.sleep(0)


async def test_the_next_batch_goes_on_while_a_commit_is_under_way_and_commits_go_one_at_a_time_in_order() -> None:
    reader = HeldCommits()
    worker = worker_reading_from(reader)
    await worker._commit_behind([message(1), message(2)], unhandled=[])  # returns with the commit under way
    await settle()
    assert reader.started == [[1, 2]] and reader.committed == []

    second = asyncio.create_task(worker._commit_behind([message(3)], unhandled=[]))
    await settle()
    assert not second.done() and reader.started == [[1, 2]]  # waits for the first to finish

    reader.release.set()
    await second
    assert worker._committing is not None
    await worker._committing
    assert reader.committed == [[1, 2], [3]]


async def test_a_commit_that_failed_is_raised_to_the_loop_at_the_next_batch() -> None:
    reader = HeldCommits()
    reader.fail = RuntimeError("the reader broke")
    worker = worker_reading_from(reader)
    await worker._commit_behind([message(1)], unhandled=[])
    reader.release.set()
    with pytest.raises(RuntimeError, match="the reader broke"):
        await worker._commit_behind([message(2)], unhandled=[])


async def test_the_consume_loop_ends_only_once_its_last_commit_is_made() -> None:
    reader = HeldCommits()
    worker = worker_reading_from(reader)
    stop = asyncio.Event()

    async def one_batch_then_stop(stop: asyncio.Event) -> None:
        await worker._commit_behind([message(7)], unhandled=[])
        stop.set()

    worker._consume = one_batch_then_stop  # type: ignore[method-assign]
    consuming = asyncio.create_task(worker.consume(stop))
    await settle()
    assert stop.is_set() and not consuming.done()
    reader.release.set()
    await consuming
    assert reader.committed == [[7]]


async def test_a_loop_that_fails_raises_its_own_error_and_leaves_its_commit_behind() -> None:
    reader = HeldCommits()
    worker = worker_reading_from(reader)

    async def one_batch_then_fail(stop: asyncio.Event) -> None:
        await worker._commit_behind([message(8)], unhandled=[])
        raise RuntimeError("Redis said no")

    worker._consume = one_batch_then_fail  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="Redis said no"):
        await worker.consume(asyncio.Event())
    await settle()
    assert worker._committing is not None and worker._committing.cancelled()
    assert reader.committed == []  # redelivered after the restart: harmless
