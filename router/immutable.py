"""Immutable value types for what the routing loop makes per message (events, envelopes,
commands, script replies, candidates, decisions).

``@dataclass(frozen=True)`` guards every attribute at run time: its ``__init__`` sets each
field through ``object.__setattr__``, about 100 ns a field where a plain slot costs about 20
(a ten-field instance: 1.2 µs against 0.2 on this machine), and the routing worker builds a
few dozen such objects per decision (docs/performance.md). ``@immutable`` makes the same
dataclass, equal and hashed by value as a frozen one is, without that guard: the type checker
(mypy, ``--strict`` over router/ and workers/) still refuses any assignment to a field, since
the decorator declares frozen by default (PEP 681). Change one with ``dataclasses.replace``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import dataclass_transform


@dataclass_transform(frozen_default=True)
def immutable[T](cls: type[T]) -> type[T]:
    """A slotted dataclass, hashed by value, that mypy treats as frozen."""
    return dataclass(slots=True, unsafe_hash=True)(cls)
