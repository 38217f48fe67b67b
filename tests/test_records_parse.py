"""The recorder reads records exactly as docs/records.md defines them, and names what is
wrong with one that is not (it is then skipped, never written half-right)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from router.envelope import Envelope
from router.errors import MalformedEventError
from tests.records_support import T0, agent_state_record, call_record, envelope
from workers.records.parse import (
    AGENT_STATE_FIELDS,
    CALL_FIELDS,
    AgentStateRecord,
    CallRecord,
    parse_agent_state_record,
    parse_call_record,
    parse_record,
)

RECORDS_DOC = Path(__file__).resolve().parent.parent / "docs" / "records.md"


def contract_fields(section: str) -> set[str]:
    """Field names in the first column of a docs/records.md section's table."""
    text = RECORDS_DOC.read_text().split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for cell in re.findall(r"^\| (`[^|]+`) \|", text, flags=re.MULTILINE):
        names |= set(re.findall(r"`([a-z_]+)`", cell))
    return names


def test_every_field_of_the_contract_is_read_and_no_other() -> None:
    assert set(CALL_FIELDS) == contract_fields("Call record")
    assert set(AGENT_STATE_FIELDS) == contract_fields("Agent-state record")


def test_a_call_record_becomes_a_typed_row() -> None:
    record = parse_record(envelope(call_record(wrapup_s=30.0, revision=2)))
    assert isinstance(record, CallRecord)
    assert record.key == ("main", "1800000000.1") and record.revision == 2
    assert record.entered_at == datetime.fromtimestamp(T0, UTC) and record.entered_at.tzinfo is UTC
    assert record.answered_at == datetime.fromtimestamp(T0 + 12.25, UTC)
    assert (record.wait_s, record.talk_s, record.wrapup_s) == (12.25, 180.0, 30.0)
    assert (record.offers, record.ring_no_answers, record.priority) == (2, 1, 2)
    assert record.answered_within_threshold is True and record.qa_sampled is True


def test_an_agent_state_record_becomes_a_typed_row() -> None:
    record = parse_record(envelope(agent_state_record(state="wrap_up", reason="")))
    assert isinstance(record, AgentStateRecord)
    assert (record.agent_id, record.state, record.reason, record.duration_s) == ("a1", "wrap_up", "", 1800.5)
    assert record.end_at - record.start_at == datetime.fromtimestamp(T0 + 1800.5, UTC) - record.start_at


def test_nullable_fields_may_be_null_and_new_fields_are_ignored() -> None:
    data = call_record(first_offered_at=None, answered_at=None, wrapup_s=None, outcome="abandoned")
    data["a_field_added_later"] = {"x": 1}
    record = parse_call_record(data)
    assert record.first_offered_at is None and record.answered_at is None and record.wrapup_s is None


@pytest.mark.parametrize("field", sorted(CALL_FIELDS))
def test_a_call_record_without_a_field_is_malformed(field: str) -> None:
    data = call_record()
    del data[field]
    with pytest.raises(MalformedEventError, match=f"fields missing: \\['{field}'\\]"):
        parse_call_record(data)


@pytest.mark.parametrize("field", sorted(AGENT_STATE_FIELDS))
def test_an_agent_state_record_without_a_field_is_malformed(field: str) -> None:
    data = agent_state_record()
    del data[field]
    with pytest.raises(MalformedEventError, match="fields missing"):
        parse_agent_state_record(data)


BAD_CALL_VALUES: list[tuple[str, Any]] = [
    ("revision", 0),
    ("revision", True),
    ("revision", "2"),
    ("priority", 2**31),
    ("offers", -1),
    ("offers", 1.5),
    ("wait_s", -0.5),
    ("wait_s", float("nan")),
    ("talk_s", None),
    ("sl_threshold_s", "20"),
    ("entered_at", "2027-01-15T10:00:00Z"),
    ("entered_at", 1e20),
    ("ended_at", None),
    ("answered_at", float("inf")),
    ("caller_name", "Ada\x00"),
    ("caller_number", None),
    ("call_id", ""),
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
    [("state", "lunch"), ("agent_id", ""), ("start", "x"), ("duration_s", -1), ("reason", None)],
)
def test_an_agent_state_record_with_a_wrong_value_names_the_field(field: str, value: Any) -> None:
    with pytest.raises(MalformedEventError, match=f"field '{field}'"):
        parse_agent_state_record(agent_state_record(**{field: value}))


def test_times_out_of_order_are_malformed() -> None:
    with pytest.raises(MalformedEventError, match="before entered_at"):
        parse_call_record(call_record(ended_at=T0 - 1))
    with pytest.raises(MalformedEventError, match="before start"):
        parse_agent_state_record(agent_state_record(end=T0 - 1))


def test_an_envelope_of_another_type_is_not_a_record() -> None:
    other = Envelope("ami.event", "e1", "ami://pbx", T0, "call:1", {"Event": "Hangup"})
    with pytest.raises(MalformedEventError, match="not a record type"):
        parse_record(other)
