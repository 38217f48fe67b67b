"""Affinity over real processes: ingest, a routing worker and the dispatcher as `acd` child
processes, the session's redis-server and broker, and the AMI simulator placing returning
callers and callers a CRM lookup gave a preferred agent (docs/routing.md, Affinity)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from load_tests.embedded import EmbeddedRedis
from tests.polling import eventually

from .test_api_support import Pipeline, pipeline

pytestmark = pytest.mark.slow

QUEUES = [
    {"name": "q-back", "requirements": [{"skill": "back"}], "last_agent": {"window_s": 3600, "wait_s": 30}},
    {"name": "q-fall", "requirements": [{"skill": "fall"}], "last_agent": {"window_s": 3600, "wait_s": 2}},
    {"name": "q-crm", "requirements": [{"skill": "crm"}], "preferred_agent": {"wait_s": 30}},
]
AGENTS = [
    {"id": "b1", "skills": {"back": 1}},
    {"id": "b2", "skills": {"back": 1}},
    {"id": "f1", "skills": {"fall": 1}},
    {"id": "f2", "skills": {"fall": 1}},
    {"id": "c1", "skills": {"crm": 1}},
    {"id": "c2", "skills": {"crm": 1}},  # never logs in
]
TOPICS = f"affinity-{uuid.uuid4().hex[:8]}"  # own topics, also on a shared external Kafka


@pytest.fixture(scope="module")
async def pipe(
    tmp_path_factory: pytest.TempPathFactory, redis_server: EmbeddedRedis, kafka_bootstrap: str
) -> AsyncIterator[Pipeline]:
    async with pipeline(
        tmp_path_factory.mktemp("affinity"),
        redis_server.url,
        kafka_bootstrap,
        TOPICS,
        queues=QUEUES,
        agents=AGENTS,
        site="affinity",
    ) as pipe:
        await pipe.start("ingest", "route-1", "dispatch")
        yield pipe


async def log_in(pipe: Pipeline, agent_id: str) -> None:
    pipe.pbx.login(agent_id)
    await eventually(lambda: agent_available(pipe, agent_id), within=30)


async def agent_available(pipe: Pipeline, agent_id: str) -> bool:
    return (await pipe.store.agent(agent_id)).get("state") == "available"


def offers(pipe: Pipeline, call_id: str) -> list[tuple[str | None, str | None]]:
    return [(offer.agent_id, offer.outcome) for offer in pipe.pbx.ledger.calls[call_id].offers]


async def answered(pipe: Pipeline, call_id: str) -> bool:
    return pipe.pbx.ledger.calls[call_id].answered_at is not None


async def ended(pipe: Pipeline, call_id: str) -> bool:
    return pipe.pbx.ledger.calls[call_id].ended_at is not None


async def answered_by(pipe: Pipeline, queue: str, caller: str, agent_id: str, handle_time_s: float) -> None:
    """``agent_id`` (the only one logged in for ``queue``) answers a call from ``caller``."""
    call = pipe.pbx.place_call(queue, caller_id=caller, handle_time_s=handle_time_s)
    await eventually(lambda: answered(pipe, call.call_id), within=20)
    assert offers(pipe, call.call_id) == [(agent_id, "ANSWER")]
    if handle_time_s < 5:
        await eventually(lambda: ended(pipe, call.call_id), within=20)


async def answered_record(pipe: Pipeline, call_id: str) -> dict[str, str]:
    """The router's record of an answered call, once the router has applied the answer
    (the simulator's ledger knows it first)."""

    async def applied() -> bool:
        return "answered_at" in await pipe.call_state(call_id)

    await eventually(applied, within=20)
    return await pipe.call_state(call_id)


async def reason(pipe: Pipeline, call_id: str) -> str:
    return (await answered_record(pipe, call_id)).get("ans_reason", "")


async def test_a_returning_caller_goes_to_its_last_agent_when_it_becomes_free(pipe: Pipeline) -> None:
    await log_in(pipe, "b2")
    await answered_by(pipe, "q-back", "+15550000001", "b2", 1)
    await answered_by(pipe, "q-back", "+15550000099", "b2", 4)  # b2 busy for a while now
    await log_in(pipe, "b1")
    again = pipe.pbx.place_call("q-back", caller_id="+15550000001", handle_time_s=1)
    await eventually(lambda: answered(pipe, again.call_id), within=30)
    assert offers(pipe, again.call_id) == [("b2", "ANSWER")]  # b1 was free all along
    assert (await reason(pipe, again.call_id)).startswith("last_agent: the caller's last agent b2")


async def test_a_returning_caller_falls_back_to_another_agent_after_the_wait(pipe: Pipeline) -> None:
    await log_in(pipe, "f2")
    await answered_by(pipe, "q-fall", "+15550000002", "f2", 1)
    await answered_by(pipe, "q-fall", "+15550000098", "f2", 60)  # f2 stays busy
    await log_in(pipe, "f1")
    again = pipe.pbx.place_call("q-fall", caller_id="+15550000002", handle_time_s=1)
    await eventually(lambda: answered(pipe, again.call_id), within=30)
    assert offers(pipe, again.call_id) == [("f1", "ANSWER")]
    record = await answered_record(pipe, again.call_id)
    assert float(record["answered_at"]) - float(record["entered_at"]) >= 2.0  # not before the wait
    assert record["ans_reason"].startswith("last_agent_timeout: the caller's last agent f2 was not free")


async def test_a_logged_out_preferred_agent_means_normal_routing_at_once(pipe: Pipeline) -> None:
    await log_in(pipe, "c1")
    call = pipe.pbx.place_call("q-crm", preferred_agent="c2", handle_time_s=1)
    await eventually(lambda: answered(pipe, call.call_id), within=20)
    assert offers(pipe, call.call_id) == [("c1", "ANSWER")]
    record = await answered_record(pipe, call.call_id)
    assert float(record["answered_at"]) - float(record["entered_at"]) < 2.0
    assert record["ans_reason"].startswith("preferred_agent_unavailable: the preferred agent c2 is logged out")
