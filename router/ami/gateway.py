"""The AMI connection, on panoramisk: checked login, reconnect with backoff, ping watchdog.

panoramisk's ``Manager`` parses the protocol and matches responses to actions; this
module owns the connection's life cycle instead of panoramisk's built-in behaviour:

- a failed login raises ``AmiAuthenticationError`` instead of retrying forever;
- a lost connection is re-established with exponential backoff and jitter, and the
  caller's ``on_connected`` hook (ingest's resync) runs after every (re)connect;
- actions that were in flight when the link dropped are *not* re-sent after the
  reconnect (panoramisk would): a Redirect whose response was lost may have happened,
  and sending it twice could ring a second agent. Their callers get an error instead.
- a Ping every ``ping_interval_s``, not answered within ``ping_timeout_s``, drops the link
  and makes it again: a peer that stopped answering without closing (a hung Asterisk, a
  network that drops everything) is noticed within the sum, which TCP alone would not do.
- an Asterisk that is shutting down (``core restart now|gracefully``) answers every action
  "Asterisk is shutting down" and then sends ``Event: Shutdown`` and closes the socket:
  that is the PBX going away, not a fault of ours. Such answers raise
  ``AmiShuttingDownError`` (retriable), ``ready`` turns False, and ``run`` keeps going:
  it reconnects with backoff once Asterisk listens again.

panoramisk's callbacks only hand messages to ``on_message`` (which should just enqueue);
the work happens in the caller's supervised task, so ordering and exceptions are kept.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Any

from panoramisk import Manager
from panoramisk.ami_protocol import AMIProtocol
from panoramisk.message import Message

from router.errors import (
    SHUTTING_DOWN_MESSAGE,
    AmiActionError,
    AmiAuthenticationError,
    AmiConnectionError,
    AmiShuttingDownError,
)
from router.settings import AmiSettings

logger = logging.getLogger(__name__)

OnMessage = Callable[[Message], None]


class AmiLinkState(StrEnum):
    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    CLOSED = "closed"


# panoramisk turns a header given twice into a list, and its handle_message reads Event,
# ActionID and CommandID as text (.lower(), dict keys): a list there raised inside
# data_received, and asyncio closed the connection (tests/test_ami_fuzz.py found it). Asterisk
# never repeats them, so such a frame is garbage: dropped here, and the session lives on.
SCALAR_HEADERS = ("event", "actionid", "commandid")


# panoramisk ships no types, so its protocol and Manager are Any to mypy.
class _Protocol(AMIProtocol):  # type: ignore[misc]
    def handle_message(self, message: Message) -> None:
        repeated = [name for name in SCALAR_HEADERS if isinstance(message.get(name), list)]
        if repeated:
            logger.warning("AMI frame with %s given more than once: dropped", ", ".join(repeated))
            return
        super().handle_message(message)


class _Manager(Manager):  # type: ignore[misc]
    """panoramisk's Manager with its own reconnect, pinger and action replay switched off."""

    def __init__(self, on_lost: Callable[[_Manager], None], **config: Any) -> None:
        super().__init__(**config)
        self._on_lost = on_lost

    def connection_made(self, f: asyncio.Future[Any]) -> None:
        if f.cancelled() or f.exception() is not None:
            return  # the awaiting AmiGateway.connect reports it; no auto-retry here
        super().connection_made(f)
        self._cancel_pinger()

    def login(self, future: asyncio.Future[Any]) -> bool:
        authenticated = bool(super().login(future))
        self._cancel_pinger()
        return authenticated

    def _cancel_pinger(self) -> None:
        pinger: asyncio.TimerHandle | None = getattr(self, "pinger", None)
        if pinger is not None:
            pinger.cancel()
            self.pinger = None

    async def send_awaiting_actions(self, *_: Any) -> None:
        return None

    def connection_lost(self, exc: BaseException | None) -> None:
        self._connected = False
        self.awaiting_actions.clear()  # never replayed: AmiGateway fails them instead
        self._on_lost(self)


