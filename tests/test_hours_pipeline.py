"""Business hours through the whole pipeline, as separate processes (AMI simulator -> ingest
-> Kafka -> routing worker -> Redis -> dispatcher -> AMI Redirect): a caller who arrives while
the queue is closed is never offered, is redirected to the closed target and is counted
closed; SIGHUP reloads the hours, and the next caller is answered."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from load_tests.embedded import EmbeddedRedis
from load_tests.referee import judge
from tests.polling import eventually

from .test_api_support import Pipeline, pipeline

pytestmark = pytest.mark.slow

WITHIN = 45.0  # a step of the whole pipeline, on a shared machine
TARGET = "acd-closed,billing,1"
CLOSED_ALL_WEEK = {"name": "billing", "hours": {"timezone": "UTC", "weekly": {}, "closed_target": TARGET}}
OPEN_ALL_WEEK = {"name": "billing", "hours": {"timezone": "UTC", "closed_target": TARGET}}


@pytest.fixture
async def pipe(
    redis: Redis, redis_server: EmbeddedRedis, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> AsyncIterator[Pipeline]:
    agents = [{"id": "a1", "skills": {"billing": 1}}]
    async with pipeline(
        tmp_path, redis_server.url, kafka_bootstrap, topic_prefix, queues=[CLOSED_ALL_WEEK], agents=agents
    ) as harness:
        harness.pbx.login("a1")
        await harness.start("ingest", "route", "dispatch")
        yield harness


async def test_closed_callers_are_never_offered_and_a_reload_opens_the_queue(pipe: Pipeline) -> None:
    async def a1_available() -> bool:
        return (await pipe.store.agent("a1")).get("state") == "available"

    await eventually(a1_available, "a1 available", within=WITHIN)
    ledger = pipe.pbx.ledger

    closed = pipe.pbx.place_call("billing", handle_time_s=1.0, patience_s=600)

    async def turned_away() -> bool:
        state = (await pipe.call_state(closed.call_id)).get("state")
        return state == "closed" and ledger.calls[closed.call_id].state == "closed"

    await eventually(turned_away, "the caller in [acd-closed], closed in the router", within=WITHIN)
    record = ledger.calls[closed.call_id]
    assert record.offers == [] and record.answered_at is None  # never offered to a1, who was free
    stats = await pipe.store.queue_stats("billing")
    assert stats["closed"] == 1 and stats.get("offered", 0) == 0
    assert (await pipe.store.agent("a1")).get("state") == "available"

    # The hours change in the file; SIGHUP reloads them: billing is open all week now.
    pipe.write_config(queues=[OPEN_ALL_WEEK])
    pipe.children.children["route"].process.send_signal(signal.SIGHUP)

    async def reloaded() -> bool:
        return "configuration reloaded: queues ['billing']" in pipe.log("route")

    await eventually(reloaded, lambda: f"route reloading; its log:\n{pipe.log('route')[-3000:]}", within=20)
    served = pipe.pbx.place_call("billing", handle_time_s=1.0, patience_s=600)
    await eventually(lambda: ledger.calls[served.call_id].answered_at is not None, "a1 answers", within=WITHIN)

    async def router_saw_the_answer() -> bool:  # its DialEnd is on its way through Kafka
        return (await pipe.call_state(served.call_id)).get("state") in ("connected", "completed")

    await eventually(router_saw_the_answer, "the router has the call connected", within=WITHIN)
    states = await pipe.store.call_states(list(ledger.calls))
    verdict = judge(ledger, states)
    assert verdict.clean, verdict
    stats = await pipe.store.queue_stats("billing")
    assert (stats["closed"], stats["offered"], stats["answered"]) == (1, 1, 1)
