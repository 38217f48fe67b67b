"""Call and agent-state records (docs/records.md): typed values, the envelopes that carry
them, and how an outbox entry becomes one. Pure: no I/O.

The Lua scripts append each record to the site's outbox as flat string fields (see
``_lib.lua`` ``call_record`` and ``note_agent_state``); the relay publishes an entry as
``outbox_envelope``, the envelope ``record_envelope(record_from_outbox(entry))`` would be. Readers (the
recorder) decode the envelope (router.envelope.decode) and call ``parse_call_record`` or
``parse_agent_state_record``: fields they do not know are ignored, so records may grow.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from router.envelope import RECORD_AGENT_STATE, RECORD_CALL, Envelope
from router.errors import MalformedEventError

# Outbox entry kinds (field ``t``) and the envelope types they travel as.
CALL = "call"
AGENT_STATE = "agent_state"
ENVELOPE_TYPES = {CALL: RECORD_CALL, AGENT_STATE: RECORD_AGENT_STATE}

OUTCOMES = frozenset(
    {
        "answered",
        "abandoned",
        "overflowed",
        "transferred",
        "closed_by_resync",
        "pbx_restart",
        "closed",
        "callback_failed",
    }
)
AGENT_STATES = frozenset({"available", "reserved", "on_call", "wrap_up", "paused", "logged_out"})


@dataclass(frozen=True, slots=True)
class CallRecord:
    """A call's stay in the ACD (``record.call``); see docs/records.md for each field."""

    record_id: str
    revision: int
    site: str
    call_id: str
    queue: str
    first_queue: str
    priority: int
    caller_number: str
    caller_name: str
    entered_at: float
    first_offered_at: float | None
    answered_at: float | None
    ended_at: float
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
    # Added to the contract (docs/records.md): which visit of the caller this is (a caller
    # its agent transferred back into a queue visits again), and when it entered the queue
    # it was in (wait_s counts from there).
    segment: int = 1
    queue_entered_at: float | None = None
    # Why the call was sampled for review: 'random' (its draw), 'minimum' (its agent's daily
    # minimum topped up), '' not sampled (docs/quality.md).
    qa_reason: str = ""


@dataclass(frozen=True, slots=True)
class AgentStateRecord:
    """One stretch of an agent in one state (``record.agent_state``), published when it ends."""

    record_id: str
    site: str
    agent_id: str
    state: str
    reason: str
    start: float
    end: float
    duration_s: float


Record = CallRecord | AgentStateRecord
_KINDS: dict[type[Record], str] = {CallRecord: CALL, AgentStateRecord: AGENT_STATE}


def record_envelope(record: Record, source: str) -> Envelope:
    """The envelope a record travels in; the same record gives the same envelope, so a
    record published twice is a byte-identical duplicate."""
    # Every field is a plain value: a flat copy is dataclasses.asdict's result, cheaper.
    data = {spec.name: getattr(record, spec.name) for spec in _specs(type(record))}
    return _envelope(type(record), data, source)


def _envelope(cls: type[Record], data: dict[str, Any], source: str) -> Envelope:
    """A record's envelope from its fields: keyed by its call or agent, at the time its fact
    happened (a call's end, or its wrap-up's end; the end of an agent's stretch)."""
    if cls is CallRecord:
        key, ts = f"call:{data['call_id']}", data["ended_at"] + (data["wrapup_s"] or 0.0)
    else:
        key, ts = f"agent:{data['agent_id']}", data["end"]
    return Envelope(ENVELOPE_TYPES[_KINDS[cls]], data["record_id"], source, ts, key, data)


# -- from the outbox (flat strings, as the Lua scripts write them) ---------------------------------


def record_from_outbox(site: str, entry_id: str, fields: Mapping[str, str]) -> Record:
    """A record from one outbox entry; MalformedEventError for an entry no script writes."""
    cls, data = _outbox_data(site, entry_id, fields)
    return cls(**data)


def outbox_envelope(site: str, entry_id: str, fields: Mapping[str, str], source: str) -> tuple[str, Envelope]:
    """The entry's kind (CALL or AGENT_STATE) and the envelope ``record_envelope`` gives for
    ``record_from_outbox``'s record, built without the record: the relay makes about four
    per routing decision."""
    cls, data = _outbox_data(site, entry_id, fields)
    return _KINDS[cls], _envelope(cls, data, source)


