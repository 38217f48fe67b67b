"""Writing records to PostgreSQL: one transaction per batch, idempotent.

Call records are upserted on (site, call_id) and a row changes only for a higher
``revision``: a record applied twice, or an older revision after a newer one, changes
nothing. Agent-state records are inserted once per ``record_id``. Each table takes a batch
in one statement (``unnest`` of one array per column), after the batch is reduced to one
record per row (the highest revision of a call), so that a statement never touches a row
twice. The statements are built from the tables of parse.py, whose columns are the fields
of router.records' records.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from router.errors import RecordRejectedError
from router.postgres import Pool, postgres_errors
from router.records import AgentStateRecord, CallRecord, Record
from workers.records.parse import AGENT_STATE_TABLE, CALL_TABLE, Table


def _insert(table: Table[CallRecord] | Table[AgentStateRecord]) -> str:
    arrays = ", ".join(f"${i}::{column.sql_type}[]" for i, column in enumerate(table.columns, start=1))
    return (
        f"INSERT INTO {table.name} ({', '.join(table.column_names)}) SELECT * FROM unnest({arrays})"
        f" ON CONFLICT ({', '.join(table.key)})"
    )


UPSERT_CALLS = (
    _insert(CALL_TABLE)
    + " DO UPDATE SET "
    + ", ".join(f"{name} = EXCLUDED.{name}" for name in CALL_TABLE.column_names if name not in CALL_TABLE.key)
    + ", recorded_at = now() WHERE call_records.revision < EXCLUDED.revision"
)
INSERT_AGENT_STATES = _insert(AGENT_STATE_TABLE) + " DO NOTHING"


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
            key = (record.site, record.call_id)
            seen = latest.get(key)
            if seen is None or record.revision > seen.revision:
                latest[key] = record
    return list(latest.values())


def distinct_agent_states(records: Sequence[Record]) -> list[AgentStateRecord]:
    found: dict[str, AgentStateRecord] = {}
    for record in records:
        if isinstance(record, AgentStateRecord):
            found.setdefault(record.record_id, record)
    return list(found.values())


def _arrays[R: (CallRecord, AgentStateRecord)](table: Table[R], records: Sequence[R]) -> list[list[object]]:
    """One array per column, as ``unnest`` takes them."""
    rows = [table.row(record) for record in records]
    return [[row[i] for row in rows] for i in range(len(table.columns))]


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
                        await connection.execute(UPSERT_CALLS, *_arrays(CALL_TABLE, calls))
                    )
                if states:
                    result.written["agent_state"] = _count(
                        await connection.execute(INSERT_AGENT_STATES, *_arrays(AGENT_STATE_TABLE, states))
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
