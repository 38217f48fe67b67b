"""The recorder's schema and its writes, over a real PostgreSQL (a fresh database per test):
migrations apply on an empty database and again without change; the tables hold every
field of the contract, typed; writes are idempotent; PostgreSQL's failures come out as the
project's errors with ``retriable`` set."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
import typing
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from load_tests.embedded import EmbeddedPostgres, free_port
from router.errors import DatabaseRefusedError, DatabaseUnavailableError
from router.postgres import Pool, dsn_target, open_postgres
from router.records import AgentStateRecord, CallRecord, Record
from router.settings import PostgresSettings
from tests.records_support import T0, agent_state_record, call_record
from workers.records.migrate import check_schema, current, head_revision, upgrade
from workers.records.parse import (
    AGENT_STATE_TABLE,
    CALL_TABLE,
    INT_MAX,
    INT_MIN,
    parse_agent_state_record,
    parse_call_record,
)
from workers.records.store import PostgresRecordStore

TABLES = {"alembic_version", "call_records", "agent_state_records", "qa_reviews"}


async def tables(dsn: str) -> set[str]:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
    finally:
        await connection.close()
    return {row["table_name"] for row in rows}


async def column_types(dsn: str, table: str) -> dict[str, tuple[str, bool]]:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "SELECT column_name, data_type, is_nullable FROM information_schema.columns WHERE table_name = $1",
            table,
        )
    finally:
        await connection.close()
    return {row["column_name"]: (row["data_type"], row["is_nullable"] == "YES") for row in rows}


@pytest.fixture
async def records_dsn(postgres_dsn: str) -> str:
    await upgrade(PostgresSettings(dsn=postgres_dsn))
    return postgres_dsn


@pytest.fixture
async def pool(records_dsn: str) -> AsyncIterator[Pool]:
    pool = await open_postgres(PostgresSettings(dsn=records_dsn), "acd test")
    yield pool
    await pool.close()


async def test_migrations_apply_on_an_empty_database_and_again_without_change(postgres_dsn: str) -> None:
    settings = PostgresSettings(dsn=postgres_dsn)
    assert await tables(postgres_dsn) == set()  # each test has a fresh database
    assert await current(settings) is None
    assert await upgrade(settings) == head_revision()
    assert await tables(postgres_dsn) == TABLES
    before = await column_types(postgres_dsn, "call_records")
    assert await upgrade(settings) == head_revision()  # idempotent
    assert await current(settings) == head_revision()
    assert await column_types(postgres_dsn, "call_records") == before


async def test_two_upgrades_at_once_apply_each_migration_once(postgres_dsn: str) -> None:
    settings = PostgresSettings(dsn=postgres_dsn)
    results = await asyncio.gather(upgrade(settings), upgrade(settings))
    assert results == [head_revision(), head_revision()]


async def test_upgrading_from_0001_keeps_the_calls_and_gives_them_the_added_fields_defaults(
    postgres_dsn: str,
) -> None:
    settings = PostgresSettings(dsn=postgres_dsn)
    assert await upgrade(settings, "0001") == "0001"
    pool = await open_postgres(settings, "acd test")
    try:
        needs = f"at revision 0001, this acd needs {head_revision()}: run `acd db upgrade"
        with pytest.raises(DatabaseRefusedError, match=needs):
            await check_schema(pool, dsn_target(postgres_dsn))
        before = {
            name: at(value) if is_instant(name) and value is not None else value
            for name, value in call_record("c1").items()
            if name not in ("segment", "queue_entered_at", "qa_reason")  # the fields 0002 and 0003 add
        }
        placeholders = ", ".join(f"${i}" for i in range(1, len(before) + 1))
        await pool.execute(f"INSERT INTO call_records ({', '.join(before)}) VALUES ({placeholders})", *before.values())

        assert await upgrade(settings) == head_revision() == "0004"
        assert await check_schema(pool, dsn_target(postgres_dsn)) == "0004"
        (row,) = await rows(pool, "call_records")
        assert {name: row[name] for name in before} == before
        assert (row["segment"], row["queue_entered_at"], row["qa_reason"]) == (1, None, "")  # the defaults
        store = PostgresRecordStore(pool, dsn_target(postgres_dsn))
        newer = parse_call_record(call_record("c1", revision=2, wrapup_s=3.0))
        assert (await store.write([newer])).written["call"] == 1
        (row,) = await rows(pool, "call_records")
        assert (row["revision"], row["segment"], row["queue_entered_at"]) == (2, 1, at(T0 + 2.0))
    finally:
        await pool.close()


def is_instant(field: str) -> bool:
    return field.endswith("_at") or field in ("start", "end")


def expected_type(field: str, value: Any) -> str:
    if is_instant(field):
        return "timestamp with time zone"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float) or field.endswith("_s"):
        return "double precision"
    return "text"


def nullable(record_type: type[Record], field: str) -> bool:
    """Whether router.records types the field ``... | None``."""
    return type(None) in typing.get_args(typing.get_type_hints(record_type)[field])


INFORMATION_SCHEMA_TYPES = {"timestamptz": "timestamp with time zone"}


async def test_every_contract_field_is_a_typed_column(records_dsn: str) -> None:
    tables = (
        (CALL_TABLE.name, CALL_TABLE.columns, CallRecord, call_record()),
        (AGENT_STATE_TABLE.name, AGENT_STATE_TABLE.columns, AgentStateRecord, agent_state_record()),
    )
    for table, columns, record_type, sample in tables:
        found = await column_types(records_dsn, table)
        # Every field of the router's record has its column, and the table has no other.
        assert set(found) == {column.name for column in columns} | {"recorded_at"}, table
        for spec, column in zip(dataclasses.fields(record_type), columns, strict=True):
            assert column.field == spec.name
            assert column.name == {"start": "start_at", "end": "end_at"}.get(spec.name, spec.name)
            wanted = (expected_type(spec.name, sample[spec.name]), nullable(record_type, spec.name))
            assert found[column.name] == wanted, spec.name
            # The store's casts are the columns' own types.
            assert INFORMATION_SCHEMA_TYPES.get(column.sql_type, column.sql_type) == wanted[0], spec.name
    reviews = await column_types(records_dsn, "qa_reviews")
    assert {"call_id", "site", "reviewer", "scores", "total", "comments", "created_at"} <= set(reviews)
    assert reviews["scores"][0] == "jsonb" and reviews["created_at"][0] == "timestamp with time zone"


async def test_indexes_serve_time_ranges_by_queue_and_by_agent(records_dsn: str) -> None:
    connection = await asyncpg.connect(records_dsn)
    try:
        rows = await connection.fetch("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'")
    finally:
        await connection.close()
    definitions = " ".join(row["indexdef"] for row in rows)
    for wanted in (
        "call_records USING btree (queue, entered_at)",
        "call_records USING btree (agent_id, entered_at)",
        "agent_state_records USING btree (agent_id, start_at)",
        "UNIQUE INDEX agent_state_records_pkey ON public.agent_state_records USING btree (record_id)",
        "UNIQUE INDEX call_records_pkey ON public.call_records USING btree (site, call_id)",
    ):
        assert wanted in definitions


async def run_acd_db(action: str, dsn: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "workers.cli",
        "db",
        action,
        env={k: v for k, v in os.environ.items() if not k.startswith("ACD_")} | {"ACD_POSTGRES__DSN": dsn},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_acd_db_upgrade_and_current(postgres_dsn: str) -> None:
    where = dsn_target(postgres_dsn)
    code, out, _ = await run_acd_db("current", postgres_dsn)
    assert code == 1 and f"{where}: schema at revision (none), head is {head_revision()}" in out
    code, out, err = await run_acd_db("upgrade", postgres_dsn)
    assert code == 0, err
    assert out.strip() == f"{where}: schema at revision {head_revision()} (head)"
    code, out, _ = await run_acd_db("current", postgres_dsn)
    assert code == 0 and "(head)" in out


# -- writes ------------------------------------------------------------------------------


async def rows(pool: Pool, table: str) -> list[dict[str, Any]]:
    return [dict(row) for row in await pool.fetch(f"SELECT * FROM {table} ORDER BY 1, 2")]


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def as_row(data: dict[str, Any]) -> dict[str, Any]:
    """A record's data as its row holds it: instants as UTC datetimes, start and end renamed."""
    renamed = {"start": "start_at", "end": "end_at"}
    return {
        renamed.get(name, name): at(value) if is_instant(name) and value is not None else value
        for name, value in data.items()
    }


