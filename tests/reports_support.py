"""Known call and agent-state records for the reports' tests, written as the recorder writes
them (workers/records/store.py), and the figures they must give, computed by hand.

The day is 2026-10-25, when Europe/Berlin's clocks go back from 03:00+02:00 to 02:00+01:00
(at 01:00 UTC). Hourly intervals of the Berlin report from 00:00 to 05:00 local time:

    #0 22:00Z-23:00Z (24th)  00:00+02    #3 01:00Z-02:00Z  02:00+01 (the repeated hour)
    #1 23:00Z-00:00Z         01:00+02    #4 02:00Z-03:00Z  03:00+01
    #2 00:00Z-01:00Z         02:00+02    #5 03:00Z-04:00Z  04:00+01

Queues: billing (threshold 20 s, the default formula: within / (answered + abandoned after
the threshold)), support (30 s, within / answered), sales (20 s, within / (answered +
abandoned)), which has no calls.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg

from router.postgres import Pool, open_postgres
from router.settings import PostgresSettings
from workers.records.migrate import upgrade
from workers.records.parse import parse_agent_state_record, parse_call_record
from workers.records.store import PostgresRecordStore

CONFIG = """
site: main
timezone: Europe/Berlin
queues:
  - name: billing
    service_level: {threshold_s: 20}
  - name: support
    service_level: {threshold_s: 30, formula: answered_within_over_answered}
  - name: sales
    service_level: {threshold_s: 20, formula: answered_within_over_answered_and_abandoned}
agents:
  - {id: a1, skills: {billing: 3}}
  - {id: a2, skills: {billing: 3}}
  - {id: a3, skills: {support: 3}}
  - {id: a4, skills: {sales: 3}}
