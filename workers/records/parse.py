"""The records of docs/records.md as rows of the recorder's tables.

router.records alone defines the records (fields, types, outcomes and states) and parses
their envelopes. This module says where each field goes, derived from the fields of the
router's dataclasses: the table, the column (the field's own name, except ``start`` and
``end``, reserved words in SQL) and the column's type (a float whose column ends in
``_at`` is an instant, ``timestamptz``; one that ends in ``_s`` is seconds). It also
refuses, naming the field, what PostgreSQL would refuse or what would make a wrong row:
NUL in text, integers outside ``integer`` (or below the field's minimum), instants
outside years 1-9999, negative seconds, an end before its start, an empty identity.
Such a record is skipped by the recorder, never written half-right.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from router import records
from router.bus import Topics
from router.envelope import RECORD_AGENT_STATE, RECORD_CALL, Envelope
from router.errors import MalformedEventError
from router.records import AgentStateRecord, CallRecord, Record

__all__ = [
    "AGENT_STATE_TABLE",
    "CALL_TABLE",
    "RECORD_AGENT_STATE",
    "RECORD_CALL",
    "AgentStateRecord",
    "CallRecord",
    "Column",
    "Record",
    "Table",
    "parse_agent_state_record",
    "parse_call_record",
    "parse_record",
    "records_topics",
]

INT_MIN, INT_MAX = -(2**31), 2**31 - 1  # PostgreSQL integer
SQL_TYPES: dict[object, str] = {str: "text", int: "integer", float: "double precision", bool: "boolean"}
INSTANT = "timestamptz"
# asyncpg writes these two instants as PostgreSQL's -infinity and infinity: not times.
INFINITIES = (datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC))


def records_topics(prefix: str) -> tuple[str, str]:
    """The call and agent-state records topics under ``kafka.topic_prefix``."""
    topics = Topics(prefix)
    return topics.call_records, topics.agent_records


def _fail(where: str, name: str, value: Any, expected: str) -> MalformedEventError:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return MalformedEventError(f"{where}: field {name!r} = {shown}: expected {expected}")


@dataclass(frozen=True, slots=True)
class Column:
    """Where one field of a record goes, and what its column can hold."""

    field: str
    name: str
    sql_type: str
    nullable: bool
    minimum: int = 0  # integers only
    non_empty: bool = False  # text only

    def sql_value(self, value: Any) -> Any:
        """The value as the column takes it: an instant as an aware UTC datetime."""
        if self.sql_type == INSTANT and value is not None:
            return datetime.fromtimestamp(value, UTC)
        return value

    def check(self, where: str, value: Any) -> None:
        """MalformedEventError, naming the field, for a value the column cannot hold."""
        if value is None:
            return
        if self.sql_type == "text" and ("\x00" in value or (self.non_empty and not value)):
            raise _fail(
                where,
                self.field,
                value,
                "a non-empty string without NUL" if self.non_empty else "a string without NUL",
            )
        if self.sql_type == "integer" and not self.minimum <= value <= INT_MAX:
            raise _fail(where, self.field, value, f"an integer from {self.minimum} to {INT_MAX}")
        if self.sql_type == "double precision" and value < 0:
            raise _fail(where, self.field, value, "a number of seconds >= 0")
        if self.sql_type == INSTANT:
            try:
                finite = self.sql_value(value) not in INFINITIES
            except (OverflowError, OSError, ValueError):
                finite = False
            if not finite:
                raise _fail(
                    where, self.field, value, "epoch seconds within years 1-9999 (not their very ends)"
                )


def _column(field: str, hint: object, name: str, minimum: int, non_empty: bool) -> Column:
    """The column of a field typed ``hint`` (``int``, ``float | None``, ...)."""
    present = [arg for arg in typing.get_args(hint) if arg is not type(None)] or [hint]
    sql_type = SQL_TYPES[present[0]]
    if sql_type == "double precision" and name.endswith("_at"):
        sql_type = INSTANT
    elif sql_type == "double precision" and not name.endswith("_s"):
        raise TypeError(f"{field}: a float field is an instant (column *_at) or seconds (*_s)")
    nullable = type(None) in typing.get_args(hint)
    return Column(field, name, sql_type, nullable, minimum=minimum, non_empty=non_empty)


@dataclass(frozen=True, slots=True)
class Table[R: (CallRecord, AgentStateRecord)]:
    """A table of one kind of record: one column per field of the record, in its order."""

    name: str
    record_type: type[R]
    envelope_type: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]  # the primary key's columns
    order: tuple[str, str]  # (start, end): an end before its start is malformed

    @classmethod
    def of(
        cls,
        name: str,
        record_type: type[R],
        envelope_type: str,
        *,
        key: tuple[str, ...],
        order: tuple[str, str],
        non_empty: frozenset[str],
        renamed: Mapping[str, str] = MappingProxyType({}),
        minimum: Mapping[str, int] = MappingProxyType({}),
    ) -> Table[R]:
        """The table of ``record_type``: a column per field; ``renamed`` only where the
        field's name cannot be the column's, ``minimum`` only where it is not 0."""
        names = {spec.name for spec in dataclasses.fields(record_type)}
        unknown = ({*order, *non_empty, *renamed, *minimum} - names) | (
            set(key) - names - set(renamed.values())
        )
        if unknown:
            raise ValueError(f"{name}: {sorted(unknown)} are not fields of {record_type.__name__}")
        hints = typing.get_type_hints(record_type)
        columns = tuple(
            _column(
                spec.name,
                hints[spec.name],
                renamed.get(spec.name, spec.name),
                minimum.get(spec.name, 0),
                spec.name in non_empty,
            )
            for spec in dataclasses.fields(record_type)
        )
        return cls(name, record_type, envelope_type, columns, key, order)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns)

    def check(self, record: R) -> R:
        """The record, if PostgreSQL takes every value of it; else MalformedEventError."""
        for column in self.columns:
            column.check(self.envelope_type, getattr(record, column.field))
        start, end = self.order
        if getattr(record, end) < getattr(record, start):
            raise _fail(
                self.envelope_type,
                end,
                getattr(record, end),
                f"not before {start} ({getattr(record, start)!r})",
            )
        return record

    def row(self, record: R) -> tuple[Any, ...]:
        """The record's values in the columns' order, as PostgreSQL takes them."""
        return tuple(column.sql_value(getattr(record, column.field)) for column in self.columns)


CALL_TABLE = Table.of(
    "call_records",
    CallRecord,
    RECORD_CALL,
    key=("site", "call_id"),
    order=("entered_at", "ended_at"),
    non_empty=frozenset({"record_id", "site", "call_id", "queue", "first_queue"}),
    minimum={"revision": 1, "segment": 1, "priority": INT_MIN},
)
AGENT_STATE_TABLE = Table.of(
    "agent_state_records",
    AgentStateRecord,
    RECORD_AGENT_STATE,
    key=("record_id",),
    order=("start", "end"),
    non_empty=frozenset({"record_id", "site", "agent_id"}),
    renamed={"start": "start_at", "end": "end_at"},  # reserved words in SQL
)


def parse_call_record(message: Envelope | Mapping[str, Any]) -> CallRecord:
    """A ``record.call`` envelope (or its ``data``) as router.records parses it, if
    ``call_records`` can hold it; MalformedEventError naming the field otherwise."""
    return CALL_TABLE.check(records.parse_call_record(message))


def parse_agent_state_record(message: Envelope | Mapping[str, Any]) -> AgentStateRecord:
    """A ``record.agent_state`` envelope (or its ``data``), if ``agent_state_records`` can hold it."""
    return AGENT_STATE_TABLE.check(records.parse_agent_state_record(message))


PARSERS: dict[str, Callable[[Envelope], Record]] = {
    RECORD_CALL: parse_call_record,
    RECORD_AGENT_STATE: parse_agent_state_record,
}


def parse_record(envelope: Envelope) -> Record:
    """The record an envelope carries; ``MalformedEventError`` for any other type or a bad field."""
    parser = PARSERS.get(envelope.type)
    if parser is None:
        raise MalformedEventError(f"envelope type {envelope.type!r} is not a record type {sorted(PARSERS)}")
    return parser(envelope)
