"""Test helpers: a panoramisk ``Manager`` that records events and can really be closed.

panoramisk 1.4 schedules reconnects with ``loop.call_later`` and keeps no handle, so a
closed manager would reconnect forever after the server dropped it; ``SimManager`` ignores
those reconnects once ``close()`` was called. Everything else is panoramisk's own code.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from panoramisk import Manager, Message

from load_tests.amisim.pbx import Pbx
from load_tests.amisim.perms import AmiUser
from load_tests.amisim.server import AmiSimulator
from router.clock import ScaledClock

EventPredicate = Callable[[Message], bool]

ADMIN = AmiUser("admin-secret", frozenset({"all"}), frozenset({"all"}))
# The account of deploy/asterisk/manager.conf.
ROUTER = AmiUser(
    "router-secret",
    read=frozenset({"system", "call", "agent", "user"}),
    write=frozenset({"call", "reporting", "agent", "system", "originate"}),
)
DEFAULT_USERS: Mapping[str, AmiUser] = {"admin": ADMIN, "acd-router": ROUTER}


@contextlib.asynccontextmanager
async def simulator(
    *,
    time_scale: float = 50.0,
    seed: int = 7,
    users: Mapping[str, AmiUser] = DEFAULT_USERS,
    sim_options: Mapping[str, Any] | None = None,
    **pbx_options: Any,
) -> AsyncIterator[tuple[Pbx, AmiSimulator]]:
    """A started simulator on a free port; stopped and closed on exit."""
    pbx = Pbx(ScaledClock(time_scale=time_scale), seed=seed, **pbx_options)
    # Asterisk waits 1 s before refusing a login; tests need not.
    options = {"auth_failure_delay_s": 0.02, **(sim_options or {})}
    sim = AmiSimulator(pbx, users=users, **options)
    await sim.start()
    try:
        yield pbx, sim
    finally:
        await sim.stop()
        await pbx.aclose()


# panoramisk ships no types, so its Manager is Any to mypy.
class SimManager(Manager):  # type: ignore[misc]
    """panoramisk Manager that records every dispatched event."""

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        self.closed = False
        self.events: list[Message] = []
        self.disconnects = 0
        self._arrived = asyncio.Event()
        self.register_event("*", self._record)

    def _record(self, _manager: Manager, event: Message) -> None:
        self.events.append(event)
        self._arrived.set()

    def connect(self, *args: Any, **kwargs: Any) -> Any:
        if self.closed:
            return None
        return super().connect(*args, **kwargs)

    def connection_made(self, future: asyncio.Future[Any]) -> None:
        if self.closed:
            with contextlib.suppress(Exception):
                future.result()[0].close()
            return
        super().connection_made(future)

    def connection_lost(self, exc: Any) -> None:
        self.disconnects += 1
        if not self.closed:
            super().connection_lost(exc)

    def close(self) -> None:
        self.closed = True
        super().close()

    def named(self, name: str) -> list[Message]:
        return [event for event in self.events if event.event == name]

    async def wait_for(self, predicate: EventPredicate, within: float = 5.0) -> Message:
        """First recorded event (past or future) matching ``predicate``."""
        async with asyncio.timeout(within):
            while True:
                for event in self.events:
                    if predicate(event):
                        return event
                self._arrived.clear()
                await self._arrived.wait()

    async def wait_event(self, name: str, within: float = 5.0, **fields: str) -> Message:
        def matches(event: Message) -> bool:
            return event.event == name and all(event.get(k) == v for k, v in fields.items())

        return await self.wait_for(matches, within)


async def open_manager(
    sim: AmiSimulator,
    username: str,
    secret: str,
    *,
    events: str = "on",
    within: float = 5.0,
    **config: Any,
) -> tuple[SimManager, Message]:
    """Connect and log in; returns the manager and panoramisk's login response."""
    config.setdefault("ping_delay", 3600)
    config.setdefault("ping_interval", 3600)
    config.setdefault("reconnect_timeout", 1)
    manager = SimManager(
        loop=asyncio.get_running_loop(),
        host=sim.host,
        port=sim.port,
        username=username,
        secret=secret,
        events=events,
        **config,
    )
    await manager.connect()
    login = manager.authenticated_future
    if login is None:
        manager.close()
        raise RuntimeError("panoramisk did not send Login")
    reply = await asyncio.wait_for(login, within)
    return manager, reply


class RawClient:
    """A bare TCP client for byte-exact checks panoramisk would hide."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.banner = b""

    @classmethod
    async def connect(cls, sim: AmiSimulator) -> RawClient:
        reader, writer = await asyncio.open_connection(sim.host, sim.port)
        client = cls(reader, writer)
        client.banner = await asyncio.wait_for(reader.readline(), 5)
        return client

    async def send(self, data: bytes | str) -> None:
        self.writer.write(data.encode() if isinstance(data, str) else data)
        await self.writer.drain()

    async def read_raw(self, within: float = 5.0) -> bytes:
        return await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), within)

    async def read_message(self, within: float = 5.0) -> dict[str, str]:
        """Next message as a dict (first value of each key)."""
        fields: dict[str, str] = {}
        for line in (await self.read_raw(within)).decode().split("\r\n"):
            key, sep, value = line.partition(": ")
            if sep and key not in fields:
                fields[key] = value
        return fields

    async def action(self, name: str, **headers: str) -> dict[str, str]:
        lines = [f"Action: {name}", *(f"{k}: {v}" for k, v in headers.items())]
        await self.send("\r\n".join(lines) + "\r\n\r\n")
        while True:
            message = await self.read_message()
            if "Response" in message:
                return message

    async def login(self, username: str, secret: str, events: str = "on") -> dict[str, str]:
        return await self.action("Login", Username=username, Secret=secret, Events=events)

    async def eof(self, within: float = 5.0) -> bool:
        """True once the server has closed the connection (remaining data is discarded)."""
        async with asyncio.timeout(within):
            while await self.reader.read(65536):
                pass
        return True

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()
