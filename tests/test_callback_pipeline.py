"""Callbacks that keep the caller's place, over real processes: ingest, a routing worker and
the dispatcher as `acd` child processes, the session's redis-server and broker, and the AMI
simulator's callers who accept a callback and answer it (or not). Queues cb1-cb3 and cb7
call the agent first, cb4-cb6 the caller first."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from load_tests.amisim.callbacks import CallbackPlan
from load_tests.amisim.ledger import CallRecord
from load_tests.embedded import EmbeddedRedis, free_port
from tests.polling import eventually

from .test_api_support import TOKEN, Pipeline, auth, pipeline

pytestmark = pytest.mark.slow

CALLBACK = {"offer_after_s": 1, "attempts": 2, "retry_after_s": 1.5, "agent_first": True}
CALLER_FIRST = CALLBACK | {"agent_first": False}
QUEUES = [
    {"name": f"cb{n}", "requirements": [{"skill": f"s{n}"}], "callback": CALLBACK if n <= 3 else CALLER_FIRST}
    for n in (1, 2, 3, 4, 5, 6, 7)
]
AGENTS = [{"id": f"a{n}", "skills": {f"s{n}": 1}} for n in (1, 2, 3, 4, 5, 6, 7)] + [{"id": "a8", "skills": {"s7": 1}}]
TOPICS = f"callback-{uuid.uuid4().hex[:8]}"
WITHIN = 30.0


@pytest.fixture(scope="module")
async def pipe(
    tmp_path_factory: pytest.TempPathFactory, redis_server: EmbeddedRedis, kafka_bootstrap: str
) -> AsyncIterator[Pipeline]:
    async with pipeline(
        tmp_path_factory.mktemp("callback"),
        redis_server.url,
        kafka_bootstrap,
        TOPICS,
        queues=QUEUES,
        agents=AGENTS,
        site="callback",
        pbx_options={"ring_timeout_s": 1.0},
    ) as pipe:
        # The first leg rings as long as the dialplan's Dial does (the Originate's Timeout).
        pipe.write_config(routing=pipe.config["routing"] | {"callback": {"ring_timeout_s": 1.0}})
        await pipe.start("ingest", "route", "dispatch")
        yield pipe


async def router_state(pipe: Pipeline, call_id: str, *states: str) -> bool:
    return (await pipe.store.call(call_id)).get("state") in states


async def callback_kept(pipe: Pipeline, call_id: str) -> bool:
    call = await pipe.store.call(call_id)
    return bool(call.get("cb_num")) and bool(call.get("cb_hung_up_at")) and call.get("state") == "waiting"


async def logged_in(pipe: Pipeline, agent_id: str) -> bool:
    pipe.pbx.login(agent_id)
    return (await pipe.store.agent(agent_id)).get("state") == "available"


async def true(value: bool) -> bool:
    return value


def record(pipe: Pipeline, call_id: str) -> CallRecord:
    return pipe.pbx.ledger.calls[call_id]


async def test_a_callback_is_made_when_the_callers_place_comes_up(pipe: Pipeline) -> None:
    pbx = pipe.pbx
    before = pbx.place_call("cb1", handle_time_s=0.5)
    caller = pbx.place_call("cb1", handle_time_s=0.5, callback=CallbackPlan(after_s=0.5, answer_delay_s=0.3))
    after = pbx.place_call("cb1", handle_time_s=0.5)
    await eventually(lambda: callback_kept(pipe, caller.call_id), "the callback request is in Redis", within=WITHIN)
    assert record(pipe, caller.call_id).state == "callback_requested"
    await eventually(lambda: logged_in(pipe, "a1"), "a1 logged in", within=WITHIN)
    await eventually(lambda: router_state(pipe, after.call_id, "completed"), "all three served", within=WITHIN)
    attempts = record(pipe, caller.call_id).callback_attempts
    assert len(attempts) == 1 and attempts[0].answered and attempts[0].agent_id == "a1"
    first, last = record(pipe, before.call_id), record(pipe, after.call_id)
    assert first.answered_at is not None and last.answered_at is not None
    # Not earlier than the caller who entered before it, not later than the one after it.
    assert first.answered_at < attempts[0].at < last.answered_at
    await eventually(lambda: router_state(pipe, caller.call_id, "completed"), "the callback ended", within=WITHIN)
    stats = await pipe.store.queue_stats("cb1")
    assert (stats["offered"], stats["answered"], stats.get("abandoned", 0), stats["cb_answered"]) == (3, 3, 0, 1)


async def test_no_callback_is_lost_across_a_routing_worker_restart(pipe: Pipeline) -> None:
    pbx = pipe.pbx
    caller = pbx.place_call("cb2", handle_time_s=0.5, callback=CallbackPlan(after_s=0.5, answer_delay_s=0.3))
    await eventually(lambda: callback_kept(pipe, caller.call_id), "the callback request is in Redis", within=WITHIN)
    await pipe.restart("route")
    await eventually(lambda: logged_in(pipe, "a2"), "a2 logged in", within=WITHIN)
    await eventually(lambda: router_state(pipe, caller.call_id, "completed"), "called back", within=WITHIN)
    attempts = record(pipe, caller.call_id).callback_attempts
    assert [(a.agent_id, a.answered) for a in attempts] == [("a2", True)]


async def test_an_unanswered_callback_is_retried_then_fails(pipe: Pipeline) -> None:
    pbx = pipe.pbx
    plan = CallbackPlan(after_s=0.5, answers=(False,))
    caller = pbx.place_call("cb3", handle_time_s=0.5, callback=plan)
    await eventually(lambda: callback_kept(pipe, caller.call_id), "the callback request is in Redis", within=WITHIN)
    await eventually(lambda: logged_in(pipe, "a3"), "a3 logged in", within=WITHIN)
    await eventually(lambda: router_state(pipe, caller.call_id, "callback_failed"), "callback_failed", within=WITHIN)
    attempts = record(pipe, caller.call_id).callback_attempts
    assert [a.answered for a in attempts] == [False, False]
    assert attempts[1].at - attempts[0].at >= CALLBACK["retry_after_s"]
    assert (await pipe.store.agent("a3")).get("reserved") == "0"
    stats = await pipe.store.queue_stats("cb3")
    assert (stats["cb_unanswered"], stats["cb_failed"], stats.get("abandoned", 0)) == (2, 1, 0)


async def test_caller_first_the_caller_answers_and_is_connected_to_the_reserved_agent(pipe: Pipeline) -> None:
    pbx = pipe.pbx
    caller = pbx.place_call("cb4", handle_time_s=0.5, callback=CallbackPlan(after_s=0.5, answer_delay_s=0.3))
    await eventually(lambda: callback_kept(pipe, caller.call_id), "the callback request is in Redis", within=WITHIN)
    await eventually(lambda: logged_in(pipe, "a4"), "a4 logged in", within=WITHIN)
    await eventually(lambda: router_state(pipe, caller.call_id, "connected", "completed"), "connected", within=WITHIN)
    assert record(pipe, caller.call_id).agent_id == "a4"
    await eventually(lambda: router_state(pipe, caller.call_id, "completed"), "the callback ended", within=WITHIN)
    attempts = record(pipe, caller.call_id).callback_attempts
    assert [(a.agent_id, a.answered, a.connected) for a in attempts] == [("a4", True, True)]
    stats = await pipe.store.queue_stats("cb4")
    assert (stats["answered"], stats["cb_answered"], stats.get("cb_unanswered", 0)) == (1, 1, 0)
    assert (await pipe.store.agent("a4")).get("reserved") == "0"


async def test_caller_first_a_caller_who_does_not_answer_is_called_again(pipe: Pipeline) -> None:
    pbx = pipe.pbx
    plan = CallbackPlan(after_s=0.5, answers=(False, True), answer_delay_s=0.3)
    caller = pbx.place_call("cb5", handle_time_s=0.5, callback=plan)
    await eventually(lambda: callback_kept(pipe, caller.call_id), "the callback request is in Redis", within=WITHIN)
    await eventually(lambda: logged_in(pipe, "a5"), "a5 logged in", within=WITHIN)
    await eventually(lambda: router_state(pipe, caller.call_id, "completed"), "called back, then done", within=WITHIN)
    attempts = record(pipe, caller.call_id).callback_attempts
    assert [(a.agent_id, a.answered, a.connected) for a in attempts] == [("a5", False, False), ("a5", True, True)]
    assert attempts[1].at - attempts[0].at >= CALLBACK["retry_after_s"]
    call = await pipe.store.call(caller.call_id)
    assert call["cb_attempts"] == "1"
    # The dispatcher took "successfully queued" as the answer: it never waited for an
    # OriginateResponse its events-off session does not get (and so held up the retry).
    assert "unconfirmed" not in pipe.log("dispatch")
    stats = await pipe.store.queue_stats("cb5")
    assert (stats["cb_unanswered"], stats["cb_answered"], stats.get("cb_rejected", 0)) == (1, 1, 0)


async def test_the_api_process_lists_the_callbacks_waiting(pipe: Pipeline) -> None:
    port = free_port()
    await pipe.start("api", env={"api": {"ACD_API__TOKEN": TOKEN, "ACD_API__PORT": str(port)}})
    caller = pipe.pbx.place_call("cb6", handle_time_s=0.5, callback=CallbackPlan(after_s=0.3))
    await eventually(lambda: callback_kept(pipe, caller.call_id), "the callback request is in Redis", within=WITHIN)
    async with aiohttp.ClientSession() as session:

        async def listed(query: str, headers: dict[str, str]) -> tuple[int, Any]:
            async with session.get(f"http://127.0.0.1:{port}/api/v1/callbacks{query}", headers=headers) as response:
                return response.status, await response.json(content_type=None)

        status, body = await listed("?queue=cb6", auth())  # nobody in cb6 is logged in: it waits
        assert status == 200, body
        assert [(c["call_id"], c["number"], c["state"], c["attempts"]) for c in body["callbacks"]] == [
            (caller.call_id, caller.record.caller_number, "waiting", 0)
        ]
        status, body = await listed("", auth())
        assert status == 200 and caller.call_id in [c["call_id"] for c in body["callbacks"]]
        assert (await listed("?queue=nosuch", auth()))[0] == 404
        assert (await listed("", {}))[0] == 401


async def test_an_agent_who_lets_the_preview_ring_out_is_paused_in_the_roster_queue_too(pipe: Pipeline) -> None:
    """Agent first, a7's phone never answers the Originate: a rejection, a7 paused for
    ring-no-answer in Redis and in the PBX's roster queue (paused in Redis alone, the roster's
    next event for a7 made it available again: seen on Asterisk 22), and a8 calls back."""
    pbx = pipe.pbx
    pbx.agents["a7"].answer_probability = 0.0
    caller = pbx.place_call("cb7", handle_time_s=0.5, callback=CallbackPlan(after_s=0.5, answer_delay_s=0.3))
    await eventually(lambda: callback_kept(pipe, caller.call_id), "the callback request is in Redis", within=WITHIN)
    await eventually(lambda: logged_in(pipe, "a7"), "a7 logged in", within=WITHIN)
    member = pbx.roster.members[pbx.agents["a7"].interface]
    await eventually(lambda: true(member.paused), "a7 paused in the roster queue", within=WITHIN)
    assert member.reason == "ring-no-answer"
    agent = await pipe.store.agent("a7")
    assert (agent["state"], agent["reason"]) == ("paused", "ring-no-answer")
    await eventually(lambda: logged_in(pipe, "a8"), "a8 logged in", within=WITHIN)
    await eventually(lambda: router_state(pipe, caller.call_id, "completed"), "called back by a8", within=WITHIN)
    attempts = record(pipe, caller.call_id).callback_attempts
    assert attempts[-1].agent_id == "a8" and attempts[-1].answered
    stats = await pipe.store.queue_stats("cb7")
    assert (stats["cb_rejected"], stats["cb_answered"], stats.get("cb_unanswered", 0)) == (1, 1, 0)
