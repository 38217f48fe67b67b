"""Timers in simulated seconds, cancelled together, failing loudly.

The telephony model is a set of short synchronous steps fired by timers (ring, answer, talk,
patience). Timer handles are far cheaper than one task per call at hundreds of calls per
second; every callback is wrapped so an exception is logged and kept in ``errors`` (tests
assert it stays empty) instead of disappearing into the loop's exception handler.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from router.clock import Clock

logger = logging.getLogger(__name__)


class Timer:
    """A scheduled step; ``cancel`` is idempotent."""

    __slots__ = ("_handle", "_owner")

    def __init__(self, owner: Timers) -> None:
        self._owner = owner
        self._handle: asyncio.TimerHandle | None = None

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._owner.discard(self)

    @property
    def active(self) -> bool:
        return self._handle is not None


class Timers:
    """Owner of every pending timer of one component."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._pending: set[Timer] = set()
        self.errors: list[BaseException] = []
        self.closed = False

    def call_later(self, sim_seconds: float, callback: Callable[[], None]) -> Timer:
        timer = Timer(self)
        if self.closed:
            return timer  # closed: nothing moves any more, the step is dropped
        loop = asyncio.get_running_loop()
        delay = self._clock.real_seconds(max(sim_seconds, 0.0))
        timer._handle = loop.call_later(delay, self._fire, timer, callback)
        self._pending.add(timer)
        return timer

    def discard(self, timer: Timer) -> None:
        self._pending.discard(timer)

    def _fire(self, timer: Timer, callback: Callable[[], None]) -> None:
        timer._handle = None
        self._pending.discard(timer)
        try:
            callback()
        except Exception as exc:  # a failing step must not kill the loop; it must be seen
            logger.exception("simulator step %r failed", callback)
            self.errors.append(exc)

    def cancel_all(self) -> None:
        self.closed = True
        for timer in list(self._pending):
            timer.cancel()

    def __len__(self) -> int:
        return len(self._pending)
