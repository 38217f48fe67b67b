"""The recorder reads records exactly as docs/records.md and router.records define them,
refuses what its tables cannot hold, and names what is wrong with a record (it is then
skipped, never written half-right)."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from router import records
from router.envelope import Envelope
from router.errors import MalformedEventError
from tests.records_support import T0, agent_state_record, call_record, envelope
from workers.records.parse import (
    AGENT_STATE_TABLE,
    CALL_TABLE,
    INT_MAX,
    INT_MIN,
    parse_agent_state_record,
    parse_call_record,
    parse_record,
    records_topics,
)

RECORDS_DOC = Path(__file__).resolve().parent.parent / "docs" / "records.md"
CALL_SPECS = dataclasses.fields(records.CallRecord)
CALL_FIELDS = [spec.name for spec in CALL_SPECS]
AGENT_STATE_FIELDS = [spec.name for spec in dataclasses.fields(records.AgentStateRecord)]
REQUIRED_CALL_FIELDS = [spec.name for spec in CALL_SPECS if spec.default is dataclasses.MISSING]
ADDED_CALL_FIELDS = {
    spec.name: spec.default for spec in CALL_SPECS if spec.default is not dataclasses.MISSING
}


def doc_section(section: str) -> str:
    return RECORDS_DOC.read_text().split(f"## {section}", 1)[1].split("\n## ", 1)[0]


def contract_fields(text: str) -> set[str]:
    """Field names in the first column of the tables in ``text`` (a part of docs/records.md)."""
    names: set[str] = set()
    for cell in re.findall(r"^\| (`[^|]+`) \|", text, flags=re.MULTILINE):
        names |= set(re.findall(r"`([a-z_]+)`", cell))
    return names


def table_columns_cell(table: str) -> set[str]:
    """The names in the columns cell of a table's row in docs/records.md's Tables section."""
    (row,) = re.findall(rf"^\| `{table}` \|.*$", doc_section("Tables"), flags=re.MULTILINE)
    return set(re.findall(r"`([a-z_]+)`", row.split(" | ")[2]))


def test_the_documented_contract_is_the_routers_records() -> None:
    assert set(CALL_FIELDS) == contract_fields(doc_section("Call record"))
    assert set(AGENT_STATE_FIELDS) == contract_fields(doc_section("Agent-state record"))
    # Readers must not require the fields added later: they, and only they, have defaults.
    assert set(ADDED_CALL_FIELDS) == contract_fields(doc_section("Call record").split("Added since", 1)[1])
    # The test records carry the whole contract, so every test below covers every field.
    assert list(call_record()) == CALL_FIELDS and list(agent_state_record()) == AGENT_STATE_FIELDS


def test_each_table_has_a_column_per_field_named_as_documented() -> None:
    assert CALL_TABLE.column_names == tuple(CALL_FIELDS)  # "every field of the call record, same names"
    assert "every field of the call record, same names" in doc_section("Tables")
    renamed = {
        column.field: column.name for column in AGENT_STATE_TABLE.columns if column.field != column.name
    }
    assert renamed == {"start": "start_at", "end": "end_at"}
    assert set(AGENT_STATE_TABLE.column_names) == table_columns_cell("agent_state_records") - set(renamed)
    assert {"segment", "queue_entered_at"} <= table_columns_cell("call_records")


def test_instants_are_timestamptz_and_the_other_floats_seconds() -> None:
    types = {column.field: column.sql_type for column in (*CALL_TABLE.columns, *AGENT_STATE_TABLE.columns)}
    instants = {name for name, sql_type in types.items() if sql_type == "timestamptz"}
    assert instants == {
        "entered_at",
        "first_offered_at",
        "answered_at",
        "ended_at",
        "queue_entered_at",
        "start",
        "end",
    }
    assert {name for name, sql_type in types.items() if sql_type == "double precision"} == {
        "wait_s",
        "talk_s",
        "wrapup_s",
        "sl_threshold_s",
        "duration_s",
    }


def test_the_topics_are_the_routers() -> None:
    assert records_topics("acd") == ("acd.records.calls.v1", "acd.records.agents.v1")


def test_a_call_record_becomes_the_routers_record_and_a_typed_row() -> None:
    record = parse_record(envelope(call_record(wrapup_s=30.0, revision=2, segment=2)))
    assert isinstance(record, records.CallRecord)
    assert (record.site, record.call_id, record.revision, record.segment) == ("main", "1800000000.1", 2, 2)
    assert (record.entered_at, record.queue_entered_at, record.answered_at) == (T0, T0 + 2.0, T0 + 12.25)
    assert (record.wait_s, record.talk_s, record.wrapup_s) == (10.25, 180.0, 30.0)
    assert (record.offers, record.ring_no_answers, record.priority) == (2, 1, 2)
    assert record.answered_within_threshold is True and record.qa_sampled is True
    row = dict(zip(CALL_TABLE.column_names, CALL_TABLE.row(record), strict=True))
    assert row["entered_at"] == datetime.fromtimestamp(T0, UTC) and row["entered_at"].tzinfo is UTC
    assert row["queue_entered_at"] == datetime.fromtimestamp(T0 + 2.0, UTC)
    assert (row["wait_s"], row["segment"], row["outcome"]) == (10.25, 2, "answered")


def test_an_agent_state_record_becomes_the_routers_record_and_a_typed_row() -> None:
    record = parse_record(envelope(agent_state_record(state="wrap_up", reason="")))
    assert isinstance(record, records.AgentStateRecord)
    assert (record.agent_id, record.state, record.reason, record.duration_s) == ("a1", "wrap_up", "", 1800.5)
    assert (record.start, record.end) == (T0, T0 + 1800.5)
    row = dict(zip(AGENT_STATE_TABLE.column_names, AGENT_STATE_TABLE.row(record), strict=True))
    assert row["start_at"] == datetime.fromtimestamp(T0, UTC) and row["start_at"].tzinfo is UTC
    assert row["end_at"] - row["start_at"] == datetime.fromtimestamp(T0 + 1800.5, UTC) - row["start_at"]


def test_nullable_fields_may_be_null_and_new_fields_are_ignored() -> None:
    data = call_record(
        first_offered_at=None, answered_at=None, wrapup_s=None, queue_entered_at=None, outcome="abandoned"
    )
    data["a_field_added_later"] = {"x": 1}
    record = parse_call_record(data)
    assert (record.first_offered_at, record.answered_at, record.wrapup_s, record.queue_entered_at) == (
        None,
    ) * 4
    assert CALL_TABLE.row(record)[CALL_TABLE.column_names.index("answered_at")] is None


@pytest.mark.parametrize("field", REQUIRED_CALL_FIELDS)
def test_a_call_record_without_a_field_is_malformed(field: str) -> None:
    data = call_record()
    del data[field]
    with pytest.raises(MalformedEventError, match=f"field '{field}' missing"):
        parse_call_record(data)


@pytest.mark.parametrize("field", sorted(ADDED_CALL_FIELDS))
def test_a_call_record_without_a_field_added_later_takes_its_default(field: str) -> None:
    data = call_record()
    del data[field]
    assert getattr(parse_call_record(data), field) == ADDED_CALL_FIELDS[field]


@pytest.mark.parametrize("field", AGENT_STATE_FIELDS)
def test_an_agent_state_record_without_a_field_is_malformed(field: str) -> None:
    data = agent_state_record()
    del data[field]
    with pytest.raises(MalformedEventError, match=f"field '{field}' missing"):
        parse_agent_state_record(data)


BAD_CALL_VALUES: list[tuple[str, Any]] = [
    ("revision", 0),
    ("revision", True),
    ("revision", "2"),
    ("revision", 2**31),
    ("priority", 2**31),
    ("priority", -(2**31) - 1),
    ("offers", -1),
    ("offers", 1.5),
    ("ring_no_answers", -1),
    ("segment", 0),
    ("segment", None),
    ("wait_s", -0.5),
    ("wait_s", float("nan")),
    ("talk_s", None),
    ("wrapup_s", -1.0),
    ("sl_threshold_s", "20"),
    ("entered_at", "2027-01-15T10:00:00Z"),
    ("entered_at", 1e20),
    ("entered_at", -62135596800.0),  # 0001-01-01T00:00:00Z: -infinity to asyncpg
    ("ended_at", None),
    ("answered_at", float("inf")),
    ("queue_entered_at", -1e12),
    ("queue_entered_at", "x"),
    ("caller_name", "Ada\x00"),
    ("caller_number", None),
    ("call_id", ""),
    ("record_id", ""),
    ("queue", ""),
    ("first_queue", "sup\x00port"),
    ("site", 7),
    ("outcome", "lost"),
    ("qa_sampled", 1),
    ("answered_within_threshold", "true"),
]


@pytest.mark.parametrize(("field", "value"), BAD_CALL_VALUES, ids=lambda v: repr(v)[:20])
def test_a_call_record_with_a_wrong_value_names_the_field(field: str, value: Any) -> None:
    with pytest.raises(MalformedEventError, match=f"field '{field}'"):
        parse_call_record(call_record(**{field: value}))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("state", "lunch"),
        ("agent_id", ""),
        ("site", "ma\x00in"),
        ("start", "x"),
        ("end", 1e20),
        ("duration_s", -1),
        ("reason", None),
    ],
)
def test_an_agent_state_record_with_a_wrong_value_names_the_field(field: str, value: Any) -> None:
    with pytest.raises(MalformedEventError, match=f"field '{field}'"):
        parse_agent_state_record(agent_state_record(**{field: value}))


def test_values_at_the_edges_of_what_postgres_holds_are_accepted() -> None:
    year_1, year_9999 = -62135596800.0 + 1, 253402300799.0  # 0001-01-01T00:00:01Z, 9999-12-31T23:59:59Z
    record = parse_call_record(call_record(priority=INT_MIN, offers=INT_MAX, entered_at=year_1, wait_s=0.0))
    assert (record.priority, record.offers, record.entered_at) == (INT_MIN, INT_MAX, year_1)
    assert parse_agent_state_record(agent_state_record(end=year_9999)).end == year_9999


def test_times_out_of_order_are_malformed() -> None:
    with pytest.raises(MalformedEventError, match=r"field 'ended_at' = .*: expected not before entered_at"):
        parse_call_record(call_record(ended_at=T0 - 1))
    with pytest.raises(MalformedEventError, match=r"field 'end' = .*: expected not before start"):
        parse_agent_state_record(agent_state_record(end=T0 - 1))


def test_an_envelope_of_another_type_is_not_a_record() -> None:
    other = Envelope("ami.event", "e1", "ami://pbx", T0, "call:1", {"Event": "Hangup"})
    with pytest.raises(MalformedEventError, match="not a record type"):
        parse_record(other)
    with pytest.raises(MalformedEventError, match=r"expected a record\.call envelope"):
        parse_call_record(envelope(agent_state_record()))
