"""The one way a test waits for something to happen: ``await eventually(probe, what)``."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any


async def eventually[T](
    probe: Callable[[], T | Awaitable[T]],
    what: str | Callable[[], str] = "",
    *,
    within: float = 10.0,
    every: float = 0.05,
    ignoring: tuple[type[BaseException], ...] = (),
) -> T:
    """Call ``probe`` (plain or async) until it returns something truthy, and return that.

    After ``within`` seconds: an AssertionError that says what was awaited (``what``, or
    ``what()`` when it is a function, e.g. to read a log only then; else the probe's source)
    and the last value seen. Exceptions of the types in ``ignoring`` count as "not yet"
    (e.g. ``OSError`` while a process is not listening yet); they are the last value seen.
    """
    last: Any = None
    deadline = asyncio.timeout(within)
    try:
        async with deadline:
            while True:
                try:
                    value = probe()
                    if inspect.isawaitable(value):
                        value = await value
                except ignoring as exc:
                    last = exc
                else:
                    last = value
                    if value:
                        return value
                await asyncio.sleep(every)
    except TimeoutError:
        if not deadline.expired():
            raise  # the probe's own
        described = what() if callable(what) else what
        raise AssertionError(
            f"not within {within:g} s: {described or _source(probe)}; last seen: {last!r}"
        ) from None


def _source(probe: Callable[..., Any]) -> str:
    try:
        return inspect.getsource(probe).strip()
    except (OSError, TypeError):
        return getattr(probe, "__qualname__", repr(probe))
