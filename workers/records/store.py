"""Writing records to PostgreSQL: one transaction per batch, idempotent.

Call records are upserted on (site, call_id) and a row changes only for a higher
``revision``: a record applied twice, or an older revision after a newer one, changes
nothing. Agent-state records are inserted once per ``record_id``. Each table takes a batch
in one statement (``unnest`` of one array per column), after the batch is reduced to one
record per row (the highest revision of a call), so that a statement never touches a row
twice.
"""

from __future__ import annotations

import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from router.errors import RecordRejectedError
from router.postgres import Pool, postgres_errors
from workers.records.parse import AgentStateRecord, CallRecord, Record, columns

CALL_COLUMNS = columns(CallRecord)
AGENT_STATE_COLUMNS = columns(AgentStateRecord)
SQL_TYPES: dict[object, str] = {
    str: "text",
    int: "integer",
    float: "double precision",
    bool: "boolean",
    datetime: "timestamptz",
}


def _sql_type(hint: object) -> str:
    """``text`` for ``str``, ``timestamptz`` for ``datetime | None``, ..."""
    present = [arg for arg in typing.get_args(hint) if arg is not type(None)] or [hint]
    return SQL_TYPES[present[0]]


def _array_types(row_type: type[Record]) -> list[str]:
    hints = typing.get_type_hints(row_type)
    return [f"${i}::{_sql_type(hints[name])}[]" for i, name in enumerate(columns(row_type), start=1)]


def _insert(table: str, names: Sequence[str], row_type: type[Record]) -> str:
    return (
        f"INSERT INTO {table} ({', '.join(names)}) "
        f"SELECT * FROM unnest({', '.join(_array_types(row_type))})"
    )


UPSERT_CALLS = (
    _insert("call_records", CALL_COLUMNS, CallRecord)
    + " ON CONFLICT (site, call_id) DO UPDATE SET "
    + ", ".join(f"{name} = EXCLUDED.{name}" for name in CALL_COLUMNS if name not in ("site", "call_id"))
    + ", recorded_at = now() WHERE call_records.revision < EXCLUDED.revision"
)
INSERT_AGENT_STATES = (
    _insert("agent_state_records", AGENT_STATE_COLUMNS, AgentStateRecord)
    + " ON CONFLICT (record_id) DO NOTHING"
)


@dataclass
class Written:
    """What a batch changed: rows written (inserted or updated) and records that changed
    nothing (already there, or an older revision), per kind; records PostgreSQL rejected."""

    written: dict[str, int] = field(default_factory=lambda: {"call": 0, "agent_state": 0})
    unchanged: dict[str, int] = field(default_factory=lambda: {"call": 0, "agent_state": 0})
    rejected: list[tuple[Record, RecordRejectedError]] = field(default_factory=list)

    def add(self, other: Written) -> None:
        for kind in self.written:
            self.written[kind] += other.written[kind]
            self.unchanged[kind] += other.unchanged[kind]
        self.rejected += other.rejected


def latest_calls(records: Sequence[Record]) -> list[CallRecord]:
    """One record per call: its highest revision (the first of equals)."""
    latest: dict[tuple[str, str], CallRecord] = {}
    for record in records:
        if isinstance(record, CallRecord):
            seen = latest.get(record.key)
            if seen is None or record.revision > seen.revision:
                latest[record.key] = record
    return list(latest.values())


def distinct_agent_states(records: Sequence[Record]) -> list[AgentStateRecord]:
    found: dict[str, AgentStateRecord] = {}
    for record in records:
        if isinstance(record, AgentStateRecord):
            found.setdefault(record.record_id, record)
    return list(found.values())


def _arrays(rows: Sequence[Record], names: Sequence[str]) -> list[list[object]]:
    return [[getattr(row, name) for row in rows] for name in names]


def _count(status: str) -> int:
    """Rows an INSERT changed, from its command tag ("INSERT 0 12")."""
    return int(status.rsplit(" ", 1)[-1])


class PostgresRecordStore:
    """Writes batches of records; PostgreSQL's failures come out as the project's errors."""

    def __init__(self, pool: Pool, where: str) -> None:
        self.pool = pool
        self.where = where

    async def write(self, records: Sequence[Record]) -> Written:
        """The whole batch in one transaction. ``RecordRejectedError`` when PostgreSQL refuses
        a value (nothing of the batch is written then: see ``write_each``)."""
        calls, states = latest_calls(records), distinct_agent_states(records)
        result = Written()
        if not calls and not states:
            return result
        with postgres_errors(self.where):
            async with self.pool.acquire() as connection, connection.transaction():
                if calls:
                    result.written["call"] = _count(
                        await connection.execute(UPSERT_CALLS, *_arrays(calls, CALL_COLUMNS))
                    )
                if states:
                    result.written["agent_state"] = _count(
                        await connection.execute(INSERT_AGENT_STATES, *_arrays(states, AGENT_STATE_COLUMNS))
                    )
        in_calls = sum(isinstance(record, CallRecord) for record in records)
        result.unchanged["call"] = in_calls - result.written["call"]
        result.unchanged["agent_state"] = len(records) - in_calls - result.written["agent_state"]
        return result

    async def write_each(self, records: Sequence[Record]) -> Written:
        """One transaction per record, after a batch was rejected: the records PostgreSQL
        refuses are returned in ``rejected``, the others are written."""
        result = Written()
        for record in records:
            try:
                result.add(await self.write([record]))
            except RecordRejectedError as exc:
                result.rejected.append((record, exc))
        return result
