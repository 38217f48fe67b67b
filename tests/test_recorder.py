"""`acd record` over a real broker and a real PostgreSQL: records land once, with their
values; repeats and older revisions change nothing; a malformed record is counted and
skipped without stopping its partition; with PostgreSQL down the recorder is not ready,
commits nothing and catches up when it returns; it stops promptly with a write in flight."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from load_tests.embedded import EmbeddedPostgres, free_port
from router.bus import KafkaEnvelopeProducer, ensure_topics
from router.clock import ScaledClock
from router.envelope import RECORD_CALL
from router.settings import AcdSettings, HttpSettings, KafkaSettings, PostgresSettings
from tests.polling import eventually
from tests.records_support import T0, agent_state_record, call_record, envelope
from workers.lifecycle import ProcessLifecycle
from workers.records.migrate import upgrade
from workers.records.parse import records_topics
from workers.records.recorder import open_recorder

# A member that joins after another left waits for the broker to expire it: keep that short.
REJOIN = {"session_timeout_ms": 1000, "heartbeat_interval_ms": 250}


def recorder_settings(kafka_bootstrap: str, prefix: str, dsn: str) -> AcdSettings:
    return AcdSettings(
        kafka=KafkaSettings(
            bootstrap_servers=kafka_bootstrap,
            topic_prefix=prefix,
            partitions=2,
            consumer_group=f"{prefix}-g",
            **REJOIN,
        ),
        postgres=PostgresSettings(dsn=dsn, retry_max_s=0.5, command_timeout_s=10, connect_timeout_s=2),
        http=HttpSettings(port=0),
    )


@contextlib.asynccontextmanager
async def recording(settings: AcdSettings) -> AsyncIterator[ProcessLifecycle]:
    """`acd record` in this process (its lifecycle: metrics, links, drain), until the block ends."""
    lifecycle = ProcessLifecycle("record", settings, ScaledClock(), grace_s=10)
    stop = asyncio.Event()
    task = asyncio.create_task(lifecycle.run(open_recorder, stop))
    try:
        await eventually(lambda: lifecycle.ready() or task.done(), "the recorder ready", within=30)
        if task.done():
            task.result()
        yield lifecycle
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


async def publish(settings: AcdSettings, *items: dict[str, Any] | bytes) -> None:
    """Records (dicts, in their envelope) or raw bytes (to the calls topic), in this order."""
    calls, agents = records_topics(settings.kafka.topic_prefix)
    await ensure_topics(settings.kafka, [calls, agents])
    producer = KafkaEnvelopeProducer(settings.kafka)
    await producer.start()
    try:
        for item in items:
            if isinstance(item, bytes):
                await producer.send_raw(calls, item, b"call:c1")
                continue
            record = envelope(item)
            await (await producer.send(calls if record.type == RECORD_CALL else agents, record))
    finally:
        await producer.stop()


def metric(lifecycle: ProcessLifecycle, name: str, **labels: str) -> float:
    return lifecycle.registry.get_sample_value(name, labels) or 0.0


async def table(dsn: str, name: str) -> list[dict[str, Any]]:
    connection = await asyncpg.connect(dsn)
    try:
        return [dict(row) for row in await connection.fetch(f"SELECT * FROM {name} ORDER BY 1, 2")]
    finally:
        await connection.close()


async def count(dsn: str, name: str) -> int:
    return len(await table(dsn, name))


@pytest.fixture
async def records_dsn(postgres_dsn: str) -> str:
    await upgrade(PostgresSettings(dsn=postgres_dsn))
    return postgres_dsn


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


async def test_published_records_land_in_their_tables(
    kafka_bootstrap: str, topic_prefix: str, records_dsn: str
) -> None:
    settings = recorder_settings(kafka_bootstrap, topic_prefix, records_dsn)
    async with recording(settings) as recorder:
        await publish(settings, call_record("c1"), agent_state_record("a7", state="wrap_up", reason=""))
        await eventually(lambda: _rows_in(records_dsn, 1, 1), "both records written", within=20)
        assert metric(recorder, "acd_recorder_records_written_total", kind="call") == 1
        assert metric(recorder, "acd_recorder_records_written_total", kind="agent_state") == 1
        assert metric(recorder, "acd_recorder_batch_seconds_count") >= 1
        assert metric(recorder, "acd_recorder_postgres_up") == 1
    (call,) = await table(records_dsn, "call_records")
    assert (call["site"], call["call_id"], call["queue"], call["first_queue"]) == ("main", "c1", "billing", "support")
    assert call["answered_at"] == at(T0 + 12.25) and call["wrapup_s"] is None and call["outcome"] == "answered"
    assert (call["offers"], call["ring_no_answers"], call["qa_sampled"]) == (2, 1, True)
    assert (call["segment"], call["queue_entered_at"], call["wait_s"]) == (1, at(T0 + 2.0), 10.25)
    (state,) = await table(records_dsn, "agent_state_records")
    assert (state["agent_id"], state["state"], state["start_at"]) == ("a7", "wrap_up", at(T0))


async def _rows_in(dsn: str, calls: int, states: int) -> bool:
    return (await count(dsn, "call_records"), await count(dsn, "agent_state_records")) == (calls, states)


async def test_repeats_and_an_older_revision_change_nothing(
    kafka_bootstrap: str, topic_prefix: str, records_dsn: str
) -> None:
    settings = recorder_settings(kafka_bootstrap, topic_prefix, records_dsn)
    first, state = call_record("c1"), agent_state_record()
    second = call_record("c1", revision=2, wrapup_s=25.5)
    async with recording(settings) as recorder:
        await publish(settings, first, state)
        await eventually(lambda: _rows_in(records_dsn, 1, 1), "the first revision written", within=20)
        await publish(settings, second)
        await eventually(lambda: _revision(records_dsn, 2), "the second revision written", within=20)
        before = await table(records_dsn, "call_records"), await table(records_dsn, "agent_state_records")

        await publish(settings, first, second, state)  # republished (the outbox relay may do so)
        await eventually(
            lambda: metric(recorder, "acd_recorder_records_unchanged_total", kind="call") == 2
            and metric(recorder, "acd_recorder_records_unchanged_total", kind="agent_state") == 1,
            "the repeats read",
            within=20,
        )
        assert metric(recorder, "acd_recorder_records_written_total", kind="call") == 2  # insert, update
        assert metric(recorder, "acd_recorder_records_written_total", kind="agent_state") == 1
    assert (await table(records_dsn, "call_records"), await table(records_dsn, "agent_state_records")) == before
    assert before[0][0]["wrapup_s"] == 25.5


async def _revision(dsn: str, revision: int) -> bool:
    rows = await table(dsn, "call_records")
    return bool(rows) and rows[0]["revision"] == revision


async def test_a_malformed_record_is_counted_and_skipped_and_its_partition_goes_on(
    kafka_bootstrap: str, topic_prefix: str, records_dsn: str
) -> None:
    settings = recorder_settings(kafka_bootstrap, topic_prefix, records_dsn)
    calls, agents = records_topics(topic_prefix)
    no_outcome = call_record("c1")
    del no_outcome["outcome"]
    wrong_type = envelope(call_record("c1")).__class__("ami.event", "x", "s", T0, "call:c1", {"Event": "Hangup"})
    async with recording(settings) as recorder:
        await publish(
            settings,
            b"not json",
            json.dumps({"v": 1, "type": RECORD_CALL, "data": {}}).encode(),  # not an envelope
            wrong_type.encode(),
            envelope(no_outcome).encode(),
            call_record("c1", priority="high"),
            call_record("c1", caller_name="Ada\x00"),  # a record, but PostgreSQL's text cannot hold NUL
            agent_state_record(state="lunch"),
            call_record("c1"),  # same key, same partition, after all of them
            agent_state_record(),
        )
        await eventually(lambda: _rows_in(records_dsn, 1, 1), "the valid records after the bad ones", within=20)
        await eventually(
            lambda: metric(recorder, "acd_recorder_records_malformed_total", topic=calls, reason="malformed") == 6,
            lambda: f"6 malformed on {calls}",
            within=10,
        )
        assert metric(recorder, "acd_recorder_records_malformed_total", topic=agents, reason="malformed") == 1
    (row,) = await table(records_dsn, "call_records")
    assert row["priority"] == 2 and row["outcome"] == "answered"


async def test_postgres_stopped_mid_run_the_recorder_waits_and_catches_up_exactly_once(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    async with EmbeddedPostgres(tmp_path / "pg") as server:
        dsn = server.dsn()
        await upgrade(PostgresSettings(dsn=dsn))
        settings = recorder_settings(kafka_bootstrap, topic_prefix, dsn)
        before = [call_record(f"c{i}") for i in range(5)]
        async with recording(settings) as recorder:
            await publish(settings, *before, *(agent_state_record(f"a{i}") for i in range(5)))
            await eventually(lambda: _rows_in(dsn, 5, 5), "the first records written", within=20)

            await server.stop()  # pg_ctl stop -m fast
            await eventually(lambda: not recorder.links()["postgres"], "not ready with PostgreSQL stopped")
            assert not recorder.ready() and metric(recorder, "acd_recorder_postgres_up") == 0
            during = [call_record(f"c{i}") for i in range(5, 10)]
            updates = [call_record(f"c{i}", revision=2, wrapup_s=float(i)) for i in range(3)]
            await publish(settings, *during, *updates, *(agent_state_record(f"a{i}") for i in range(5, 10)))
            await eventually(
                lambda: metric(recorder, "acd_recorder_write_retries_total") >= 2, "writes retried", within=20
            )

            await server.start()
            await eventually(lambda: _rows_in(dsn, 10, 10), "every record written after the restart", within=30)
            await eventually(recorder.ready, "ready again", within=10)
            assert metric(recorder, "acd_recorder_records_written_total", kind="agent_state") == 10
            assert metric(recorder, "acd_recorder_records_written_total", kind="call") == 13  # 10 + 3 updates
        revisions = {row["call_id"]: row["revision"] for row in await table(dsn, "call_records")}
        assert revisions == {f"c{i}": 2 if i < 3 else 1 for i in range(10)}


async def test_stopped_while_postgres_is_down_the_next_recorder_writes_what_was_read(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    """Offsets are committed only after the transaction: nothing read and not written is lost."""
    async with EmbeddedPostgres(tmp_path / "pg") as server:
        dsn = server.dsn()
        await upgrade(PostgresSettings(dsn=dsn))
        settings = recorder_settings(kafka_bootstrap, topic_prefix, dsn)
        async with recording(settings) as recorder:
            await server.stop()
            await eventually(lambda: not recorder.links()["postgres"], "not ready with PostgreSQL stopped")
            await publish(settings, *(call_record(f"c{i}") for i in range(4)), agent_state_record())
            await eventually(
                lambda: metric(recorder, "acd_recorder_write_retries_total") >= 1, "a write tried", within=20
            )
        await server.start()
        async with recording(settings):
            await eventually(lambda: _rows_in(dsn, 4, 1), "what the first recorder read, written", within=30)


async def test_cancellation_finishes_promptly_with_a_write_in_flight(
    kafka_bootstrap: str, topic_prefix: str, records_dsn: str
) -> None:
    settings = recorder_settings(kafka_bootstrap, topic_prefix, records_dsn)
    blocker = await asyncpg.connect(records_dsn)
    lifecycle = ProcessLifecycle("record", settings, ScaledClock())
    task = asyncio.create_task(lifecycle.run(open_recorder, asyncio.Event()))
    try:
        await eventually(lambda: lifecycle.ready() or task.done(), "the recorder ready", within=30)
        transaction = blocker.transaction()
        await transaction.start()
        await blocker.execute("LOCK TABLE call_records IN ACCESS EXCLUSIVE MODE")
        await publish(settings, call_record())
        await eventually(lambda: _waiting_on_a_lock(blocker), "the recorder's write waiting on the lock", within=20)
        started = time.monotonic()
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=3)
        assert done, "the recorder did not finish within 3 s of cancellation"
        assert task.cancelled() and time.monotonic() - started < 3
        await transaction.rollback()
    finally:
        if not task.done():
            task.cancel()
        await blocker.close()


async def _waiting_on_a_lock(connection: asyncpg.Connection) -> bool:
    waiting = await connection.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'acd record' AND wait_event_type = 'Lock'"
    )
    return bool(waiting)


# -- the real process ----------------------------------------------------------------------


async def test_acd_record_runs_as_a_process_and_drains_on_sigterm(
    kafka_bootstrap: str, topic_prefix: str, records_dsn: str, tmp_path: Path
) -> None:
    settings = recorder_settings(kafka_bootstrap, topic_prefix, records_dsn)
    config = tmp_path / "acd.yaml"
    config.write_text(
        json.dumps({"kafka": {"bootstrap_servers": kafka_bootstrap, "topic_prefix": topic_prefix, "partitions": 2}})
    )
    dsn_file = tmp_path / "dsn"
    dsn_file.write_text(records_dsn + "\n")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACD_")}
    env |= {"ACD_POSTGRES__DSN_FILE": str(dsn_file), "ACD_HTTP__PORT": str(port)}
    log = tmp_path / "record.log"
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "workers.cli", "record", "--config", str(config), env=env, stdout=out, stderr=out
        )
    try:
        await eventually(lambda: _ready(port), lambda: f"acd record ready; log:\n{log.read_text()[-2000:]}", within=60)
        await publish(settings, call_record("p1"), agent_state_record())
        await eventually(lambda: _rows_in(records_dsn, 1, 1), "records written by the process", within=20)
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 20) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def _ready(port: int) -> bool:
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session,
            session.get(f"http://127.0.0.1:{port}/ready") as response,
        ):
            body = await response.json()
    except (aiohttp.ClientError, OSError, TimeoutError):
        return False
    return response.status == 200 and body["links"] == {"postgres": True, "kafka": True}