async def test_a_batch_is_written_with_every_value(pool: Pool, records_dsn: str) -> None:
    store = PostgresRecordStore(pool, dsn_target(records_dsn))
    call, state = call_record(segment=2), agent_state_record()  # segment 2: not the column's default
    written = await store.write([parse_call_record(call), parse_agent_state_record(state)])
    assert written.written == {"call": 1, "agent_state": 1} and written.unchanged == {"call": 0, "agent_state": 0}
    (row,) = await rows(pool, "call_records")
    assert row.pop("recorded_at") is not None
    assert row == as_row(call)
    assert (row["entered_at"], row["queue_entered_at"]) == (at(T0), at(T0 + 2.0))
    (state_row,) = await rows(pool, "agent_state_records")
    assert state_row.pop("recorded_at") is not None
    assert state_row == as_row(state)
    assert state_row["start_at"] == at(T0) and state_row["end_at"] == at(T0 + 1800.5)
    assert (state_row["agent_id"], state_row["state"], state_row["reason"]) == ("a1", "paused", "lunch")


async def test_a_record_without_the_fields_added_later_is_written_with_their_defaults(
    pool: Pool, records_dsn: str
) -> None:
    store = PostgresRecordStore(pool, dsn_target(records_dsn))
    older_router = call_record("c1")
    del older_router["segment"], older_router["queue_entered_at"]
    await store.write([parse_call_record(older_router)])
    (row,) = await rows(pool, "call_records")
    assert (row["segment"], row["queue_entered_at"]) == (1, None)


