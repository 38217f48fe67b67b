"""The records of docs/records.md, read from their envelopes into typed rows, validated once.

Each field of the contract is converted to what its column holds (epoch seconds to an
aware UTC datetime for ``timestamptz``, integers bounded to PostgreSQL's ``integer``,
strings without NUL, which PostgreSQL's text cannot hold), so that a record PostgreSQL
would reject is caught here, named, and skipped; fields the contract may add later are
ignored. ``MalformedEventError`` says which field is wrong and why.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

from router.envelope import Envelope
from router.errors import MalformedEventError

RECORD_CALL = "record.call"
RECORD_AGENT_STATE = "record.agent_state"

OUTCOMES = frozenset({"answered", "abandoned", "overflowed", "transferred", "closed_by_resync", "pbx_restart"})
AGENT_STATES = frozenset({"available", "reserved", "on_call", "wrap_up", "paused", "logged_out"})
INT_MAX = 2**31 - 1  # PostgreSQL integer

Convert = Callable[[str, Any], Any]


def records_topics(prefix: str) -> tuple[str, str]:
    """The call and agent-state records topics under ``kafka.topic_prefix``."""
    return f"{prefix}.records.calls.v1", f"{prefix}.records.agents.v1"


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One row of ``call_records``: a call as it left the ACD (docs/records.md)."""

    record_id: str
    revision: int
    site: str
    call_id: str
    queue: str
    first_queue: str
    priority: int
    caller_number: str
    caller_name: str
    entered_at: datetime
    first_offered_at: datetime | None
    answered_at: datetime | None
    ended_at: datetime
    outcome: str
    wait_s: float
    talk_s: float
    wrapup_s: float | None
    agent_id: str
    offers: int
    ring_no_answers: int
    requirements: str
    decision_reason: str
    sl_threshold_s: float
    answered_within_threshold: bool
    abandoned_within_threshold: bool
    recording: str
    qa_sampled: bool

    @property
    def key(self) -> tuple[str, str]:
        return self.site, self.call_id


@dataclass(frozen=True, slots=True)
class AgentStateRecord:
    """One row of ``agent_state_records``: a state an agent was in, once it ended."""

    record_id: str
    site: str
    agent_id: str
    state: str
    reason: str
    start_at: datetime
    end_at: datetime
    duration_s: float


Record = CallRecord | AgentStateRecord


def _fail(name: str, value: Any, expected: str) -> MalformedEventError:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return MalformedEventError(f"field {name!r} = {shown}: expected {expected}")


def text(name: str, value: Any) -> str:
    if not isinstance(value, str) or "\x00" in value:
        raise _fail(name, value, "a string (without NUL)")
    return value


def nonempty(name: str, value: Any) -> str:
    if not text(name, value):
        raise _fail(name, value, "a non-empty string")
    return str(value)


def _number(name: str, value: Any, expected: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _fail(name, value, expected)
    return float(value)


def seconds(name: str, value: Any) -> float:
    if _number(name, value, "a number of seconds >= 0") < 0:
        raise _fail(name, value, "a number of seconds >= 0")
    return float(value)


def optional(convert: Convert) -> Convert:
    def converted(name: str, value: Any) -> Any:
        return None if value is None else convert(name, value)

    return converted


def instant(name: str, value: Any) -> datetime:
    epoch = _number(name, value, "epoch seconds")
    try:
        return datetime.fromtimestamp(epoch, UTC)
    except (OverflowError, OSError, ValueError):
        raise _fail(name, value, "epoch seconds within years 1-9999") from None


def integer(low: int) -> Convert:
    def converted(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= INT_MAX:
            raise _fail(name, value, f"an integer from {low} to {INT_MAX}")
        return value

    return converted


def flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _fail(name, value, "true or false")
    return value


def one_of(allowed: frozenset[str]) -> Convert:
    def converted(name: str, value: Any) -> str:
        if value not in allowed:
            raise _fail(name, value, f"one of {sorted(allowed)}")
        return str(value)

    return converted


# Contract field -> (column, conversion), in the columns' order.
CALL_FIELDS: dict[str, tuple[str, Convert]] = {
    "record_id": ("record_id", nonempty),
    "revision": ("revision", integer(1)),
    "site": ("site", nonempty),
    "call_id": ("call_id", nonempty),
    "queue": ("queue", nonempty),
    "first_queue": ("first_queue", nonempty),
    "priority": ("priority", integer(-INT_MAX)),
    "caller_number": ("caller_number", text),
    "caller_name": ("caller_name", text),
    "entered_at": ("entered_at", instant),
    "first_offered_at": ("first_offered_at", optional(instant)),
    "answered_at": ("answered_at", optional(instant)),
    "ended_at": ("ended_at", instant),
    "outcome": ("outcome", one_of(OUTCOMES)),
    "wait_s": ("wait_s", seconds),
    "talk_s": ("talk_s", seconds),
    "wrapup_s": ("wrapup_s", optional(seconds)),
    "agent_id": ("agent_id", text),
    "offers": ("offers", integer(0)),
    "ring_no_answers": ("ring_no_answers", integer(0)),
    "requirements": ("requirements", text),
    "decision_reason": ("decision_reason", text),
    "sl_threshold_s": ("sl_threshold_s", seconds),
    "answered_within_threshold": ("answered_within_threshold", flag),
    "abandoned_within_threshold": ("abandoned_within_threshold", flag),
    "recording": ("recording", text),
    "qa_sampled": ("qa_sampled", flag),
}

AGENT_STATE_FIELDS: dict[str, tuple[str, Convert]] = {
    "record_id": ("record_id", nonempty),
    "site": ("site", nonempty),
    "agent_id": ("agent_id", nonempty),
    "state": ("state", one_of(AGENT_STATES)),
    "reason": ("reason", text),
    "start": ("start_at", instant),
    "end": ("end_at", instant),
    "duration_s": ("duration_s", seconds),
}


def _columns(data: Mapping[str, Any], spec: Mapping[str, tuple[str, Convert]]) -> dict[str, Any]:
    missing = [name for name in spec if name not in data]
    if missing:
        raise MalformedEventError(f"fields missing: {missing}")
    return {column: convert(name, data[name]) for name, (column, convert) in spec.items()}


def parse_call_record(data: Mapping[str, Any]) -> CallRecord:
    record = CallRecord(**_columns(data, CALL_FIELDS))
    if record.ended_at < record.entered_at:
        raise MalformedEventError(f"ended_at {record.ended_at} is before entered_at {record.entered_at}")
    return record


def parse_agent_state_record(data: Mapping[str, Any]) -> AgentStateRecord:
    record = AgentStateRecord(**_columns(data, AGENT_STATE_FIELDS))
    if record.end_at < record.start_at:
        raise MalformedEventError(f"end {record.end_at} is before start {record.start_at}")
    return record


PARSERS: dict[str, Callable[[Mapping[str, Any]], Record]] = {
    RECORD_CALL: parse_call_record,
    RECORD_AGENT_STATE: parse_agent_state_record,
}


def parse_record(envelope: Envelope) -> Record:
    """The record an envelope carries; ``MalformedEventError`` for any other type or a bad field."""
    parser = PARSERS.get(envelope.type)
    if parser is None:
        raise MalformedEventError(f"envelope type {envelope.type!r} is not a record type {sorted(PARSERS)}")
    return parser(envelope.data)


def columns(row_type: type[Record]) -> tuple[str, ...]:
    """The table columns a row type fills, in order."""
    return tuple(field.name for field in fields(row_type))
