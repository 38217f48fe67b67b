"""The lab's black-hole proxy (load_tests/proxy.py): it forwards, and once hung it answers
nothing, closes nothing, and forwards only connections made after the release."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from load_tests.embedded import free_port
from load_tests.proxy import BlackholeProxy
from tests.polling import eventually

SILENCE_S = 0.3  # how long "no answer" is waited for
LIMIT = 1 << 20  # longest line


class EchoServer:
    """Echoes every line; counts connections and the ones their client closed."""

    def __init__(self) -> None:
        self.connections = 0
        self.closed_by_client = 0
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, limit=LIMIT)
        self.port = int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        with contextlib.suppress(OSError):
            while line := await reader.readline():
                writer.write(line)
                await writer.drain()
        self.closed_by_client += 1
        writer.close()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.close()
        await self.server.wait_closed()


@pytest.fixture
async def echo() -> AsyncIterator[EchoServer]:
    server = EchoServer()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def proxy(echo: EchoServer) -> AsyncIterator[BlackholeProxy]:
    async with BlackholeProxy("127.0.0.1", echo.port) as started:
        yield started


async def connect(proxy: BlackholeProxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", proxy.port, limit=LIMIT)


async def ask(conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], line: bytes) -> bytes | None:
    """The echo of ``line``; None when nothing comes back within SILENCE_S."""
    reader, writer = conn
    writer.write(line + b"\n")
    await writer.drain()
    try:
        return (await asyncio.wait_for(reader.readline(), SILENCE_S)).rstrip(b"\n")
    except TimeoutError:
        return None


async def close(conn: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
    conn[1].close()
    with contextlib.suppress(OSError):
        await conn[1].wait_closed()


async def test_it_forwards_both_ways(proxy: BlackholeProxy, echo: EchoServer) -> None:
    conn = await connect(proxy)
    assert await ask(conn, b"hello") == b"hello"
    assert await ask(conn, b"x" * 200_000) == b"x" * 200_000  # more than one read's worth
    await close(conn)
    await eventually(lambda: echo.closed_by_client == 1)
    await eventually(lambda: proxy.open_connections == 0)


async def test_a_hung_connection_answers_nothing_and_stays_open_even_after_the_release(
    proxy: BlackholeProxy,
) -> None:
    conn = await connect(proxy)
    assert await ask(conn, b"before") == b"before"
    proxy.hang()
    assert await ask(conn, b"during") is None
    assert not conn[0].at_eof()  # nothing was closed: only a timeout can tell
    proxy.release()
    assert await ask(conn, b"after") is None  # its stream has a hole: dead for good
    assert not conn[0].at_eof()
    fresh = await connect(proxy)
    assert await ask(fresh, b"fresh") == b"fresh"  # a new connection recovers
    await close(conn)
    await close(fresh)


async def test_connections_made_while_hung_are_accepted_never_answered_never_forwarded(
    proxy: BlackholeProxy, echo: EchoServer
) -> None:
    proxy.hang()
    conn = await connect(proxy)  # the handshake completes: a client cannot tell at connect
    assert await ask(conn, b"hello?") is None
    proxy.release()
    assert await ask(conn, b"still?") is None
    assert echo.connections == 0  # no upstream connection was ever made for it
    await close(conn)
    await eventually(lambda: proxy.open_connections == 0)


async def test_a_client_giving_up_on_a_dead_connection_closes_the_upstream_one(
    proxy: BlackholeProxy, echo: EchoServer
) -> None:
    conn = await connect(proxy)
    assert await ask(conn, b"hi") == b"hi"
    proxy.hang()
    await close(conn)
    await eventually(lambda: echo.closed_by_client == 1)
    await eventually(lambda: proxy.open_connections == 0)


async def test_the_target_closing_a_dead_connection_is_not_heard_by_the_client(
    proxy: BlackholeProxy, echo: EchoServer
) -> None:
    conn = await connect(proxy)
    assert await ask(conn, b"hi") == b"hi"
    proxy.hang()
    echo.writers[0].close()  # the server gives up on its side
    await asyncio.sleep(SILENCE_S)
    assert not conn[0].at_eof()
    assert await ask(conn, b"anyone?") is None
    await close(conn)
    await eventually(lambda: proxy.open_connections == 0)


async def test_while_not_hung_a_close_on_either_side_reaches_the_other(
    proxy: BlackholeProxy, echo: EchoServer
) -> None:
    conn = await connect(proxy)
    assert await ask(conn, b"hi") == b"hi"
    echo.writers[0].close()
    assert await asyncio.wait_for(conn[0].read(), 2) == b""  # EOF
    await close(conn)


async def test_a_target_that_refuses_is_a_closed_connection() -> None:
    async with BlackholeProxy("127.0.0.1", free_port()) as proxy:
        reader, writer = await connect(proxy)
        assert await asyncio.wait_for(reader.read(), 2) == b""
        writer.close()


async def test_stop_closes_every_connection(echo: EchoServer) -> None:
    proxy = BlackholeProxy("127.0.0.1", echo.port)
    await proxy.start()
    live, dead = await connect(proxy), None
    assert await ask(live, b"hi") == b"hi"
    proxy.hang()
    dead = await connect(proxy)
    await eventually(lambda: proxy.open_connections == 2)
    await asyncio.wait_for(proxy.stop(), 5)
    for conn in (live, dead):
        assert await asyncio.wait_for(conn[0].read(), 2) == b""
        await close(conn)
