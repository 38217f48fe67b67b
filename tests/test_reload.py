"""Configuration reload without restart, on real `acd route` (and `acd ingest`) processes:
SIGHUP re-reads the file, validates it, and applies its queues and agents; an invalid file
is logged with the validation message and changes nothing. Skills edited through the API
survive a restart of the routing worker, and give way to the file on a reload."""

from __future__ import annotations

import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from load_tests.embedded import EmbeddedRedis
from tests.polling import eventually

from .test_api_support import Pipeline, pipeline

pytestmark = pytest.mark.slow

SUPPORT = {"name": "support", "service_level": {"threshold_s": 30, "target": 0.8}}
SALES = {"name": "sales", "requirements": [{"skill": "sales", "min_level": 2}], "priority": 2}
A1 = {"id": "a1", "skills": {"support": 2}}


@pytest.fixture
async def pipe(
    redis: Redis, redis_server: EmbeddedRedis, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> AsyncIterator[Pipeline]:
    async with pipeline(
        tmp_path, redis_server.url, kafka_bootstrap, topic_prefix, queues=[SUPPORT], agents=[A1]
    ) as harness:
        await harness.start("ingest", "route")
        yield harness


async def queued(pipe: Pipeline, queue_named: str) -> dict[str, str]:
    """Place a call naming ``queue_named``; the call as the router stored it."""
    call = pipe.pbx.place_call(queue_named, handle_time_s=5, patience_s=600)

    async def stored() -> dict[str, str]:
        return await pipe.call_state(call.call_id)

    found: dict[str, str] = await eventually(stored, f"call {call.call_id} in Redis", within=45)
    return found


async def queued_in(pipe: Pipeline, queue_named: str) -> str:
    """Place a call naming ``queue_named``; the queue the router put it in."""
    return (await queued(pipe, queue_named))["queue"]


async def skills(pipe: Pipeline, agent_id: str) -> tuple[dict[str, int], str]:
    agent = await pipe.store.agent(agent_id)
    return json.loads(agent.get("skills") or "{}"), agent.get("skills_source", "")


async def sighup_and_wait_for(pipe: Pipeline, text: str, count: int = 1) -> None:
    pipe.children.children["route"].process.send_signal(signal.SIGHUP)

    async def logged() -> bool:
        return pipe.log("route").count(text) >= count

    await eventually(
        logged, lambda: f"route logging {text!r}; its log:\n{pipe.log('route')[-3000:]}", within=20
    )


async def test_sighup_applies_a_changed_file_and_refuses_an_invalid_one(pipe: Pipeline) -> None:
    # Before: "sales" is not a queue, so its calls go to the first configured queue.
    assert await queued_in(pipe, "sales") == "support"
    assert "names queue 'sales', which is not configured" in pipe.log("route")

    # An operator changes a1's skills through the API; a restart of the worker keeps them.
    await pipe.admin.set_skills("a1", {"spanish": 5}, pipe.clock.now())
    await pipe.restart("route")
    assert await skills(pipe, "a1") == ({"spanish": 5}, "api")

    # The file gains the sales queue and new skills for a1; SIGHUP applies both.
    # (A Kafka setting changes too: that one needs a restart, and the log says so.)
    pipe.write_config(
        queues=[SUPPORT, SALES],
        agents=[{"id": "a1", "skills": {"support": 4, "sales": 3}}],
        kafka=pipe.config["kafka"] | {"partitions": 4},
    )
    await sighup_and_wait_for(pipe, "configuration reloaded: queues ['sales', 'support']")
    assert "changes to ['kafka'] take effect only after a restart" in pipe.log("route")
    assert await skills(pipe, "a1") == ({"support": 4, "sales": 3}, "config")
    call = await queued(pipe, "sales")
    assert (call["queue"], call["priority"]) == ("sales", "2")  # the new queue, its default priority

    # An invalid file: logged with what is wrong, and nothing changes.
    pipe.write_config(
        queues=[SUPPORT, SALES | {"strategy": "fastest"}],
        agents=[{"id": "a1", "skills": {"support": 1}}],
    )
    await sighup_and_wait_for(pipe, "configuration reload refused, nothing changed")
    log = pipe.log("route")
    assert "queues.1.strategy = 'fastest'" in log and "longest-idle" in log
    assert await skills(pipe, "a1") == ({"support": 4, "sales": 3}, "config")
    assert await queued_in(pipe, "sales") == "sales"
    assert pipe.children.children["route"].process.returncode is None

    # Not YAML at all: same.
    pipe.config_path.write_text("queues: [unclosed\n")
    await sighup_and_wait_for(pipe, "configuration reload refused, nothing changed", count=2)
    assert "is not valid YAML" in pipe.log("route")
    assert await queued_in(pipe, "sales") == "sales"
