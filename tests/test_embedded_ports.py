"""The lab's servers start on a free port even when another process takes the one they
picked first (parallel test runs race for ports: a port is picked free, then bound by the
child a moment later), and are ready only once they themselves listen there."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from load_tests.embedded import (
    EmbeddedKafka,
    EmbeddedRedis,
    EmbeddedSentinel,
    PortTaken,
    free_port,
    listens_on,
)


@pytest.fixture
def taken() -> Iterator[int]:
    """A port another process (here: this one) listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_listens_on_tells_the_owner_from_another_process(taken: int) -> None:
    assert listens_on(os.getpid(), taken)
    assert not listens_on(os.getppid(), taken)


async def test_redis_moves_off_a_port_taken_before_its_first_start(tmp_path: Path, taken: int) -> None:
    server = EmbeddedRedis(tmp_path / "redis")
    server.port = taken
    async with server:
        assert server.port != taken
        assert server.proc is not None and listens_on(server.proc.pid, server.port)
        client = Redis.from_url(server.url)
        try:
            assert await client.ping()
        finally:
            await client.aclose()


async def test_a_sentinel_is_not_ready_on_another_process_port(tmp_path: Path, taken: int) -> None:
    """A sentinel whose port another server held was taken as started (a connection
    succeeded), and its clients then talked to that other server."""
    async with EmbeddedRedis(tmp_path / "primary") as primary:
        sentinel = EmbeddedSentinel(tmp_path / "sentinel", primary.port, master_name="acd")
        sentinel.port = taken
        async with sentinel:
            assert sentinel.port != taken
            client = sentinel.client()
            try:
                answer = await client.sentinel_get_master_addr_by_name("acd")
            finally:
                await client.aclose()
            assert int(answer[1]) == primary.port


async def test_a_broker_moves_off_a_taken_port(taken: int) -> None:
    broker = EmbeddedKafka()
    broker.port = broker.advertised_port = taken
    async with broker:
        assert broker.port == broker.advertised_port != taken
        assert broker.proc is not None and listens_on(broker.proc.pid, broker.port)


async def test_a_proxied_broker_moves_off_a_taken_port_and_keeps_the_proxys(taken: int) -> None:
    """Its clients go through a proxy (the advertised port): only the port it listens on
    moves (tests/test_hung_links.py failed with PortTaken in CI, 2026-11-30)."""
    proxy_port = free_port()
    broker = EmbeddedKafka(advertised_port=proxy_port)
    broker.port = taken
    async with broker:
        assert broker.port != taken and broker.advertised_port == proxy_port
        assert broker.proc is not None and listens_on(broker.proc.pid, broker.port)


async def test_a_given_port_is_kept_and_a_clash_is_said(taken: int) -> None:
    with pytest.raises(PortTaken, match=f"another process took 127.0.0.1:{taken}"):
        async with EmbeddedKafka(taken):
            pass