async def test_values_at_the_edges_the_checks_accept_are_written(pool: Pool, records_dsn: str) -> None:
    """The checks refuse no more than PostgreSQL must: its extremes are written, as they are."""
    year_1, year_9999 = -62135596800.0 + 1, 253402300799.0  # 0001-01-01T00:00:01Z, 9999-12-31T23:59:59Z
    store = PostgresRecordStore(pool, dsn_target(records_dsn))
    call = call_record(
        priority=INT_MIN,
        offers=INT_MAX,
        revision=INT_MAX,
        segment=INT_MAX,
        entered_at=year_1,
        queue_entered_at=year_1,
        ended_at=year_9999,
        wait_s=0.0,
        caller_name="Zoë 👋 ' \\ \"",
    )
    state = agent_state_record(start=year_1, end=year_9999, duration_s=0.0)
    written = await store.write([parse_call_record(call), parse_agent_state_record(state)])
    assert written.written == {"call": 1, "agent_state": 1}
    (row,) = await rows(pool, "call_records")
    row.pop("recorded_at")
    assert row == as_row(call)
    assert row["entered_at"].year == 1 and row["ended_at"].year == 9999


async def test_the_same_records_twice_change_nothing(pool: Pool, records_dsn: str) -> None:
    store = PostgresRecordStore(pool, dsn_target(records_dsn))
    batch: list[Record] = [parse_call_record(call_record()), parse_agent_state_record(agent_state_record())]
    await store.write(batch)
    before = await rows(pool, "call_records"), await rows(pool, "agent_state_records")
    again = await store.write(batch)
    assert again.written == {"call": 0, "agent_state": 0} and again.unchanged == {"call": 1, "agent_state": 1}
    assert (await rows(pool, "call_records"), await rows(pool, "agent_state_records")) == before


async def test_the_highest_revision_wins_whatever_the_order(pool: Pool, records_dsn: str) -> None:
    store = PostgresRecordStore(pool, dsn_target(records_dsn))
    first = parse_call_record(call_record("c1"))
    second = parse_call_record(call_record("c1", revision=2, wrapup_s=30.0))
    await store.write([first])
    assert (await store.write([second])).written["call"] == 1
    older_after_newer = await store.write([first])
    assert older_after_newer.written["call"] == 0 and older_after_newer.unchanged["call"] == 1
    (row,) = await rows(pool, "call_records")
    assert (row["revision"], row["wrapup_s"], row["record_id"]) == (2, 30.0, second.record_id)
    # Both revisions of another call in one batch, newest first: one row, the newest.
    mixed = await store.write([parse_call_record(call_record("c2", revision=2, wrapup_s=5.0)), first])
    assert mixed.written["call"] == 1
    mixed = await store.write(
        [parse_call_record(call_record("c3", revision=2, wrapup_s=5.0)), parse_call_record(call_record("c3"))]
    )
    assert mixed.written["call"] == 1 and mixed.unchanged["call"] == 1
    assert {(r["call_id"], r["revision"]) for r in await rows(pool, "call_records")} == {
        ("c1", 2),
        ("c2", 2),
        ("c3", 2),
    }


