"""The lab's records check (chaos and `acd demo --records`) sees a call the router ended
whose last record did not reach PostgreSQL, and waits for one that arrives late."""

from __future__ import annotations

import asyncio

import asyncpg
from redis.asyncio import Redis

from load_tests.records_check import records_account
from router.settings import PostgresSettings
from router.store.keys import Keys
from workers.records.migrate import upgrade

SITE = "main"


async def _ended(redis: Redis, call_id: str, revision: int) -> None:
    await redis.hset(Keys(SITE).call(call_id), mapping={"state": "completed", "rec_rev": revision})


async def _row(dsn: str, call_id: str, revision: int) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            "INSERT INTO call_records (site, call_id, record_id, revision, queue, first_queue, priority,"
            " caller_number, caller_name, entered_at, ended_at, outcome, wait_s, talk_s, agent_id, offers,"
            " ring_no_answers, requirements, decision_reason, sl_threshold_s, answered_within_threshold,"
            " abandoned_within_threshold, recording, qa_sampled)"
            " VALUES ($1, $2, $3, $4, 'q', 'q', 0, '', '', now(), now(), 'answered', 1, 1, 'a1', 1, 0, '', '',"
            " 20, true, false, '', false)"
            " ON CONFLICT (site, call_id) DO UPDATE SET revision = EXCLUDED.revision",
            SITE,
            call_id,
            f"{SITE}:{call_id}-{revision}",
            revision,
        )
    finally:
        await connection.close()


async def test_a_call_whose_last_revision_is_not_in_postgres_is_missing(
    redis: Redis, postgres_dsn: str
) -> None:
    await upgrade(PostgresSettings(dsn=postgres_dsn))
    await _ended(redis, "c1", 1)
    await _ended(redis, "c2", 2)
    await redis.hset(Keys(SITE).call("c3"), mapping={"state": "waiting"})  # not ended: no record due
    await _row(postgres_dsn, "c1", 1)
    await _row(postgres_dsn, "c2", 1)  # its wrap-up's revision 2 never arrived
    account = await records_account(redis, postgres_dsn, SITE, ["c1", "c2", "c3"], wait_s=0.5)
    assert (account["calls"], account["recorded"], account["missing"]) == (2, 1, ["c2"])


async def test_a_record_arriving_while_it_waits_is_counted(redis: Redis, postgres_dsn: str) -> None:
    await upgrade(PostgresSettings(dsn=postgres_dsn))
    await _ended(redis, "c1", 1)

    async def late() -> None:
        await asyncio.sleep(0.5)
        await _row(postgres_dsn, "c1", 1)

    task = asyncio.create_task(late())
    account = await records_account(redis, postgres_dsn, SITE, ["c1"], wait_s=10)
    await task
    assert (account["missing_count"], account["recorded"], account["extra"]) == (0, 1, 0)
