"""A TCP proxy that can hang a link: the lab's way to make Redis, the broker or AMI stop
answering without closing anything.

``BlackholeProxy`` listens on one loopback port and forwards every connection to one target.
``hang()`` turns it into a black hole, the way a peer that lost a connection's state behaves
(a frozen or failed-over server behind the same address, a firewall or NAT that forgot the
flow): nothing is forwarded any more in either direction and nothing is closed, so only a
client's own timeouts can tell it that the link is gone.

- Every connection open when ``hang()`` is called, and every one accepted until
  ``release()``, is dead for good: what either side sends is read and dropped (so a
  client's writes never block, and a client that gives up is seen closing), nothing is
  forwarded again after ``release()`` (each side's stream would have a hole in it), and
  when one side closes, the proxy closes the other.
- A connection made while hung is accepted (the kernel completes the handshake) and then
  never answered: no upstream connection is made for it.
- After ``release()``, new connections are forwarded as before: a client that notices the
  dead connection and opens a fresh one recovers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

logger = logging.getLogger(__name__)

CHUNK = 65536


@dataclass(eq=False)
class _Link:
    """One client connection and, unless it was accepted while hung, its upstream one."""

    client: tuple[asyncio.StreamReader, asyncio.StreamWriter]
    upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    dead: bool = False  # hung: nothing is forwarded on it ever again
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def writers(self) -> list[asyncio.StreamWriter]:
        return [self.client[1]] + ([self.upstream[1]] if self.upstream else [])


class BlackholeProxy:
    """Forwards ``127.0.0.1:port`` to ``target_host:target_port``; ``hang()`` / ``release()``
    (see the module docstring)."""

    def __init__(self, target_host: str, target_port: int, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.host = host
        self.port = port
        self.hung = False
        self.accepted = 0  # connections accepted so far (for tests and logs)
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def open_connections(self) -> int:
        return len(self._links)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop listening and close every connection (both sides)."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for link in list(self._links):
            await self._close(link)
        if server is not None:
            await server.wait_closed()

    def hang(self) -> None:
        """From now on, until ``release()``, the link is a black hole (module docstring)."""
        if self.hung:
            return
        self.hung = True
        logger.warning("proxy %s -> %s:%s hung", self.address, self.target_host, self.target_port)
        for link in self._links:
            link.dead = True

    def release(self) -> None:
        """New connections are forwarded again; those that were hung stay dead."""
        if self.hung:
            self.hung = False
            logger.warning("proxy %s -> %s:%s released", self.address, self.target_host, self.target_port)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        link = _Link((reader, writer), dead=self.hung)
        self._links.add(link)
        try:
            if link.dead:
                await _drop_until_closed(reader)
            elif await self._connect_upstream(link):
                await self._forward(link)
        finally:
            await self._close(link)

    async def _connect_upstream(self, link: _Link) -> bool:
        try:
            link.upstream = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError as exc:
            # As the target would: the client sees its connection closed.
            logger.info("proxy %s: target refused (%s)", self.address, exc)
            return False
        link.dead = link.dead or self.hung  # hung while connecting
        return True

    async def _forward(self, link: _Link) -> None:
        assert link.upstream is not None
        (client_reader, client_writer), (up_reader, up_writer) = link.client, link.upstream
        to_upstream = asyncio.create_task(self._pump(link, client_reader, up_writer))
        to_client = asyncio.create_task(self._pump(link, up_reader, client_writer))
        link.tasks = [to_upstream, to_client]
        await asyncio.wait(link.tasks, return_when=asyncio.FIRST_COMPLETED)
        if link.dead and not to_upstream.done():
            # The target closed a dead link: nothing reaches the client, not even that.
            await asyncio.wait([to_upstream])

    async def _pump(self, link: _Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(CHUNK):
                if link.dead:
                    continue  # dropped: a black hole answers nothing
                writer.write(data)
                await writer.drain()

    async def _close(self, link: _Link) -> None:
        if link not in self._links:
            return
        self._links.discard(link)
        for task in link.tasks:
            task.cancel()
        for writer in link.writers():
            writer.close()
        for writer in link.writers():
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def _drop_until_closed(reader: asyncio.StreamReader) -> None:
    """A connection accepted while hung: read and drop until the client gives up."""
    with contextlib.suppress(OSError):
        while await reader.read(CHUNK):
            pass
