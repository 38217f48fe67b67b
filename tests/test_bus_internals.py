"""Where router/bus.py reaches into aiokafka (pinned below 0.15 in pyproject.toml): the
attributes it relies on, and the stop that survives aiokafka's own cancelled fetch."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer

from router.bus import _drop_connections, _stop_consumer


class _Client:
    def __init__(self) -> None:
        self.closed = False

    async def close(self) -> None:
        self.closed = True


class _ConsumerWhoseFetchWasCancelled:
    """What aiokafka 0.14's consumer does when ``stop()`` meets a fetch backing off."""

    def __init__(self) -> None:
        self._client = _Client()

    async def stop(self) -> None:
        raise asyncio.CancelledError


async def test_a_stop_cut_short_by_aiokafkas_cancelled_fetch_still_closes_the_client() -> None:
    consumer = _ConsumerWhoseFetchWasCancelled()
    await _stop_consumer(consumer)  # type: ignore[arg-type]
    assert consumer._client.closed


async def test_a_stop_that_is_itself_cancelled_stays_cancelled() -> None:
    consumer = _ConsumerWhoseFetchWasCancelled()

    async def cancelled_stop() -> None:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()  # this task is being cancelled when the consumer's stop raises
        await _stop_consumer(consumer)  # type: ignore[arg-type]

    with pytest.raises(asyncio.CancelledError):
        await asyncio.create_task(cancelled_stop())
    assert not consumer._client.closed


async def test_the_aiokafka_internals_bus_uses_are_still_there() -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:9")
    client = consumer._client
    assert callable(client.close)
    assert isinstance(client._conns, dict)
    _drop_connections(client)  # no connections yet: nothing to close, and no error
    await consumer.stop()
