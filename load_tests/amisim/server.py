"""``AmiSimulator``: the AMI TCP server in front of a ``Pbx``.

One asyncio protocol per connection, no task per session: input is parsed and handled
synchronously in ``data_received``, output goes straight to the transport. Each event is
framed once and the same bytes are written to every session allowed to see it. A client
that stops reading is disconnected when its output has stayed backed up for
``write_timeout_s`` (or passes ``max_write_buffer``), as Asterisk drops a session whose
write times out, so it never holds anyone else up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from load_tests.amisim import perms
from load_tests.amisim.actions import dispatch
from load_tests.amisim.pbx import Pbx
from load_tests.amisim.perms import AmiUser
from load_tests.amisim.wire import EOL, ActionParser, Event, encode, render_event, timestamp

logger = logging.getLogger(__name__)

RestartMode = Literal["now", "gracefully"]


@dataclass(frozen=True)
class SessionInfo:
    """Read-only view of one connection."""

    peer: str
    username: str
    authenticated: bool
    events_on: bool


class AmiSession(asyncio.Protocol):
    """One manager connection."""

    def __init__(self, sim: AmiSimulator) -> None:
        self.sim = sim
        self.transport: asyncio.Transport | None = None
        self.parser = ActionParser()
        self.peer = ""
        self.username = ""
        self.authenticated = False
        self.read_mask = 0
        self.write_mask = 0
        self.event_mask = perms.ALL
        self.challenge = ""
        self.closing = False
        self._timers: list[asyncio.TimerHandle] = []
        self._stall: asyncio.TimerHandle | None = None
        self._queued = 0
        self._sent_mark = 0

    # -- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=self.sim.high_water)
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.sim._register(self)
        self.send(encode(f"Asterisk Call Manager/{self.sim.version}{EOL}"))
        self.call_later(self.sim.auth_timeout_s, self._auth_expired)

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        try:
            for message in self.parser.feed(data):
                if self.closing:
                    break
                dispatch(self.sim, self, message)
        except Exception:  # a bug on one connection must not take the server down
            logger.exception("AMI session %s failed; closing it", self.peer)
            self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        self.resume_writing()
        self.sim._unregister(self)

    def pause_writing(self) -> None:
        # A burst can outrun any reader for a moment; only a reader that took nothing
        # for write_timeout_s is dropped.
        self._watch()

    def resume_writing(self) -> None:
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None

    def _sent(self) -> int:
        backlog = self.transport.get_write_buffer_size() if self.transport else 0
        return self._queued - backlog

    def _watch(self) -> None:
        self._sent_mark = self._sent()
        loop = asyncio.get_running_loop()
        self._stall = loop.call_later(self.sim.write_timeout_s, self._check_stall)

    def _check_stall(self) -> None:
        self._stall = None
        if self.transport is None or self.transport.get_write_buffer_size() == 0:
            return
        if self._sent() > self._sent_mark:
            self._watch()
            return
        logger.warning("AMI client %s stopped reading; dropping it", self.peer)
        self.abort()

    # -- helpers for action handlers ---------------------------------------------------

    def wants(self, category: int) -> bool:
        return (
            self.authenticated
            and self.read_mask & category == category
            and self.event_mask & category == category
        )

    def send(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.write(data)
        self._queued += len(data)
        if transport.get_write_buffer_size() > self.sim.max_write_buffer:
            logger.warning("AMI client %s is too far behind; dropping it", self.peer)
            self.abort()

    def call_later(self, seconds: float, callback: Callable[[], None]) -> None:
        """Protocol timers run in real seconds: the network is not simulated."""
        loop = asyncio.get_running_loop()
        self._timers.append(loop.call_later(seconds, self._guarded, callback))

    def _guarded(self, callback: Callable[[], None]) -> None:
        try:
            callback()
        except Exception:
            logger.exception("AMI session %s timer failed", self.peer)
            self.abort()

    def _auth_expired(self) -> None:
        if not self.authenticated:
            self.close()

    def close(self) -> None:
        """Close after the pending output is flushed (Logoff, failed login)."""
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.abort()

    def info(self) -> SessionInfo:
        return SessionInfo(self.peer, self.username, self.authenticated, self.event_mask != 0)


class AmiSimulator:
    """A protocol-faithful Asterisk Manager Interface in front of a simulated PBX."""

    def __init__(
        self,
        pbx: Pbx,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        users: Mapping[str, AmiUser],
        version: str = "9.0.0",
        timestamp_events: bool = True,
        auth_timeout_s: float = 30.0,
        auth_failure_delay_s: float = 1.0,
        write_timeout_s: float = 2.0,
        max_write_buffer: int = 64 * 1024 * 1024,
        high_water: int = 256 * 1024,
    ) -> None:
        self.pbx = pbx
        self.host = host
        self.version = version
        self.timestamp_events = timestamp_events
        self.auth_timeout_s = auth_timeout_s
        self.auth_failure_delay_s = auth_failure_delay_s
        self.write_timeout_s = write_timeout_s
        self.max_write_buffer = max_write_buffer
        self.high_water = high_water
        self.users = {name.lower(): user for name, user in users.items()}
        self.shutting_down = False
        self._requested_port = port
        self._port: int | None = None
        self._server: asyncio.Server | None = None
        self._retired: list[asyncio.Server] = []
        self._sessions: list[AmiSession] = []
        self._unsubscribe: Callable[[], None] | None = None
        self._privileges: dict[int, str] = {}
        self._all_gone: asyncio.Event | None = None

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the simulator has not been started")
        return self._port

    @property
    def started(self) -> bool:
        return self._port is not None and not self.shutting_down

    async def start(self) -> None:
        if self._port is not None:
            return
        self._server = await self._listen(self._requested_port)
        self._port = self._server.sockets[0].getsockname()[1]
        self._unsubscribe = self.pbx.subscribe(self._on_event)

    async def _listen(self, port: int) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        return await loop.create_server(lambda: AmiSession(self), self.host, port)

    async def stop(self, grace_s: float = 0.5) -> None:
        """Send Shutdown, close every session (flushing briefly, then aborting), stop."""
        if self._port is None or self.shutting_down:
            return
        self.shutting_down = True
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        servers = self._stop_listening()
        self._broadcast_shutdown()
        await self._close_sessions(grace_s)
        for server in servers:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), timeout=1.0)

    def _broadcast_shutdown(self, *, restart: bool = False) -> None:
        clean = "Uncleanly" if self.pbx.channels() else "Cleanly"
        again = "True" if restart else "False"
        self._on_event(Event("Shutdown", perms.SYSTEM, f"Shutdown: {clean}{EOL}Restart: {again}{EOL}"))

    async def restart(
        self,
        mode: RestartMode = "now",
        *,
        down_s: float = 1.0,
        settle_s: float = 0.2,
        grace_s: float = 0.5,
    ) -> int:
        """``core restart now|gracefully``; returns how many callers the restart cut off.

        As main/asterisk.c does it: from the start every action is answered "Asterisk is
        shutting down" and no call gets in; "now" hangs every channel up at once
        (ast_softhangup_all), "gracefully" waits until the last call has ended by itself.
        Then (after a moment, as Asterisk sleeps 1 s when it had to wait) ``Event:
        Shutdown`` (Cleanly, Restart: True), every socket closes, the port refuses
        connections for ``down_s`` and a fresh Asterisk listens on the same port: no
        channels; roster members back (app_queue persistentmembers=yes restores them).
        """
        if self._port is None or self.shutting_down:
            raise RuntimeError("the simulator is not running")
        self.shutting_down = True
        self.pbx.begin_shutdown()
        cut = 0
        if mode == "now":
            with self.pbx.holding_events():
                cut = self.pbx.hang_up_everything()
        else:
            while self.pbx.channels():  # noqa: ASYNC110 - waits on the phone system's state
                await asyncio.sleep(0.05)
        await asyncio.sleep(settle_s)
        self._broadcast_shutdown(restart=True)
        self._stop_listening()
        await self._close_sessions(grace_s)
        await asyncio.sleep(down_s)
        self.shutting_down = False
        self.pbx.accepting_calls = True
        self._server = await self._listen(self.port)
        return cut

    async def _close_sessions(self, grace_s: float) -> None:
        self._all_gone = asyncio.Event()
        for session in list(self._sessions):
            session.close()
        if self._sessions:
            # Give clients a moment to read the Shutdown event, then cut the rest.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_gone.wait(), timeout=grace_s)
        for session in list(self._sessions):
            session.abort()
        await asyncio.sleep(0)

    def _stop_listening(self) -> list[asyncio.Server]:
        """Close every listener first so nobody connects while sessions are closed."""
        servers = [*self._retired, *([self._server] if self._server else [])]
        self._server = None
        self._retired.clear()
        for server in servers:
            server.close()
        return servers

    async def drop_connections(self) -> None:
        """Fault injection: reset every client connection; the listener stays up."""
        for session in list(self._sessions):
            session.abort()
        await asyncio.sleep(0)

    async def set_listening(self, listening: bool) -> None:
        """Fault injection: stop accepting connections (or accept again, same port)."""
        if listening and self._server is None and self._port is not None:
            self._server = await self._listen(self._port)
        elif not listening and self._server is not None:
            # Existing sessions stay; Server.wait_closed() would wait for them, so the
            # old server is only awaited in stop().
            self._server.close()
            self._retired.append(self._server)
            self._server = None

    @property
    def listening(self) -> bool:
        return self._server is not None

    # -- sessions ----------------------------------------------------------------------

    @property
    def sessions(self) -> tuple[SessionInfo, ...]:
        return tuple(session.info() for session in self._sessions)

    @property
    def authenticated_sessions(self) -> int:
        return sum(1 for session in self._sessions if session.authenticated)

    def _register(self, session: AmiSession) -> None:
        self._sessions.append(session)

    def _unregister(self, session: AmiSession) -> None:
        if session in self._sessions:
            self._sessions.remove(session)
        if not self._sessions and self._all_gone is not None:
            self._all_gone.set()

    # -- events ------------------------------------------------------------------------

    def privilege(self, category: int) -> str:
        text = self._privileges.get(category)
        if text is None:
            text = self._privileges[category] = perms.authority_to_str(category)
        return text

    def _on_event(self, event: Event) -> None:
        targets = [session for session in self._sessions if session.wants(event.category)]
        if not targets:
            return
        stamp = timestamp(self.pbx.now()) if self.timestamp_events else None
        data = render_event(event, self.privilege(event.category), stamp)
        for session in targets:
            session.send(data)
