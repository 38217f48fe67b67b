"""Shared state of the simulated PBX: clock, timers, channels, listeners and ledger.

Channel-level events (Newchannel, Newstate, VarSet, Hangup) are emitted here so every
feature module produces them the same way, in the order Asterisk's stasis layer does.
"""

from __future__ import annotations

import contextlib
import logging
import random
import uuid
from collections.abc import Callable, Iterator

from load_tests.amisim import perms
from load_tests.amisim.ledger import Ledger
from load_tests.amisim.snapshot import UP, Channel, cause_text
from load_tests.amisim.timers import Timers
from load_tests.amisim.wire import EOL, Event
from router.clock import Clock

logger = logging.getLogger(__name__)

EventListener = Callable[[Event], None]
DEFAULT_CHANNELVARS = ("ACD_QUEUE", "ACD_PRIORITY", "ACD_REQUIREMENTS", "ACD_PREFERRED_AGENT")


def clean(value: str) -> str:
    """Strip line breaks from caller-supplied text so it cannot break AMI framing."""
    return value.replace("\r", " ").replace("\n", " ")


class Core:
    """State every feature of the PBX model shares."""

    def __init__(self, clock: Clock, *, seed: int | None, channelvars: tuple[str, ...]) -> None:
        self.clock = clock
        self.timers = Timers(clock)
        self.ledger = Ledger()
        self.rng = random.Random(seed)
        self.channelvars = channelvars
        self.channels: dict[str, Channel] = {}
        self.by_uniqueid: dict[str, Channel] = {}
        self.globals = {"ACD_DEFAULT_QUEUE": "support", "ACD_RING_TIMEOUT": "15"}
        self.started_at = clock.now()
        self._listeners: list[EventListener] = []
        self._held: list[Event] | None = None
        self._counter = 0

    def now(self) -> float:
        return self.clock.now()

    # -- events ---------------------------------------------------------------------

    def subscribe(self, listener: EventListener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def emit(self, name: str, category: int, body: str) -> None:
        event = Event(name, category, body)
        if self._held is not None:
            self._held.append(event)
            return
        self._dispatch(event)

    @contextlib.contextmanager
    def holding_events(self) -> Iterator[None]:
        """Delay events raised inside the block until it ends.

        An action's response goes out before the events it causes, as on Asterisk where
        they travel through stasis after the action handler has answered.
        """
        if self._held is not None:
            yield
            return
        self._held = []
        try:
            yield
        finally:
            held, self._held = self._held, None
            for event in held:
                self._dispatch(event)

    def _dispatch(self, event: Event) -> None:
        for listener in tuple(self._listeners):
            try:
                listener(event)
            except Exception:  # one broken listener must not stop the phone system
                logger.exception("event listener failed on %s", event.name)

    def emit_channel(self, name: str, channel: Channel, extra: str = "") -> None:
        self.emit(name, perms.CALL, channel.snapshot() + extra)

    # -- channels -------------------------------------------------------------------

    def new_channel(
        self, resource: str, *, linkedid: str | None = None, uniqueid: str | None = None, **fields: object
    ) -> Channel:
        """Allocate ``<resource>-%08x`` with a ``<epoch>.<n>`` Uniqueid (or the one Originate's
        ChannelId asked for) and emit Newchannel."""
        index = self._counter
        self._counter += 1
        now = self.now()
        uniqueid = uniqueid or f"{int(now)}.{index}"
        channel = Channel(
            name=f"{resource}-{index:08x}",
            uniqueid=uniqueid,
            linkedid=linkedid or uniqueid,
            created_at=now,
            context=str(fields.pop("context")),
            exten=str(fields.pop("exten")),
            manager_vars=self.channelvars,
        )
        channel.update(**fields)
        self.channels[channel.name] = channel
        self.by_uniqueid[uniqueid] = channel
        self.emit_channel("Newchannel", channel)
        return channel

    def find_channel(self, name_or_uniqueid: str) -> Channel | None:
        """Lookup by name, then Uniqueid, like ``ast_channel_get_by_name``."""
        return self.channels.get(name_or_uniqueid) or self.by_uniqueid.get(name_or_uniqueid)

    def set_state(self, channel: Channel, state: int) -> None:
        channel.update(state=state)
        self.emit_channel("Newstate", channel)

    def set_var(self, channel: Channel, name: str, value: str) -> None:
        channel.set_var(name, value)
        self.emit(
            "VarSet",
            perms.DIALPLAN,
            f"{channel.snapshot()}Variable: {name}{EOL}Value: {value}{EOL}",
        )

    def hangup(self, channel: Channel, cause: int) -> None:
        """Destroy a channel and emit Hangup with its cause."""
        self.channels.pop(channel.name, None)
        self.by_uniqueid.pop(channel.uniqueid, None)
        channel.update(hangup_pending=True)
        self.emit_channel("Hangup", channel, f"Cause: {cause}{EOL}Cause-txt: {cause_text(cause)}{EOL}")

    def in_either_order(self, first: Callable[[], None], second: Callable[[], None]) -> None:
        """Two events Asterisk sends on different paths, so that either reaches the manager
        first (seen on Asterisk 22: an Originate that rang out sends OriginateResponse
        straight away and the channel's Hangup through stasis, in one order or the other)."""
        for step in (first, second) if self.rng.random() < 0.5 else (second, first):
            step()

    def answer(self, channel: Channel) -> None:
        if channel.state != UP:
            self.set_state(channel, UP)

    def new_bridge_id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
