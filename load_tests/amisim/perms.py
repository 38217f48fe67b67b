"""manager.conf privilege classes as Asterisk encodes them (main/manager.c ``perms[]``).

Read classes filter events, write classes gate actions. Bit values are Asterisk's
``EVENT_FLAG_*`` constants so masks given as numbers (``Events: 34``) mean the same here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

SYSTEM = 1 << 0
CALL = 1 << 1
LOG = 1 << 2
VERBOSE = 1 << 3
COMMAND = 1 << 4
AGENT = 1 << 5
USER = 1 << 6
CONFIG = 1 << 7
DTMF = 1 << 8
REPORTING = 1 << 9
CDR = 1 << 10
DIALPLAN = 1 << 11
ORIGINATE = 1 << 12
AGI = 1 << 13
CC = 1 << 15
AOC = 1 << 16
TEST = 1 << 17
SECURITY = 1 << 18
MESSAGE = 1 << 19
ALL = 0x7FFFFFFF  # INT_MAX, as in Asterisk's perms[] table

# Order matters: authority_to_str() lists labels in this order ("call,all").
PERMS: tuple[tuple[int, str], ...] = (
    (SYSTEM, "system"),
    (CALL, "call"),
    (LOG, "log"),
    (VERBOSE, "verbose"),
    (COMMAND, "command"),
    (AGENT, "agent"),
    (USER, "user"),
    (CONFIG, "config"),
    (DTMF, "dtmf"),
    (REPORTING, "reporting"),
    (CDR, "cdr"),
    (DIALPLAN, "dialplan"),
    (ORIGINATE, "originate"),
    (AGI, "agi"),
    (CC, "cc"),
    (AOC, "aoc"),
    (TEST, "test"),
    (SECURITY, "security"),
    (MESSAGE, "message"),
    (ALL, "all"),
)
_BY_LABEL = {label: num for num, label in PERMS}
_TRUE = frozenset({"yes", "true", "y", "t", "1", "on"})
_FALSE = frozenset({"no", "false", "n", "f", "0", "off"})


def mask_of(classes: Iterable[str]) -> int:
    """Bit mask for manager.conf class names; unknown names are ignored, as Asterisk does."""
    mask = 0
    for name in classes:
        mask |= _BY_LABEL.get(name.strip().lower(), 0)
    return mask


def authority_to_str(category: int) -> str:
    """The ``Privilege:`` value of an event: every matching label, always ending in ``all``."""
    labels = [label for num, label in PERMS if category & num]
    return ",".join(labels) if labels else "<none>"


def strings_to_mask(value: str) -> int:
    """Event mask from ``Events:``/``EventMask:``: -1 means "leave unchanged" (empty value)."""
    text = value.strip()
    if not text:
        return -1
    if text.isdigit():
        return int(text)
    if text.lower() in _FALSE:
        return 0
    if text.lower() in _TRUE:
        return ALL
    return mask_of(text.split(","))


@dataclass(frozen=True)
class AmiUser:
    """A manager.conf user: secret and read/write class names (``{"call", "agent"}``)."""

    secret: str
    read: frozenset[str]
    write: frozenset[str]
