"""A real Asterisk's habits, over real processes: ingest, a routing worker and the
dispatcher as `acd` child processes, the session's redis-server and broker, and the AMI
simulator doing what Asterisk does (issue 11: other queues, a late first hold, phones
listed unavailable, a Redirect of a caller already hanging up)."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from load_tests.embedded import EmbeddedRedis
from tests.polling import eventually

from .test_api_support import Pipeline, pipeline

pytestmark = pytest.mark.slow

QUEUES = [
    {"name": "q-roster", "requirements": [{"skill": "x"}]},
    {"name": "q-hold", "requirements": [{"skill": "y"}]},
    {"name": "q-status", "requirements": [{"skill": "z"}]},
    {"name": "q-linger", "requirements": [{"skill": "w"}]},
    {"name": "q-gap", "requirements": [{"skill": "nobody"}]},
]
AGENTS = [
    {"id": "a1", "skills": {"x": 1}},
    {"id": "a2", "skills": {"z": 1}},
    {"id": "a3", "skills": {"y": 1}},
    {"id": "a4", "skills": {"w": 1}},
]
FIRST_HOLD_DELAY_S = 1.0
HANGUP_LINGER_S = 2.0
TOPICS = f"realities-{uuid.uuid4().hex[:8]}"  # own topics, also on a shared external Kafka


@pytest.fixture(scope="module")
async def pipe(
    tmp_path_factory: pytest.TempPathFactory, redis_server: EmbeddedRedis, kafka_bootstrap: str
) -> AsyncIterator[Pipeline]:
    options = {
        "other_queues": ("sales",),
        "first_hold_delay_s": FIRST_HOLD_DELAY_S,
        "hangup_linger_s": HANGUP_LINGER_S,
    }
    async with pipeline(
        tmp_path_factory.mktemp("realities"),
        redis_server.url,
        kafka_bootstrap,
        TOPICS,
        queues=QUEUES,
        agents=AGENTS,
        site="realities",
        pbx_options=options,
    ) as pipe:
        pbx = pipe.pbx
        pbx.set_registered("a2", False)  # unavailable before the router ever looks: only QueueStatus says so
        for agent in ("a1", "a2", "a3"):
            pbx.login(agent)
        pbx.login("a4", paused=True, reason="briefing")
        for agent in ("a1", "a3"):
            assert pbx.queue_add("sales", f"PJSIP/{agent}", agent, False, "") is None
        await pipe.start("ingest", "route-1", "dispatch")
        for agent in ("a1", "a2", "a3"):
            await eventually(lambda a=agent: agent_in(pipe, a, "available"), within=30)
        yield pipe


async def agent_in(pipe: Pipeline, agent_id: str, state: str) -> bool:
    return (await pipe.store.agent(agent_id)).get("state") == state


def freeze(pipe: Pipeline, name: str, frozen: bool) -> None:
    pipe.children.children[name].process.send_signal(signal.SIGSTOP if frozen else signal.SIGCONT)


def outcomes(pipe: Pipeline, call_id: str) -> list[tuple[str | None, str | None]]:
    return [(offer.agent_id, offer.outcome) for offer in pipe.pbx.ledger.calls[call_id].offers]


async def answered(pipe: Pipeline, call_id: str) -> bool:
    return pipe.pbx.ledger.calls[call_id].answered_at is not None


async def test_other_queues_members_do_not_change_the_acd_roster(pipe: Pipeline) -> None:
    pbx = pipe.pbx
    assert pbx.queue_pause("PJSIP/a1", True, "sales", "lunch") is None
    assert pbx.queue_remove("sales", "PJSIP/a3") is None
    call = pbx.place_call("q-roster", handle_time_s=0.5)
    await eventually(lambda: answered(pipe, call.call_id), within=20)
    assert outcomes(pipe, call.call_id) == [("a1", "ANSWER")]
    assert await agent_in(pipe, "a3", "available")


async def test_a_late_first_hold_does_not_pause_the_offered_agent(pipe: Pipeline) -> None:
    """The offer is out before the caller's first MusicOnHoldStart arrives (the dispatcher is
    held back so that the order is certain); that hold must not read as a failed offer."""
    freeze(pipe, "dispatch", True)
    try:
        call = pipe.pbx.place_call("q-hold", handle_time_s=0.5)
        await eventually(lambda: call_state_is(pipe, call.call_id, "offered"), within=20)
        await eventually(lambda: music_started(pipe, call.call_id), within=10)
        await eventually(lambda: router_caught_up(pipe), within=10)
    finally:
        freeze(pipe, "dispatch", False)
    await eventually(lambda: answered(pipe, call.call_id), within=20)
    assert outcomes(pipe, call.call_id) == [("a3", "ANSWER")]
    assert not pipe.pbx.roster.members["PJSIP/a3"].paused


async def test_a_phone_listed_unavailable_gets_no_call_until_it_is_back(pipe: Pipeline) -> None:
    call = pipe.pbx.place_call("q-status", handle_time_s=0.5)
    await eventually(lambda: call_state_is(pipe, call.call_id, "waiting"), within=20)
    await eventually(lambda: router_caught_up(pipe), within=10)
    assert outcomes(pipe, call.call_id) == []  # before the fix: CHANUNAVAIL, agent auto-paused
    pipe.pbx.set_registered("a2", True)
    await eventually(lambda: answered(pipe, call.call_id), within=20)
    assert outcomes(pipe, call.call_id) == [("a2", "ANSWER")]
    assert not pipe.pbx.roster.members["PJSIP/a2"].paused


async def test_a_caller_already_hanging_up_is_not_offered_again(pipe: Pipeline) -> None:
    """Redirect answered "Redirect failed, channel not up.": the caller is gone, not back in line."""
    pbx = pipe.pbx
    call = pbx.place_call("q-linger", handle_time_s=0.5)
    await eventually(lambda: call_state_is(pipe, call.call_id, "waiting"), within=20)
    before = await redirect_errors(pipe)
    freeze(pipe, "dispatch", True)
    try:
        assert pbx.unpause("a4")
        await eventually(lambda: call_state_is(pipe, call.call_id, "offered"), within=20)
        assert pbx.hangup_call(call.call_id)  # HangupRequest now, Hangup HANGUP_LINGER_S later
    finally:
        freeze(pipe, "dispatch", False)
    await eventually(lambda: call_state_is(pipe, call.call_id, "abandoned"), within=20)
    assert pbx.ledger.calls[call.call_id].ended_at is None  # decided before the Hangup came
    await eventually(lambda: ended(pipe, call.call_id), within=20)
    assert await redirect_errors(pipe) - before == 1
    assert await agent_in(pipe, "a4", "available")
    assert (await pipe.store.agent("a4")).get("reserved") in ("0", None)


async def test_a_call_that_ended_while_ami_was_down_ends_when_it_was_last_known(pipe: Pipeline) -> None:
    """Its Hangup never reached the router: the resync closes it at the moment the link was
    lost (the last moment it was known to exist), not at the later moment of the listing."""
    pbx, simulator = pipe.pbx, pipe.simulator
    call = pbx.place_call("q-gap", handle_time_s=1)
    await eventually(lambda: call_state_is(pipe, call.call_id, "waiting"), within=20)
    await simulator.set_listening(False)
    await simulator.drop_connections()
    lost_at = pipe.clock.now()
    await asyncio.sleep(1.0)  # the gap: the caller gives up while nobody is watching
    assert pbx.hangup_call(call.call_id)
    await eventually(lambda: ended(pipe, call.call_id), within=10)
    await asyncio.sleep(3.0)
    await simulator.set_listening(True)
    await eventually(lambda: call_state_is(pipe, call.call_id, "abandoned"), within=60)
    record = await pipe.call_state(call.call_id)
    truth = pbx.ledger.calls[call.call_id]
    assert truth.ended_at is not None
    # Between the link loss and the real hangup; before the fix: the listing's time, later.
    assert lost_at - 0.5 <= float(record["ended_at"]) <= truth.ended_at, (lost_at, record, truth.ended_at)


async def call_state_is(pipe: Pipeline, call_id: str, state: str) -> bool:
    return (await pipe.call_state(call_id)).get("state") == state


async def music_started(pipe: Pipeline, call_id: str) -> bool:
    call = pipe.pbx.calls.get(call_id)
    return call is not None and call.music_on


async def ended(pipe: Pipeline, call_id: str) -> bool:
    return pipe.pbx.ledger.calls[call_id].ended_at is not None


async def metric(pipe: Pipeline, process: str, name: str, **labels: str) -> float:
    """One metric of one process, summed over the label sets that match ``labels``."""
    port = pipe.children.children[process].http_port
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/metrics") as response:
        text = await response.text()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


async def router_caught_up(pipe: Pipeline) -> bool:
    """Every AMI event ingest received is on the broker, and the routing worker has read it."""
    received = await metric(pipe, "ingest", "acd_ami_events_total")
    produced = await metric(pipe, "ingest", "acd_ami_events_produced_total")
    read = await metric(pipe, "route-1", "acd_events_consumed_total", topic=f"{TOPICS}.ami.events.v1")
    return 0 < received <= produced <= read


async def redirect_errors(pipe: Pipeline) -> float:
    return await metric(pipe, "dispatch", "acd_dispatch_actions_total", action="Redirect", result="error")
