"""Did every call the router ended reach PostgreSQL? The lab's check of the records path
(outbox, relay, Kafka, `acd record`), judged against the router's own account in Redis.

A call the router ended has ``rec_rev`` (the revision of the last record it appended) in
its hash; PostgreSQL must hold that call's row at that revision. The recorder may lag a
little behind the end of the traffic, so the check waits for it, up to a deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import asyncpg
from redis.asyncio import Redis

from router.store.keys import Keys

RECORDS_WAIT_S = 15.0  # real seconds the recorder may take to catch up after the traffic


async def expected_revisions(redis: Redis, site: str, call_ids: Sequence[str]) -> dict[str, int]:
    """call id -> revision of its last record, for the calls the router ended."""
    keys = Keys(site)
    async with redis.pipeline(transaction=False) as pipe:
        for call_id in call_ids:
            pipe.hget(keys.call(call_id), "rec_rev")
        revisions = await pipe.execute()
    return {call_id: int(rev) for call_id, rev in zip(call_ids, revisions, strict=True) if rev}


async def recorded_revisions(dsn: str, site: str) -> dict[str, int]:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch("SELECT call_id, revision FROM call_records WHERE site = $1", site)
        return {row["call_id"]: row["revision"] for row in rows}
    finally:
        await connection.close()


async def agent_state_count(dsn: str, site: str) -> int:
    connection = await asyncpg.connect(dsn)
    try:
        return int(await connection.fetchval("SELECT count(*) FROM agent_state_records WHERE site = $1", site))
    finally:
        await connection.close()


async def records_account(
    redis: Redis,
    dsn: str,
    site: str,
    call_ids: Sequence[str],
    wait_s: float = RECORDS_WAIT_S,
    listed: int | None = 20,
) -> dict[str, Any]:
    """``calls``: ended calls; ``recorded``: rows at their last revision; ``missing`` (ids,
    the first ``listed``; None: all) and ``missing_count``: ended calls with no row or an older one; ``extra``: rows
    for calls the router does not know as ended."""
    deadline = time.monotonic() + wait_s
    while True:
        expected = await expected_revisions(redis, site, call_ids)
        recorded = await recorded_revisions(dsn, site)
        missing = sorted(c for c, rev in expected.items() if recorded.get(c) != rev)
        if not missing or time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.25)
    return {
        "calls": len(expected),
        "recorded": len(expected) - len(missing),
        "missing_count": len(missing),
        "missing": missing[:listed],
        "extra": len(set(recorded) - set(expected)),
        "agent_states": await agent_state_count(dsn, site),
    }
