"""Quality sampling through the whole pipeline, as processes: a call answered in a queue that
samples and records is sampled by the routing worker, whose `routing.record` command the
dispatcher executes as MixMonitor on the caller's channel in the AMI simulator; the call's
hash (and so its record) names the recording, and the metrics count it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from load_tests.embedded import EmbeddedRedis
from router.qa import recording_stem
from tests.polling import eventually

from .test_api_support import Pipeline, pipeline

pytestmark = pytest.mark.slow

QUEUES = [
    {"name": "checked", "requirements": [{"skill": "x"}], "qa": {"sample_share": 1.0, "record": True}},
    {"name": "marked", "requirements": [{"skill": "y"}], "qa": {"sample_share": 1.0}},
    {"name": "plain", "requirements": [{"skill": "z"}]},
]
AGENTS = [
    {"id": "a1", "skills": {"x": 1}},
    {"id": "a2", "skills": {"y": 1}},
    {"id": "a3", "skills": {"z": 1}},
]
TOPICS = f"qa-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
async def pipe(
    tmp_path_factory: pytest.TempPathFactory, redis_server: EmbeddedRedis, kafka_bootstrap: str
) -> AsyncIterator[Pipeline]:
    async with pipeline(
        tmp_path_factory.mktemp("qa"),
        redis_server.url,
        kafka_bootstrap,
        TOPICS,
        queues=QUEUES,
        agents=AGENTS,
        site="qa",
    ) as pipe:
        pipe.write_config(timezone="Europe/Berlin", qa={"seed": "e2e"})
        for agent in ("a1", "a2", "a3"):
            pipe.pbx.login(agent)
        await pipe.start("ingest", "route-1", "dispatch")
        for agent in ("a1", "a2", "a3"):
            await eventually(lambda a=agent: agent_in(pipe, a, "available"), within=30)
        yield pipe


async def agent_in(pipe: Pipeline, agent_id: str, state: str) -> bool:
    return (await pipe.store.agent(agent_id)).get("state") == state


async def metric(pipe: Pipeline, process: str, name: str, **labels: str) -> float:
    port = pipe.children.children[process].http_port
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as response,
    ):
        text = await response.text()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


async def test_a_sampled_call_is_recorded_on_the_callers_channel(pipe: Pipeline) -> None:
    call = pipe.pbx.place_call("checked", handle_time_s=3)
    await eventually(lambda: len(pipe.pbx.ledger.recordings) == 1, within=30)
    [started] = pipe.pbx.ledger.recordings
    assert (started.call_id, started.channel, started.agent_id) == (call.call_id, call.channel.name, "a1")
    file = recording_stem(call.call_id) + ".wav"
    assert started.path == f"/var/spool/asterisk/monitor/{file}" and started.options == "b"
    state = await pipe.call_state(call.call_id)
    assert (state["qa_sampled"], state["qa_reason"], state["recording"]) == ("1", "random", file)
    assert await metric(pipe, "dispatch", "acd_dispatch_recordings_total", result="started") == 1
    assert await metric(pipe, "route-1", "acd_qa_sampled_total", queue="checked", type="random") == 1
    assert await metric(pipe, "route-1", "acd_routing_commands_total", type="record") == 1


async def test_a_queue_that_samples_without_recording_sends_no_mixmonitor(pipe: Pipeline) -> None:
    before = len(pipe.pbx.ledger.recordings)
    marked = pipe.pbx.place_call("marked", handle_time_s=1)
    plain = pipe.pbx.place_call("plain", handle_time_s=1)
    for call in (marked, plain):
        await eventually(lambda c=call: pipe.pbx.ledger.calls[c.call_id].ended_at is not None, within=30)
    assert len(pipe.pbx.ledger.recordings) == before
    assert (await pipe.call_state(marked.call_id)).get("qa_sampled") == "1"
    assert (await pipe.call_state(plain.call_id)).get("qa_sampled") is None