def _outbox_data(site: str, entry_id: str, fields: Mapping[str, str]) -> tuple[type[Record], dict[str, Any]]:
    """The record class an entry holds and its fields, typed, in the class's field order."""
    kind = fields.get("t", "")
    values = dict(fields)  # "t" stays: ``_typed`` ignores fields the class does not have
    values["record_id"], values["site"] = f"{site}:{entry_id}", site
    cls: type[Record]
    if kind == CALL:
        cls = CallRecord
        # Entries appended before quality sampling existed have no such fields.
        values.setdefault("recording", "")
        values.setdefault("qa_sampled", "0")
    elif kind == AGENT_STATE:
        cls = AgentStateRecord
        start, end = _number(values.get("start", "")), _number(values.get("end", ""))
        values["duration_s"] = repr(end - start) if start is not None and end is not None else ""
    else:
        raise MalformedEventError(f"outbox entry {entry_id}: unknown record kind {kind!r}")
    return cls, _typed(cls, values, _from_text, "outbox entry " + entry_id)


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _from_text(kind: str, text: Any) -> Any:
    if not isinstance(text, str):
        raise ValueError(f"expected text, got {text!r}")
    if kind == "str":
        return text
    if kind == "bool":
        if text not in ("0", "1"):
            raise ValueError(f"expected 0 or 1, got {text!r}")
        return text == "1"
    if kind.endswith("| None") and text == "":
        return None
    number = _number(text)
    if number is None:
        raise ValueError(f"expected a number, got {text!r}")
    return int(number) if kind == "int" else number


# -- from an envelope (typed JSON) -------------------------------------------------------------


def parse_call_record(message: Envelope | Mapping[str, Any]) -> CallRecord:
    """A ``record.call`` envelope (or its ``data``) as a CallRecord; MalformedEventError otherwise."""
    data = _data(message, RECORD_CALL)
    record = _build(CallRecord, data, _from_json, RECORD_CALL)
    if record.outcome not in OUTCOMES:
        expected = f"expected one of {sorted(OUTCOMES)}"
        raise MalformedEventError(f"{RECORD_CALL}: field 'outcome': unknown outcome {record.outcome!r}, {expected}")
    return record


def parse_agent_state_record(message: Envelope | Mapping[str, Any]) -> AgentStateRecord:
    """A ``record.agent_state`` envelope (or its ``data``) as an AgentStateRecord."""
    data = _data(message, RECORD_AGENT_STATE)
    record = _build(AgentStateRecord, data, _from_json, RECORD_AGENT_STATE)
    if record.state not in AGENT_STATES:
        expected = f"expected one of {sorted(AGENT_STATES)}"
        raise MalformedEventError(f"{RECORD_AGENT_STATE}: field 'state': unknown state {record.state!r}, {expected}")
    return record


def _data(message: Envelope | Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    if isinstance(message, Envelope):
        if message.type != kind:
            raise MalformedEventError(f"expected a {kind} envelope, got {message.type!r}")
        return message.data
    return message


def _from_json(kind: str, value: Any) -> Any:
    if kind.endswith("| None") and value is None:
        return None
    base = kind.removesuffix(" | None")
    if base == "str" and isinstance(value, str):
        return value
    if base == "bool" and isinstance(value, bool):
        return value
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    if base == "int" and numeric and float(value).is_integer():
        return int(value)
    if base == "float" and numeric and math.isfinite(value):
        return float(value)
    raise ValueError(f"expected {kind}, got {value!r}")


@dataclass(frozen=True, slots=True)
class _Spec:
    name: str
    type: str  # as declared: "float | None"
    required: bool
    default: Any  # when not required


_SPECS: dict[object, tuple[_Spec, ...]] = {}


def _specs(cls: object) -> tuple[_Spec, ...]:
    """A record class's fields, read once (the relay builds several records per decision)."""
    specs = _SPECS.get(cls)
    if specs is None:
        fields = dataclasses.fields(cls)  # type: ignore[arg-type]
        specs = _SPECS[cls] = tuple(
            _Spec(spec.name, str(spec.type), spec.default is dataclasses.MISSING, spec.default) for spec in fields
        )
    return specs


def _build[R](cls: type[R], data: Mapping[str, Any], convert: Callable[[str, Any], Any], where: str) -> R:
    """``cls`` from ``data`` (see ``_typed``)."""
    return cls(**_typed(cls, data, convert, where))


def _typed(cls: object, data: Mapping[str, Any], convert: Callable[[str, Any], Any], where: str) -> dict[str, Any]:
    """``cls``'s fields from ``data``, in declaration order, each converted by its declared
    type; a field with a default may be absent (it was added to the contract later) and takes
    its default; extra fields are ignored."""
    values: dict[str, Any] = {}
    for spec in _specs(cls):
        if spec.name not in data:
            if spec.required:
                raise MalformedEventError(f"{where}: field {spec.name!r} missing")
            values[spec.name] = spec.default
            continue
        try:
            values[spec.name] = convert(spec.type, data[spec.name])
        except ValueError as exc:
            raise MalformedEventError(f"{where}: field {spec.name!r}: {exc}") from None
    return values
