"""Records as the routers publish them (docs/records.md), for the recorder's tests."""

from __future__ import annotations

import itertools
from typing import Any

from router.envelope import RECORD_AGENT_STATE, RECORD_CALL, Envelope
from router.postgres import dsn_target, open_postgres
from router.settings import PostgresSettings
from workers.records.migrate import upgrade
from workers.records.parse import parse_call_record
from workers.records.store import PostgresRecordStore

T0 = 1_800_000_000.0
_ids = itertools.count(1)


def call_record(call_id: str = "1800000000.1", **overrides: Any) -> dict[str, Any]:
    """An answered call's record, revision 1 (wrap-up not ended yet), with every field of
    the contract: it overflowed from support to billing 2 s after it entered."""
    record: dict[str, Any] = {
        "record_id": f"main:{T0:.0f}000-{next(_ids)}",
        "revision": 1,
        "site": "main",
        "call_id": call_id,
        "queue": "billing",
        "first_queue": "support",
        "priority": 2,
        "caller_number": "+15550100",
        "caller_name": "Ada Lovelace",
        "entered_at": T0,
        "first_offered_at": T0 + 4.5,
        "answered_at": T0 + 12.25,
        "ended_at": T0 + 192.25,
        "outcome": "answered",
        "wait_s": 10.25,
        "talk_s": 180.0,
        "wrapup_s": None,
        "agent_id": "a1",
        "offers": 2,
        "ring_no_answers": 1,
        "requirements": "billing>=2",
        "decision_reason": "longest-idle (idle 30.0s)",
        "sl_threshold_s": 20.0,
        "answered_within_threshold": True,
        "abandoned_within_threshold": False,
        "recording": "1800000000.1.wav",
        "qa_sampled": True,
        "segment": 1,
        "queue_entered_at": T0 + 2.0,
        "qa_reason": "random",
    }
    record.update(overrides)
    return record


def agent_state_record(agent_id: str = "a1", **overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "record_id": f"main:{T0:.0f}000-{next(_ids)}",
        "site": "main",
        "agent_id": agent_id,
        "state": "paused",
        "reason": "lunch",
        "start": T0,
        "end": T0 + 1800.5,
        "duration_s": 1800.5,
    }
    record.update(overrides)
    return record


def envelope(data: dict[str, Any]) -> Envelope:
    """The envelope a router publishes a record in."""
    if "call_id" in data:
        return Envelope(RECORD_CALL, data["record_id"], "router:main", T0, f"call:{data['call_id']}", data)
    return Envelope(RECORD_AGENT_STATE, data["record_id"], "router:main", T0, f"agent:{data['agent_id']}", data)


async def record_calls(dsn: str, calls: list[dict[str, Any]]) -> None:
    """Calls in PostgreSQL as `acd record` writes them (the schema applied, its own store)."""
    settings = PostgresSettings(dsn=dsn)
    await upgrade(settings)
    pool = await open_postgres(settings, "acd test")
    try:
        await PostgresRecordStore(pool, dsn_target(dsn)).write([parse_call_record(call) for call in calls])
    finally:
        await pool.close()


def sampled_call_record(call_id: str, answered: float, **overrides: Any) -> dict[str, Any]:
    """An answered call sampled for review (at random) and recorded."""
    values = {"qa_sampled": True, "qa_reason": "random", "answered_at": answered, "recording": f"acd-{call_id}.wav"}
    return call_record(call_id, **(values | overrides))