class AmiGateway:
    """One AMI session to Asterisk, kept alive for as long as ``run`` runs."""

    def __init__(
        self,
        settings: AmiSettings,
        *,
        on_message: OnMessage | None = None,
        events: bool = True,
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self._on_message = on_message
        self._on_lost = on_lost
        self._events = "on" if events else "off"
        self._manager: _Manager | None = None
        self._lost = asyncio.Event()
        self._in_flight: set[asyncio.Future[Any]] = set()
        self.state = AmiLinkState.DISCONNECTED
        self.version = ""
        self.connects = 0
        # Asterisk said it is shutting down (an answer or Event: Shutdown); cleared by the
        # next login, which only a fresh Asterisk accepts.
        self.pbx_shutting_down = False

    @property
    def address(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    @property
    def connected(self) -> bool:
        return self.state is AmiLinkState.CONNECTED

    @property
    def ready(self) -> bool:
        """Connected to an Asterisk that is not shutting down (what /ready reports)."""
        return self.connected and not self.pbx_shutting_down

    async def connect(self) -> None:
        """One connection attempt with login; raises AmiAuthenticationError or AmiConnectionError."""
        self.state = AmiLinkState.CONNECTING
        self._lost.clear()
        manager = self._new_manager()
        self._manager = manager
        try:
            await asyncio.wait_for(self._open(manager), self.settings.connect_timeout_s)
        except TimeoutError:
            self._drop(manager)
            raise AmiConnectionError(
                f"AMI at {self.address} did not complete connect and login within "
                f"{self.settings.connect_timeout_s}s: is this an Asterisk manager port?"
            ) from None
        except BaseException:
            self._drop(manager)
            raise
        self.state = AmiLinkState.CONNECTED
        self.pbx_shutting_down = False
        self.version = manager.protocol.version or ""
        self.connects += 1
        logger.info(
            "logged in to AMI at %s (AMI %s) as %s", self.address, self.version, self.settings.username
        )

    def _new_manager(self) -> _Manager:
        manager = _Manager(
            self._connection_lost,
            host=self.settings.host,
            port=self.settings.port,
            username=self.settings.username,
            secret=self.settings.secret.get_secret_value(),
            events=self._events,
            loop=asyncio.get_running_loop(),
            ping_delay=10**9,
            protocol_factory=_Protocol,
        )
        manager.register_event("Shutdown", lambda _manager, message: self._pbx_shutdown(message))
        if self._on_message is not None:
            on_message = self._on_message
            manager.register_event("*", lambda _manager, message: on_message(message))
        return manager

    def _pbx_shutdown(self, message: Message) -> None:
        """Event: Shutdown: the link is about to close; run reconnects when Asterisk is back."""
        self._note_shutting_down()
        logger.warning(
            "Asterisk at %s is shutting down (Shutdown: %s, Restart: %s): the AMI link will close",
            self.address,
            message.get("Shutdown", "?"),
            message.get("Restart", "?"),
        )

    def _note_shutting_down(self) -> None:
        if not self.pbx_shutting_down:
            logger.warning("Asterisk at %s is shutting down: not ready until it is back", self.address)
        self.pbx_shutting_down = True

    async def _open(self, manager: _Manager) -> None:
        try:
            await manager.connect()
        except OSError as exc:
            raise AmiConnectionError(
                f"cannot connect to AMI at {self.address}: {exc.strerror or exc}. Check that Asterisk "
                "runs, that manager.conf has enabled = yes on that port, and ACD_AMI__HOST / ACD_AMI__PORT"
            ) from None
        response = await manager.authenticated_future
        if not response.success and response.message == SHUTTING_DOWN_MESSAGE:
            self._note_shutting_down()
            raise AmiShuttingDownError("Login", SHUTTING_DOWN_MESSAGE)
        if not response.success:
            raise AmiAuthenticationError(
                f"Asterisk at {self.address} refused AMI login for user {self.settings.username!r} "
                f"({response.message or 'no reason given'}): check ACD_AMI__USERNAME and ACD_AMI__SECRET "
                "(or ami.secret_file) against the user's section in manager.conf, and its permit/deny lines"
            )

    def _connection_lost(self, manager: _Manager) -> None:
        if manager is self._manager:
            if self.state is AmiLinkState.CONNECTED:
                logger.warning("AMI connection to %s lost", self.address)
                self._link_lost()
            self.state = AmiLinkState.DISCONNECTED
            self._lost.set()
        # Fail what was in flight now rather than at its timeout.
        for future in list(self._in_flight):
            if not future.done():
                future.set_exception(
                    AmiConnectionError(f"AMI connection to {self.address} lost before the answer")
                )

    def _drop(self, manager: _Manager) -> None:
        manager.close()
        if manager is self._manager:
            if self.state is AmiLinkState.CONNECTED:
                self._link_lost()
            self.state = AmiLinkState.DISCONNECTED

    def _link_lost(self) -> None:
        if self._on_lost is not None:
            self._on_lost()

    async def run(self, on_connected: Callable[[], Awaitable[None]] | None = None) -> None:
        """Stay connected until cancelled; wrong credentials end it with AmiAuthenticationError."""
        attempt = 0
        while True:
            try:
                await self.connect()
            except (AmiConnectionError, AmiShuttingDownError) as exc:
                attempt += 1
                delay = self._backoff(attempt)
                logger.warning("%s; retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                continue
            attempt = 0
            if on_connected is not None:
                await on_connected()
            await self._watch()

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.settings.reconnect_max_s, self.settings.reconnect_min_s * 2 ** (attempt - 1))
        return random.uniform(self.settings.reconnect_min_s, max(ceiling, self.settings.reconnect_min_s))

    async def _watch(self) -> None:
        """Return when the link is lost; a Ping without answer counts as lost."""
        while not self._lost.is_set():
            try:
                await asyncio.wait_for(self._lost.wait(), self.settings.ping_interval_s)
                return
            except TimeoutError:
                pass
            try:
                await self.send_action({"Action": "Ping"}, timeout_s=self.settings.ping_timeout_s)
            except AmiShuttingDownError:
                continue  # the link is alive; Asterisk closes it when it goes
            except AmiConnectionError as exc:
                logger.warning("AMI ping failed (%s): reconnecting", exc)
                if self._manager is not None:
                    self._drop(self._manager)
                return

    async def send_action(
        self, action: dict[str, str], *, timeout_s: float | None = None, as_list: bool | None = None
    ) -> Any:
        """Send one action; its response (a list for list actions), or AmiActionError.

        ``as_list=False`` for actions whose single answer panoramisk would mistake for the
        start of a list (QueueAdd's "Added interface to queue").
        """
        manager = self._manager
        name = action.get("Action", "?")
        if manager is None or not self.connected:
            raise AmiConnectionError(f"AMI action {name}: not connected to {self.address}")
        future = manager.send_action(dict(action), as_list=as_list)
        self._in_flight.add(future)
        timeout = timeout_s or self.settings.action_timeout_s
        try:
            result = await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise AmiConnectionError(
                f"AMI action {name}: no response from {self.address} within {timeout}s"
            ) from None
        finally:
            self._in_flight.discard(future)
        first = result[0] if isinstance(result, list) else result
        if str(first.get("Response", "")).lower() == "error":
            message = str(first.get("Message", ""))
            if message == SHUTTING_DOWN_MESSAGE:
                self._note_shutting_down()
                raise AmiShuttingDownError(name, message)
            raise AmiActionError(name, message)
        # Any action answered: Asterisk is not (or no longer: `core abort shutdown`) going away.
        self.pbx_shutting_down = False
        return result

    async def probe_shutting_down(self, timeout_s: float = 2.0) -> bool:
        """Whether Asterisk is shutting down right now (asks with a Ping unless known).

        A call that ``core restart now`` hangs up looks like any other Hangup on AMI; only
        an action sent after it tells the two apart (Asterisk refuses every action from the
        moment its shutdown begins, before it hangs anything up).
        """
        if self.pbx_shutting_down or not self.connected:
            return self.pbx_shutting_down
        try:
            await self.send_action({"Action": "Ping"}, timeout_s=timeout_s)
        except AmiShuttingDownError:
            return True
        except (AmiActionError, AmiConnectionError):
            return self.pbx_shutting_down
        return False

    async def close(self) -> None:
        """Log off and close; idempotent."""
        manager, self._manager = self._manager, None
        self.state = AmiLinkState.CLOSED
        if manager is not None:
            manager.close()