async def test_a_callers_next_visit_replaces_the_row_of_its_first(pool: Pool, records_dsn: str) -> None:
    """One row per call: its highest revision, which after a transfer back is its latest visit."""
    store = PostgresRecordStore(pool, dsn_target(records_dsn))
    first_visit = parse_call_record(call_record("c1", revision=2, wrapup_s=30.0))
    second_visit = parse_call_record(
        call_record("c1", revision=3, segment=2, queue="support", queue_entered_at=T0 + 400, ended_at=T0 + 500)
    )
    await store.write([first_visit])
    assert (await store.write([second_visit])).written["call"] == 1
    assert (await store.write([first_visit])).unchanged["call"] == 1
    (row,) = await rows(pool, "call_records")
    assert (row["revision"], row["segment"], row["queue"], row["queue_entered_at"]) == (
        3,
        2,
        "support",
        at(T0 + 400),
    )


async def test_a_record_postgres_rejects_is_skipped_alone(pool: Pool, records_dsn: str) -> None:
    await pool.execute("ALTER TABLE call_records ADD CONSTRAINT test_no_poison CHECK (queue <> 'poison')")
    store = PostgresRecordStore(pool, dsn_target(records_dsn))
    good, poison = parse_call_record(call_record("good")), parse_call_record(call_record("bad", queue="poison"))
    result = await store.write_each([good, poison])
    assert [record for record, _ in result.rejected] == [poison]
    assert "test_no_poison" in str(result.rejected[0][1])
    assert [row["call_id"] for row in await rows(pool, "call_records")] == ["good"]


# -- errors ------------------------------------------------------------------------------


async def test_postgres_unreachable_is_retriable_and_says_what_to_check() -> None:
    port = free_port()
    settings = PostgresSettings(dsn=f"postgresql://acd@127.0.0.1:{port}/acd", startup_timeout_s=0.3)
    where = f"acd@127.0.0.1:{port}/acd"
    with pytest.raises(DatabaseUnavailableError, match=f"cannot reach PostgreSQL at {where}") as caught:
        await open_postgres(settings, "acd test")
    assert caught.value.retriable and "ACD_POSTGRES__DSN" in str(caught.value)


async def test_a_missing_database_or_schema_is_a_configuration_error(
    postgres_server: EmbeddedPostgres, postgres_dsn: str
) -> None:
    missing = PostgresSettings(dsn=postgres_server.dsn("no_such_db"), startup_timeout_s=5)
    with pytest.raises(DatabaseRefusedError, match='database "no_such_db" does not exist: create it') as caught:
        await open_postgres(missing, "acd test")
    assert not caught.value.retriable
    pool = await open_postgres(PostgresSettings(dsn=postgres_dsn), "acd test")
    try:
        with pytest.raises(DatabaseRefusedError, match="no recorder tables: run `acd db upgrade"):
            await check_schema(pool, dsn_target(postgres_dsn))
        store = PostgresRecordStore(pool, dsn_target(postgres_dsn))
        with pytest.raises(DatabaseRefusedError, match="run `acd db upgrade"):
            await store.write([parse_call_record(call_record())])
    finally:
        await pool.close()


async def test_writes_to_a_stopped_postgres_raise_a_retriable_error(tmp_path: Any) -> None:
    async with EmbeddedPostgres(tmp_path / "pg") as server:
        settings = PostgresSettings(dsn=server.dsn(), command_timeout_s=5)
        await upgrade(settings)
        pool = await open_postgres(settings, "acd test")
        store = PostgresRecordStore(pool, dsn_target(server.dsn()))
        try:
            await server.stop()
            with pytest.raises(DatabaseUnavailableError) as caught:
                await store.write([parse_call_record(call_record())])
            assert caught.value.retriable and caught.value.__cause__ is not None
            await server.start()  # the pool makes new connections
            written = await store.write([parse_call_record(call_record())])
            assert written.written["call"] == 1
        finally:
            await pool.close()