"""
THRESHOLDS = {"billing": 20.0, "support": 30.0, "sales": 20.0}
DEFAULT = "answered_within_over_answered_and_abandoned_after_threshold"
_ids = itertools.count(1)


def at(text: str) -> float:
    """Epoch seconds of an ISO time (a bare time of day is on 2026-10-25, UTC)."""
    if "T" not in text:
        text = f"2026-10-25T{text}Z"
    return datetime.fromisoformat(text).timestamp()


def call(
    call_id: str,
    queue: str,
    entered: str,
    outcome: str,
    wait: float,
    *,
    answered: bool = False,
    talk: float = 0.0,
    wrapup: float | None = None,
    agent: str = "",
    site: str = "main",
    revision: int = 1,
) -> dict[str, Any]:
    """A call record as the router publishes it (docs/records.md)."""
    start = at(entered)
    threshold = THRESHOLDS[queue]
    return {
        "record_id": f"{site}:{next(_ids)}",
        "revision": revision,
        "site": site,
        "call_id": call_id,
        "queue": queue,
        "first_queue": queue,
        "priority": 0,
        "caller_number": "+4930123",
        "caller_name": "",
        "entered_at": start,
        "first_offered_at": start + 1 if answered else None,
        "answered_at": start + wait if answered else None,
        "ended_at": start + wait + talk,
        "outcome": outcome,
        "wait_s": wait,
        "talk_s": talk,
        "wrapup_s": wrapup,
        "agent_id": agent,
        "offers": int(answered),
        "ring_no_answers": 0,
        "requirements": "",
        "decision_reason": "longest-idle" if answered else "",
        "sl_threshold_s": threshold,
        "answered_within_threshold": answered and wait <= threshold,
        "abandoned_within_threshold": outcome == "abandoned" and wait <= threshold,
        "recording": "",
        "qa_sampled": False,
        "segment": 1,
        "queue_entered_at": start,  # one queue all along: entered it when it entered the ACD
    }


def state(agent: str, name: str, start: str, end: str, reason: str = "", site: str = "main") -> dict[str, Any]:
    """An agent-state record."""
    begin, finish = at(start), at(end)
    return {
        "record_id": f"{site}:s{next(_ids)}",
        "site": site,
        "agent_id": agent,
        "state": name,
        "reason": reason,
        "start": begin,
        "end": finish,
        "duration_s": finish - begin,
    }


def calls() -> list[dict[str, Any]]:
    return [
        # billing, #2 (02:00+02:00)
        call("c1", "billing", "00:10:00", "answered", 10, answered=True, talk=100, agent="a1"),
        call("c2", "billing", "00:20:00", "answered", 25, answered=True, talk=200, wrapup=40, agent="a2"),
        call("c3", "billing", "00:30:00", "abandoned", 5),
        call("c4", "billing", "00:40:00", "abandoned", 50),
        call("c8", "billing", "00:59:59.500000", "answered", 20, answered=True, talk=50, wrapup=10, agent="a2"),
        # billing, #3 (02:00+01:00): c9 at the boundary belongs here
        call("c9", "billing", "01:00:00", "pbx_restart", 3),
        call("c5", "billing", "01:10:00", "transferred", 15, answered=True, talk=300, agent="a1"),
        call("c6", "billing", "01:20:00", "closed_by_resync", 12),
        call("c7", "billing", "01:30:00", "overflowed", 60),
        # support, #2 and #4
        call("s1", "support", "00:15:00", "answered", 40, answered=True, talk=120, wrapup=0, agent="a3"),
        call("s2", "support", "00:25:00", "abandoned", 45),
        call("s3", "support", "02:30:00", "answered", 10, answered=True, talk=60, wrapup=30, agent="a3"),
        # outside the hourly range, or another site's
        call("x1", "billing", "2026-10-24T21:59:00Z", "answered", 5, answered=True, talk=10, wrapup=0, agent="a1"),
        call("x2", "billing", "04:00:00", "abandoned", 30),
        call("x3", "billing", "00:05:00", "answered", 5, answered=True, talk=10, wrapup=0, agent="a1", site="other"),
        call("e1", "billing", "23:30:00", "answered", 5, answered=True, talk=10, wrapup=0, agent="a2"),
    ]


def wrapup_ended() -> list[dict[str, Any]]:
    """c1's second revision, once a1's after-call work ended."""
    return [
        call("c1", "billing", "00:10:00", "answered", 10, answered=True, talk=100, wrapup=20, agent="a1", revision=2)
    ]


def states() -> list[dict[str, Any]]:
    return [
        state("a1", "available", "2026-10-24T23:30:00Z", "00:10:00"),
        state("a1", "reserved", "00:10:00", "00:10:10"),
        state("a1", "on_call", "00:10:10", "00:11:50"),
        state("a1", "wrap_up", "00:11:50", "00:12:10"),
        state("a1", "paused", "00:12:10", "01:12:10", "lunch"),
        state("a1", "available", "01:12:10", "01:30:00"),
        state("a1", "paused", "01:30:00", "01:40:00"),
        state("a1", "logged_out", "01:40:00", "09:00:00"),
        state("a2", "paused", "2026-10-24T21:30:00Z", "2026-10-24T22:15:00Z", "break"),
        state("a2", "on_call", "00:20:25", "00:23:45"),
        state("a2", "wrap_up", "00:23:45", "00:24:25"),
        state("a2", "available", "00:24:25", "01:05:00"),
        state("a3", "available", "03:30:00", "04:30:00"),
        state("a1", "available", "00:00:00", "01:00:00", site="other"),
    ]


# (site, call_id, total): c1 twice and once without a score; x1 is outside the range, x3 another site's.
REVIEWS = [("main", "c1", 80.0), ("main", "c1", 90.0), ("main", "c1", None), ("main", "s3", 70.0),
           ("main", "x1", 10.0), ("other", "x3", 5.0)]  # fmt: skip

BERLIN_HOURS = [
    "2026-10-25T00:00:00+02:00",
    "2026-10-25T01:00:00+02:00",
    "2026-10-25T02:00:00+02:00",
    "2026-10-25T02:00:00+01:00",
    "2026-10-25T03:00:00+01:00",
    "2026-10-25T04:00:00+01:00",
    "2026-10-25T05:00:00+01:00",
]

ZERO_CALLS = {
    "offered": 0, "answered": 0, "abandoned": 0, "abandoned_within_threshold": 0, "overflowed": 0,
    "answered_within_threshold": 0, "service_level": None, "asa_s": None, "aht_s": None, "avg_talk_s": None,
    "avg_wrapup_s": None, "abandon_rate": None, "longest_wait_s": None,
}  # fmt: skip
# Per (interval index, queue): what differs from ZERO_CALLS.
QUEUE_FIGURES: dict[tuple[int, str], dict[str, Any]] = {
    (2, "billing"): {
        "offered": 5, "answered": 3, "abandoned": 2, "abandoned_within_threshold": 1,
        "answered_within_threshold": 2, "service_level": 2 / 4, "asa_s": 55 / 3, "avg_talk_s": 350 / 3,
        "avg_wrapup_s": 70 / 3, "aht_s": 350 / 3 + 70 / 3, "abandon_rate": 2 / 5, "longest_wait_s": 50,
    },
    (3, "billing"): {
        # c5 transferred (answered, wrap-up still running), c6 closed by the resync unanswered
        # after 12 s (a short abandon), c7 overflowed, c9 cut by a PBX restart.
        "offered": 4, "answered": 1, "abandoned": 1, "abandoned_within_threshold": 1, "overflowed": 1,
        "answered_within_threshold": 1, "service_level": 1 / 1, "asa_s": 15, "avg_talk_s": 300,
        "avg_wrapup_s": None, "aht_s": 300, "abandon_rate": 1 / 4, "longest_wait_s": 60,
    },
    (2, "support"): {
        "offered": 2, "answered": 1, "abandoned": 1, "service_level": 0 / 1, "asa_s": 40, "avg_talk_s": 120,
        "avg_wrapup_s": 0, "aht_s": 120, "abandon_rate": 1 / 2, "longest_wait_s": 45,
    },
    (4, "support"): {
        "offered": 1, "answered": 1, "answered_within_threshold": 1, "service_level": 1.0, "asa_s": 10,
        "avg_talk_s": 60, "avg_wrapup_s": 30, "aht_s": 90, "abandon_rate": 0.0, "longest_wait_s": 10,
    },
}  # fmt: skip
FORMULAS = {
    "billing": DEFAULT,
    "support": "answered_within_over_answered",
    "sales": "answered_within_over_answered_and_abandoned",
}
SITE_FIGURES: dict[int, dict[str, Any]] = {
    2: {
        # billing's parts (2, 4) and support's (0, 1) summed: 2 / 5
        "offered": 7, "answered": 4, "abandoned": 3, "abandoned_within_threshold": 1,
        "answered_within_threshold": 2, "service_level": 2 / 5, "asa_s": 95 / 4, "avg_talk_s": 470 / 4,
        "avg_wrapup_s": 70 / 4, "aht_s": 470 / 4 + 70 / 4, "abandon_rate": 3 / 7, "longest_wait_s": 50,
    },
    3: QUEUE_FIGURES[3, "billing"],
    4: QUEUE_FIGURES[4, "support"],
}  # fmt: skip
CALL_TOTALS = {
    # SL parts: billing (2, 4) + (1, 1), support (0, 1) + (1, 1) -> 4 / 7
    "offered": 12, "answered": 6, "abandoned": 4, "abandoned_within_threshold": 2, "overflowed": 1,
    "answered_within_threshold": 4, "service_level": 4 / 7, "asa_s": 120 / 6, "avg_talk_s": 830 / 6,
    "avg_wrapup_s": 100 / 5, "aht_s": 830 / 6 + 20, "abandon_rate": 4 / 12, "longest_wait_s": 60,
    "service_level_formula": "per_queue",
}  # fmt: skip

ZERO_AGENT = {
    "calls_handled": 0, "talk_s": 0.0, "wrapup_s": 0.0, "reserved_s": 0.0, "available_s": 0.0, "paused_s": 0.0,
    "paused_by_reason": {}, "logged_in_s": 0.0, "occupancy": None, "qa_reviews": 0, "avg_quality_score": None,
}  # fmt: skip
# Per (interval index, agent), in the rows' order: what differs from ZERO_AGENT.
AGENT_FIGURES: dict[tuple[int, str], dict[str, Any]] = {
    (0, "a2"): {"paused_s": 900, "paused_by_reason": {"break": 900}, "logged_in_s": 900},
    (1, "a1"): {"available_s": 1800, "logged_in_s": 1800, "occupancy": 0.0},
    (2, "a1"): {
        "calls_handled": 1, "available_s": 600, "reserved_s": 10, "talk_s": 100, "wrapup_s": 20, "paused_s": 2870,
        "paused_by_reason": {"lunch": 2870}, "logged_in_s": 3600, "occupancy": 120 / 720, "qa_reviews": 2,
        "avg_quality_score": 85.0,
    },
    (2, "a2"): {
        "calls_handled": 2, "talk_s": 200, "wrapup_s": 40, "available_s": 2135, "logged_in_s": 2375,
        "occupancy": 240 / 2375,
    },
    (2, "a3"): {"calls_handled": 1},
    (3, "a1"): {
        "calls_handled": 1, "paused_s": 1330, "paused_by_reason": {"(none)": 600, "lunch": 730},
        "available_s": 1070, "logged_in_s": 2400, "occupancy": 0.0,
    },
    (3, "a2"): {"available_s": 300, "logged_in_s": 300, "occupancy": 0.0},
    (4, "a3"): {"calls_handled": 1, "qa_reviews": 1, "avg_quality_score": 70.0},
    (5, "a3"): {"available_s": 1800, "logged_in_s": 1800, "occupancy": 0.0},
}  # fmt: skip
AGENT_TOTALS = {
    "calls_handled": 6, "talk_s": 300, "wrapup_s": 60, "reserved_s": 10, "available_s": 7705, "paused_s": 5100,
    "paused_by_reason": {"(none)": 600, "break": 900, "lunch": 3600}, "logged_in_s": 13175,
    "occupancy": 360 / 8065, "qa_reviews": 3, "avg_quality_score": 80.0,
}  # fmt: skip


async def write_records(dsn: str, site: str = "main") -> None:
    """The schema (the project's migrations), then the records through the recorder's writer
    (two batches: c1's second revision after the first), then the quality reviews; the
    records of site "main" as ``site``'s."""

    def moved(record: dict[str, Any]) -> dict[str, Any]:
        return record | {"site": site} if record["site"] == "main" else record

    settings = PostgresSettings(dsn=dsn)
    await upgrade(settings)
    pool = await open_postgres(settings, "acd reports test")
    try:
        store = PostgresRecordStore(pool, "test")
        records = [parse_call_record(moved(c)) for c in calls()]
        await store.write(records + [parse_agent_state_record(moved(s)) for s in states()])
        await store.write([parse_call_record(moved(c)) for c in wrapup_ended()])
        await add_reviews(pool, site)
    finally:
        await pool.close()


async def add_reviews(pool: Pool, site: str = "main") -> None:
    reviews = [(site if where == "main" else where, call_id, total) for where, call_id, total in REVIEWS]
    await pool.executemany(
        "INSERT INTO qa_reviews (site, call_id, reviewer, total) VALUES ($1, $2, 'qa1', $3)", reviews
    )


@asynccontextmanager
async def connection(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(dsn)
    try:
        yield conn
    finally:
        await conn.close()


def write_config(path: Path, extra: str = "") -> Path:
    path.write_text(CONFIG + extra)
    return path
