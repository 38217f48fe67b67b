"""Ingest in pairs over real processes: two `acd ingest` in front of the AMI simulator, a
routing worker and the dispatcher, on the session's redis-server and broker. Killing the
active one makes the standby active within the lease's bound and loses no call; an envelope
of a deposed ingest that arrives after its successor's is dropped by the routing worker."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaProducer

from load_tests.embedded import EmbeddedRedis
from router.envelope import AMI_EVENT, Envelope
from router.lease import INGEST_LEASE_RENEW_S, INGEST_LEASE_TTL_S
from router.store import Keys
from tests.polling import eventually

from .test_api_support import Pipeline, pipeline
from .test_pbx_realities_pipeline import call_state_is, ended, metric

pytestmark = pytest.mark.slow

SITE = "pair"
QUEUES = [
    {"name": "q-pair", "requirements": [{"skill": "x"}]},
    {"name": "q-nobody", "requirements": [{"skill": "nobody"}]},
]
AGENTS = [{"id": "a1", "skills": {"x": 1}}]
TOPICS = f"pair-{uuid.uuid4().hex[:8]}"
PAIR = ("ingest", "ingest-2")
POLL_SLACK_S = 0.25  # the test reads /metrics every 50 ms, on a busy machine


@pytest.fixture(scope="module")
async def pipe(
    tmp_path_factory: pytest.TempPathFactory, redis_server: EmbeddedRedis, kafka_bootstrap: str
) -> AsyncIterator[Pipeline]:
    async with pipeline(
        tmp_path_factory.mktemp("pair"),
        redis_server.url,
        kafka_bootstrap,
        TOPICS,
        queues=QUEUES,
        agents=AGENTS,
        site=SITE,
    ) as pipe:
        pipe.pbx.login("a1")
        await pipe.start(*PAIR, "route-1", "dispatch")
        await eventually(lambda: agent_available(pipe), "a1 available", within=30)
        yield pipe


async def agent_available(pipe: Pipeline) -> bool:
    return (await pipe.store.agent("a1")).get("state") == "available"


async def active_ones(pipe: Pipeline) -> list[str]:
    live = [n for n in PAIR if pipe.children.children[n].process.returncode is None]
    return [n for n in live if await metric(pipe, n, "acd_ingest_active") == 1]


async def test_the_standby_takes_over_within_two_seconds_and_no_call_is_lost(pipe: Pipeline) -> None:
    pbx = pipe.pbx
    [active] = await eventually(lambda: active_ones(pipe), "one ingest active")
    [standby] = [n for n in PAIR if n != active]
    known = pbx.place_call("q-nobody", handle_time_s=1)  # waiting when the active dies
    await eventually(lambda: call_state_is(pipe, known.call_id, "waiting"), within=20)

    await pipe.children.kill(active, signal.SIGKILL)
    killed_at = time.monotonic()
    # In the gap (the lease outlives its dead holder by up to its TTL): a caller who comes
    # and goes, the known caller giving up, a caller who stays.
    brief = pbx.place_call("q-nobody", handle_time_s=1)
    await asyncio.sleep(0.1)
    assert pbx.hangup_call(brief.call_id) and pbx.hangup_call(known.call_id)
    stays = pbx.place_call("q-pair", handle_time_s=0.5)
    await eventually(lambda: ended(pipe, brief.call_id), within=5)
    gap_events_before = time.monotonic() - killed_at

    await eventually(lambda: active_ones(pipe), "the standby active", within=5, every=0.05)
    took_over_s = time.monotonic() - killed_at
    assert await active_ones(pipe) == [standby]
    assert took_over_s <= INGEST_LEASE_TTL_S + INGEST_LEASE_RENEW_S + POLL_SLACK_S, took_over_s
    assert gap_events_before < took_over_s  # they did happen while nobody published

    # Nothing lost: the call that came and went is counted (the standby's log), the one that
    # ended in the gap ended as it did, the one still there is answered.
    await eventually(lambda: call_state_is(pipe, brief.call_id, "abandoned"), within=20)
    await eventually(lambda: call_state_is(pipe, known.call_id, "abandoned"), within=20)
    await eventually(lambda: pbx.ledger.calls[stays.call_id].answered_at is not None, within=20)
    assert await metric(pipe, standby, "acd_ingest_gap_replayed_total") >= 1

    await pipe.start(active)  # as systemd restarts it: it stands by
    assert await active_ones(pipe) == [standby]
    assert await metric(pipe, active, "acd_ingest_active") == 0


async def test_an_envelope_of_a_deposed_ingest_arriving_late_is_ignored(
    pipe: Pipeline, kafka_bootstrap: str
) -> None:
    """Written to a partition after the active's envelopes, with the token of an earlier
    term: dropped. The same envelope with the current token is applied (the control)."""
    marks = await pipe.redis.hgetall(Keys(SITE).fence_marks)
    part, mark = next(iter(marks.items()))
    token = int(mark.split(":")[0])
    topic, _, partition = part.rpartition(":")
    fenced_before = await metric(pipe, "route-1", "acd_events_fenced_total")
    late, current = f"late-{uuid.uuid4().hex[:6]}", f"current-{uuid.uuid4().hex[:6]}"
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for call_id, fence in ((late, token - 1), (current, token)):
            envelope = _queued(call_id, fence, pipe.clock.now())
            await producer.send_and_wait(topic, envelope.encode(), envelope.key.encode(), partition=int(partition))
    finally:
        await producer.stop()
    await eventually(lambda: call_state_is(pipe, current, "waiting"), within=20)
    await eventually(
        lambda: _fenced_more_than(pipe, fenced_before), "route-1 counted the late envelope", within=10
    )
    assert await pipe.call_state(late) == {}


async def _fenced_more_than(pipe: Pipeline, before: float) -> bool:
    return await metric(pipe, "route-1", "acd_events_fenced_total") > before


def _queued(call_id: str, fence: int, at: float) -> Envelope:
    fields = {
        "Event": "UserEvent",
        "UserEvent": "AcdCallQueued",
        "Queue": "q-nobody",
        "Channel": f"PJSIP/trunk-{call_id}",
        "Uniqueid": call_id,
        "Linkedid": call_id,
    }
    session = int(time.time() * 1000)
    return Envelope(
        type=AMI_EVENT,
        id=f"{session}-1",
        source="ami://deposed",
        ts=at,
        key=f"call:{call_id}",
        data=json.loads(json.dumps(fields)),
        session=session,
        seq=1,
        fence=fence,
    )


async def test_a_clean_stop_hands_the_lease_over_at_once(pipe: Pipeline) -> None:
    """SIGTERM: the active publishes what it has queued, gives the lease up and exits 0; the
    standby takes it at its next attempt (every renewal period), not after the TTL."""
    [active] = await eventually(lambda: active_ones(pipe), "one ingest active")
    [standby] = [n for n in PAIR if n != active]
    pid = pipe.children.children[active].process.pid
    await pipe.children.kill(active, signal.SIGTERM)
    assert pipe.children.children[active].process.returncode == 0
    # Given up, not left to expire: the stopped one no longer holds it once it has exited.
    # (Not a bound on the hand-over's time: that depends on how loaded the machine is.)
    holder = await pipe.redis.get(Keys(SITE).ingest_lease)
    if isinstance(holder, bytes):
        holder = holder.decode()
    assert holder is None or not holder.endswith(f"-{pid}"), holder
    await eventually(lambda: active_ones(pipe), "the standby active", within=5, every=0.05)
    assert await active_ones(pipe) == [standby]
    await pipe.start(active)
