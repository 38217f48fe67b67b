"""The agent and supervisor API over real connections: HTTP on a real socket, a real
redis-server, and the AMI simulator for the roster actions (QueueAdd, QueuePause,
QueueRemove) that presence changes become."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
import yaml
from redis.asyncio import Redis

from load_tests.embedded import EmbeddedRedis
from router.store import NO_POSITION
from tests.polling import eventually
from workers.api.app import openapi_document

from .test_api_support import (
    READ_TOKEN,
    TOKEN,
    ApiHarness,
    auth,
    enqueue,
    into_wrap_up,
    offer,
    present,
    running_api,
)

pytestmark = pytest.mark.redis


@pytest.fixture
async def api(redis: Redis, redis_server: EmbeddedRedis) -> AsyncIterator[ApiHarness]:
    async with running_api(redis_server.url) as harness:
        yield harness


# -- process endpoints, OpenAPI, authentication ------------------------------------------


async def test_health_ready_and_openapi_need_no_token(api: ApiHarness) -> None:
    assert await api.call("GET", "/health", token=None) == (200, {"status": "ok"})
    status, body = await api.call("GET", "/ready", token=None)
    assert status == 200 and body == {"ready": True, "checks": {"redis": True, "ami": True}}
    status, document = await api.call("GET", "/openapi.json", token=None)
    assert status == 200 and document["openapi"].startswith("3.1") and document == openapi_document()


async def test_every_route_is_described_in_the_openapi_document(api: ApiHarness) -> None:
    served = {
        (route.method.lower(), route.resource.canonical)
        for route in api.service.app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    documented = {
        (method, path)
        for path, item in openapi_document()["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    }
    assert served == documented
    # Every $ref points at something that exists.
    text = json.dumps(openapi_document())
    for ref in {part.split('"')[0] for part in text.split('"$ref": "#/')[1:]}:
        node = openapi_document()
        for key in ref.split("/"):
            node = node[key]


async def test_changes_need_the_full_token_and_reads_need_a_token(api: ApiHarness) -> None:
    status, body = await api.call("POST", "/api/v1/agents/a1/login", token=None)
    assert status == 401 and body["error"]["code"] == "unauthorized" and "Bearer" in body["error"]["message"]
    async with api.http.post(api.base + "/api/v1/agents/a1/login") as response:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    status, body = await api.call("POST", "/api/v1/agents/a1/login", token="not-the-token")
    assert (status, body["error"]["message"]) == (401, "invalid token")
    status, body = await api.call("POST", "/api/v1/agents/a1/login", token=READ_TOKEN)
    assert status == 403 and body["error"]["code"] == "forbidden"
    async with api.http.post(
        api.base + "/api/v1/agents/a1/login", headers={"Authorization": f"Basic {TOKEN}"}
    ) as response:
        assert response.status == 401 and "Bearer <token>" in (await response.json())["error"]["message"]
    assert (await api.call("GET", "/api/v1/agents", token=None))[0] == 401
    assert (await api.call("GET", "/api/v1/agents", token=READ_TOKEN))[0] == 200
    assert (await api.call("GET", "/api/v1/agents", token=TOKEN))[0] == 200


async def test_public_reads_open_the_views_but_not_the_changes(
    redis: Redis, redis_server: EmbeddedRedis
) -> None:
    async with running_api(redis_server.url, public_reads=True) as api:
        assert (await api.call("GET", "/api/v1/queues", token=None))[0] == 200
        assert (await api.call("POST", "/api/v1/agents/a1/logout", token=None))[0] == 401


async def test_unknown_routes_and_methods_answer_json(api: ApiHarness) -> None:
    status, body = await api.call("GET", "/api/v1/nothing")
    assert status == 404 and "openapi.json" in body["error"]["message"]
    status, body = await api.call("DELETE", "/api/v1/agents/a1/login")
    assert status == 405 and "POST" in body["error"]["message"]


async def test_tokens_never_reach_the_log(api: ApiHarness, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await api.call("POST", "/api/v1/agents/a1/login")
    await api.call("POST", "/api/v1/agents/a1/login", token="wrong-token-value")
    await api.call("GET", "/api/v1/agents", token=READ_TOKEN)
    logged = "\n".join(record.getMessage() + repr(record.__dict__) for record in caplog.records)
    assert "agent a1: login requested" in logged
    for secret in (TOKEN, READ_TOKEN, "wrong-token-value"):
        assert secret not in logged


# -- presence through Asterisk's roster queue --------------------------------------------


async def test_login_pause_ready_logout_go_to_asterisk_as_roster_actions(api: ApiHarness) -> None:
    roster = api.pbx.ledger.agents
    status, body = await api.call("POST", "/api/v1/agents/a3/login")
    assert status == 202 and body["sent"] == "QueueAdd" and body["status"] == "accepted"
    assert roster["a3"].logged_in and not roster["a3"].paused
    member = api.pbx.roster.members["PJSIP/2003"]
    # MemberName as the recipe's *51 feature code gives it (the phone's endpoint), so that
    # `queue show` lists API and phone logins alike; the router maps the Interface.
    assert member.name == "2003"

    status, body = await api.call("POST", "/api/v1/agents/a3/login")
    assert status == 409 and body["error"]["code"] == "already_logged_in"

    assert (await api.call("POST", "/api/v1/agents/a3/pause", body={"reason": "lunch"}))[0] == 202
    assert roster["a3"].paused and roster["a3"].paused_reason == "lunch"
    assert (await api.call("POST", "/api/v1/agents/a3/ready"))[0] == 202
    assert not roster["a3"].paused
    assert (await api.call("POST", "/api/v1/agents/a3/logout", body={}))[0] == 202
    assert not roster["a3"].logged_in

    status, body = await api.call("POST", "/api/v1/agents/a3/logout")
    assert status == 409 and body["error"]["code"] == "not_logged_in"
    status, body = await api.call("POST", "/api/v1/agents/a3/pause", body={"reason": "break"})
    assert status == 409 and body["error"]["code"] == "not_logged_in"


async def test_login_paused_with_a_reason(api: ApiHarness) -> None:
    status, _ = await api.call("POST", "/api/v1/agents/a1/login", body={"paused": True, "reason": "training"})
    assert status == 202
    agent = api.pbx.ledger.agents["a1"]
    assert agent.logged_in and agent.paused and agent.paused_reason == "training"


async def test_bad_input_gets_a_400_that_says_what_is_expected(api: ApiHarness) -> None:
    status, body = await api.call("POST", "/api/v1/agents/a1/pause", body={})
    assert status == 400 and body["error"]["code"] == "invalid_body"
    assert (
        body["error"]["details"][0]["field"] == "reason"
        and "required" in body["error"]["details"][0]["problem"]
    )

    status, body = await api.call("POST", "/api/v1/agents/a1/pause", body={"reason": "coffee break!"})
    assert status == 400 and body["error"]["details"][0]["got"] == '"coffee break!"'
    assert "pattern" in body["error"]["message"]

    status, body = await api.call("POST", "/api/v1/agents/a1/login", body={"paused": "maybe"})
    assert status == 400 and "paused" in body["error"]["message"] and "boolean" in body["error"]["message"]

    status, body = await api.call("POST", "/api/v1/agents/a1/login", body={"pasued": True})
    assert status == 400 and body["error"]["details"][0]["field"] == "pasued"
    assert "Extra inputs are not permitted" in body["error"]["message"]

    status, body = await api.call("POST", "/api/v1/agents/a1/login", raw=b"{not json")
    assert status == 400 and body["error"]["code"] == "invalid_json"
    status, body = await api.call("POST", "/api/v1/agents/a1/login", raw=b"[1, 2]")
    assert status == 400 and "expected a JSON object" in body["error"]["message"]

    status, body = await api.call("POST", "/api/v1/agents/nobody/login")
    assert (
        status == 404 and body["error"]["code"] == "unknown_agent" and "agents:" in body["error"]["message"]
    )

    status, body = await api.call("GET", "/api/v1/agents?state=sleeping")
    assert status == 400 and "available" in body["error"]["message"]


async def test_pause_reasons_can_be_restricted(redis: Redis, redis_server: EmbeddedRedis) -> None:
    async with running_api(redis_server.url, pause_reasons="break,lunch") as api:
        await api.call("POST", "/api/v1/agents/a1/login")
        status, body = await api.call("POST", "/api/v1/agents/a1/pause", body={"reason": "nap"})
        assert status == 400 and body["error"]["code"] == "unknown_pause_reason"
        assert "['break', 'lunch']" in body["error"]["message"]
        assert (await api.call("POST", "/api/v1/agents/a1/pause", body={"reason": "lunch"}))[0] == 202


async def test_asterisk_down_is_a_503_and_not_ready(api: ApiHarness) -> None:
    await api.simulator.set_listening(False)
    await api.simulator.drop_connections()
    await eventually(lambda: _false(api.service.gateway.connected))
    status, body = await api.call("POST", "/api/v1/agents/a1/login")
    assert status == 503 and body["error"]["code"] == "asterisk_unavailable"
    status, body = await api.call("GET", "/ready", token=None)
    assert status == 503 and body["checks"] == {"redis": True, "ami": False}
    await api.simulator.set_listening(True)
    await eventually(lambda: _true(api.service.gateway.connected))
    assert (await api.call("POST", "/api/v1/agents/a1/login"))[0] == 202


async def _true(value: bool) -> bool:
    return value


async def _false(value: bool) -> bool:
    return not value


# -- after-call work and skills: the router's own state ----------------------------------


async def test_wrap_up_extend_then_finish(api: ApiHarness) -> None:
    now = api.clock.now()
    await into_wrap_up(api.store, "a1", "c-wrap", now, wrapup=30)
    status, body = await api.call("GET", "/api/v1/agents/a1")
    assert status == 200 and body["state"] == "wrap_up" and body["wrapup_until"] == pytest.approx(now + 30)

    status, body = await api.call("POST", "/api/v1/agents/a1/wrapup/extend", body={"seconds": 45})
    assert status == 200 and body["wrapup_until"] == pytest.approx(now + 75)
    score = await api.store.redis.zscore(api.store.keys.wrapup, "a1")
    assert score == pytest.approx(now + 75)  # the timer now ends it later

    status, body = await api.call("POST", "/api/v1/agents/a1/wrapup/finish")
    assert status == 200 and body["state"] == "available" and 0 <= body["wrapup_s"] < 5
    agent = await api.store.agent("a1")
    assert agent["state"] == "available"
    # Exactly like the timer: back in the availability indexes, off the wrap-up schedule.
    assert await api.store.redis.zscore(api.store.keys.available, "a1") is not None
    assert await api.store.redis.zscore(api.store.keys.skill_index("billing", 3), "a1") is not None
    assert await api.store.redis.zscore(api.store.keys.wrapup, "a1") is None
    assert [c.agent_id for c in await api.store.candidates(())] == ["a1"]
    stats = await api.store.queue_stats("billing")  # counted like a wrap-up the timer ends
    assert stats["wrapups"] == 1 and 0 <= stats["wrapup_sum"] < 5

    status, body = await api.call("POST", "/api/v1/agents/a1/wrapup/finish")
    assert (
        status == 409
        and body["error"]["code"] == "not_in_wrap_up"
        and "available" in body["error"]["message"]
    )
    status, body = await api.call("POST", "/api/v1/agents/a1/wrapup/extend", body={"seconds": 10})
    assert status == 409


async def test_wrap_up_extension_is_bounded_and_positive(api: ApiHarness) -> None:
    await into_wrap_up(api.store, "a1", "c-bound", api.clock.now())
    status, body = await api.call("POST", "/api/v1/agents/a1/wrapup/extend", body={"seconds": 7200})
    assert status == 400 and "3600" in body["error"]["message"]
    assert body["error"]["details"][0] | {"problem": ""} == {"field": "seconds", "problem": "", "got": "7200"}
    # The description states the same limit.
    document = openapi_document()["paths"]["/api/v1/agents/{agent_id}/wrapup/extend"]["post"]
    seconds = document["requestBody"]["content"]["application/json"]["schema"]["properties"]["seconds"]
    assert seconds["maximum"] == api.service.api.max_wrapup_extend_s == 3600
    status, body = await api.call("POST", "/api/v1/agents/a1/wrapup/extend", body={"seconds": -5})
    assert status == 400 and "greater than 0" in body["error"]["message"]


async def test_ready_during_wrap_up_ends_it(api: ApiHarness) -> None:
    await api.call("POST", "/api/v1/agents/a2/login")
    await into_wrap_up(api.store, "a2", "c-ready", api.clock.now())
    status, body = await api.call("POST", "/api/v1/agents/a2/ready")
    assert status == 202 and body["wrapup_finished"] is True
    assert (await api.store.agent("a2"))["state"] == "available"


async def test_skills_replace_and_merge_reindex_the_agent(api: ApiHarness) -> None:
    await present(api.store, "a1", api.clock.now())
    status, body = await api.call(
        "PUT", "/api/v1/agents/a1/skills", body={"skills": {"support": 4, "french": 2}}
    )
    assert status == 200 and body["skills"] == {"support": 4, "french": 2} and body["skills_source"] == "api"
    redis = api.store.redis
    assert await redis.zscore(api.store.keys.skill_index("support", 4), "a1") is not None
    assert await redis.zscore(api.store.keys.skill_index("billing", 1), "a1") is None

    status, body = await api.call(
        "PATCH", "/api/v1/agents/a1/skills", body={"skills": {"french": 0, "billing": 2}}
    )
    assert status == 200 and body["skills"] == {"support": 4, "billing": 2}
    assert await redis.zscore(api.store.keys.skill_index("french", 1), "a1") is None

    for bad in ({"skills": {"billing": 6}}, {"skills": {"bad skill": 1}}, {"skills": []}, {}):
        status, body = await api.call("PUT", "/api/v1/agents/a1/skills", body=bad)
        assert status == 400 and body["error"]["details"], bad
    status, body = await api.call("PATCH", "/api/v1/agents/a1/skills", body={"skills": {}})
    assert status == 400


async def test_a_bad_skill_entry_is_refused_by_name_and_nothing_changes(api: ApiHarness) -> None:
    """JSON types as described: false is not level 0 (which would remove a skill), "5" is not 5."""
    before = (await api.call("GET", "/api/v1/agents/a1"))[1]["skills"]
    for method, skills, key, got in (
        ("PATCH", {"billing": 3, "0": False}, "skills.0", "false"),
        ("PATCH", {"billing": "5"}, "skills.billing", '"5"'),
        ("PUT", {"billing": True}, "skills.billing", "true"),
        ("PATCH", {"billing": 2.5}, "skills.billing", "2.5"),
    ):
        status, body = await api.call(method, "/api/v1/agents/a1/skills", body={"skills": skills})
        assert status == 400 and body["error"]["code"] == "invalid_body", (skills, body)
        message = body["error"]["message"]
        assert f"{key}: Input should be a valid integer (got {got})" in message, message
        assert body["error"]["details"] == [
            {"field": key, "problem": "Input should be a valid integer", "got": got}
        ]
    assert (await api.call("GET", "/api/v1/agents/a1"))[1]["skills"] == before == {"billing": 3}
    status, body = await api.call("PATCH", "/api/v1/agents/a1/skills", body={"skills": {"billing": 4.0}})
    assert status == 200 and body["skills"] == {"billing": 4}  # 4.0 is an integer in JSON Schema


async def test_api_skills_survive_a_restart_but_not_a_reload(api: ApiHarness) -> None:
    """seed_agents at start-up keeps them; an explicit reload (force) puts the file back."""
    await api.call("PUT", "/api/v1/agents/a2/skills", body={"skills": {"support": 1}})
    configured = next(agent for agent in api.service.settings.agents if agent.id == "a2")
    written = await api.admin.apply_profile(configured, api.clock.now(), force=False)
    assert written is False
    assert json.loads((await api.store.agent("a2"))["skills"]) == {"support": 1}
    await api.store.upsert_agent(configured, api.clock.now())  # the engine's own seeding path
    assert json.loads((await api.store.agent("a2"))["skills"]) == {"support": 1}

    assert await api.admin.apply_profile(configured, api.clock.now(), force=True) is True
    agent = await api.store.agent("a2")
    assert json.loads(agent["skills"]) == configured.skills and agent["skills_source"] == "config"


# -- supervisor views --------------------------------------------------------------------


async def test_waiting_calls_with_wait_priority_and_line_order(api: ApiHarness) -> None:
    now = api.clock.now()
    await enqueue(api.store, "c-old", "billing", now - 40)
    await enqueue(api.store, "c-vip", "support", now - 5, priority=5)
    await enqueue(api.store, "c-new", "billing", now - 10)
    status, body = await api.call("GET", "/api/v1/calls")
    assert status == 200
    calls = body["calls"]
    assert [c["call_id"] for c in calls] == ["c-vip", "c-old", "c-new"]
    assert [c["position"] for c in calls] == [1, 2, 3]
    assert calls[0]["priority"] == 5 and calls[0]["queue"] == "support"
    assert calls[1]["wait_s"] == pytest.approx(40, abs=2)

    status, body = await api.call("GET", "/api/v1/calls?queue=billing")
    assert [c["call_id"] for c in body["calls"]] == ["c-old", "c-new"]
    status, body = await api.call("GET", "/api/v1/calls?queue=nope")
    assert status == 404 and body["error"]["code"] == "unknown_queue"
    assert "billing" in body["error"]["message"]
    status, body = await api.call("GET", "/api/v1/calls?queue=")  # an empty filter is no filter
    assert status == 200 and len(body["calls"]) == 3

    status, body = await api.call("GET", "/api/v1/queues/billing")
    assert status == 200 and body["queue"]["waiting"] == 2
    assert body["queue"]["oldest_wait_s"] == pytest.approx(40, abs=2)
    assert [c["call_id"] for c in body["calls"]] == ["c-old", "c-new"]
    assert (await api.call("GET", "/api/v1/queues/nope"))[0] == 404


async def test_queue_service_level_against_its_target(api: ApiHarness) -> None:
    now = api.clock.now()
    await present(api.store, "a1", now - 100)
    await enqueue(api.store, "c1", "billing", now - 90)
    await offer(api.store, "c1", "a1", now - 89)
    await api.store.agent_answered("c1", "a1", now - 85, NO_POSITION)  # within 20 s
    status, body = await api.call("GET", "/api/v1/queues")
    assert status == 200
    billing = next(q for q in body["queues"] if q["name"] == "billing")
    assert billing["service_level"] == 1.0 and billing["service_level_met"] is True
    assert billing["service_level_target"] == 0.8 and billing["answered"] == 1 and billing["asa_s"] == 5.0
    support = next(q for q in body["queues"] if q["name"] == "support")
    assert support["service_level"] is None and support["service_level_met"] is None


async def test_one_calls_routing_decision_and_reason(api: ApiHarness) -> None:
    now = api.clock.now()
    await present(api.store, "a2", now - 30)
    await enqueue(api.store, "c-dec", "billing", now - 20)
    status, body = await api.call("GET", "/api/v1/calls/c-dec/decision")
    assert status == 404 and body["error"]["code"] == "no_decision" and "waiting" in body["error"]["message"]
    await offer(api.store, "c-dec", "a2", now - 19, reason="longest idle of 1 qualified")
    status, body = await api.call("GET", "/api/v1/calls/c-dec/decision")
    assert status == 200 and body["agent_id"] == "a2" and body["reason"] == "longest idle of 1 qualified"
    assert body["state"] == "offered" and body["decision"]["strategy"] == "longest-idle"
    status, body = await api.call("GET", "/api/v1/calls/c-dec")
    assert status == 200 and body["agent_id"] == "a2" and body["decision"]["reason"]
    status, body = await api.call("GET", "/api/v1/calls/never")
    assert status == 404 and body["error"]["code"] == "unknown_call"


async def test_agents_by_state(api: ApiHarness) -> None:
    now = api.clock.now()
    await present(api.store, "a1", now)
    await present(api.store, "a2", now, "paused", "lunch")
    status, body = await api.call("GET", "/api/v1/agents")
    assert status == 200 and [a["agent_id"] for a in body["agents"]] == ["a1", "a2", "a3"]
    assert body["by_state"] == {
        "available": 1,
        "on_call": 0,
        "reserved": 0,
        "wrap_up": 0,
        "paused": 1,
        "logged_out": 1,
    }
    status, body = await api.call("GET", "/api/v1/agents?state=paused")
    assert [(a["agent_id"], a["reason"]) for a in body["agents"]] == [("a2", "lunch")]
    status, body = await api.call("GET", "/api/v1/wallboard", token=READ_TOKEN)
    assert status == 200 and body["agents"]["paused"] == 1 and len(body["queues"]) == 2


# -- live updates ------------------------------------------------------------------------


class SseReader:
    """Reads server-sent events from a real HTTP stream."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response

    async def next(self, kind: str | None = None, within: float = 5.0) -> tuple[str, dict]:  # type: ignore[type-arg]
        async with asyncio.timeout(within):
            while True:
                frame = await self._frame()
                event = next((line[7:] for line in frame if line.startswith("event: ")), "")
                data = "".join(line[6:] for line in frame if line.startswith("data: "))
                if event and (kind is None or event == kind):
                    return event, json.loads(data)

    async def _frame(self) -> list[str]:
        lines = []
        while True:
            raw = await self.response.content.readline()
            if not raw:
                raise EOFError("stream ended")
            line = raw.decode().rstrip("\n")
            if not line:
                return lines
            lines.append(line)


async def test_live_updates_push_changes_to_wallboards_and_agent_desktops(api: ApiHarness) -> None:
    url = api.base + "/api/v1/events"
    async with (
        api.http.get(url, headers=auth(READ_TOKEN), timeout=aiohttp.ClientTimeout(total=30)) as board,
        api.http.get(url + "?agent=a1", headers=auth(), timeout=aiohttp.ClientTimeout(total=30)) as desk,
    ):
        assert board.status == 200 and board.headers["Content-Type"] == "text/event-stream"
        board_events, desk_events = SseReader(board), SseReader(desk)
        _, first = await board_events.next("wallboard")  # the full picture first
        assert first["agents"]["logged_out"] == 3
        _, me = await desk_events.next()
        assert me["agent_id"] == "a1" and me["state"] == "logged_out"

        await present(api.store, "a2", api.clock.now())
        await present(api.store, "a1", api.clock.now(), "paused", "break")
        _, me = await desk_events.next()
        assert (me["agent_id"], me["state"], me["reason"]) == ("a1", "paused", "break")  # not a2's change
        _, board_now = await board_events.next("wallboard")
        while board_now["agents"]["available"] != 1:
            _, board_now = await board_events.next("wallboard")
        assert board_now["agents"]["paused"] == 1

        await enqueue(api.store, "c-live", "support", api.clock.now())
        _, board_now = await board_events.next("wallboard")
        while board_now["queues"][1]["waiting"] != 1:
            _, board_now = await board_events.next("wallboard")
        _, calls = await board_events.next("calls")
        while not calls["calls"]:
            _, calls = await board_events.next("calls")
        assert calls["calls"][0]["call_id"] == "c-live"
    assert await eventually(lambda: _true(api.service.feed.subscriber_count == 0))


async def test_live_update_filters_are_validated(api: ApiHarness) -> None:
    status, body = await api.call("GET", "/api/v1/events?topics=weather")
    assert status == 400 and "wallboard" in body["error"]["message"]
    status, body = await api.call("GET", "/api/v1/events?agent=nobody")
    assert status == 404


# -- shutdown ----------------------------------------------------------------------------


async def test_stop_ends_open_streams_and_returns_promptly(redis: Redis, redis_server: EmbeddedRedis) -> None:
    async with running_api(redis_server.url) as api:
        async with api.http.get(api.base + "/api/v1/events", headers=auth()) as stream:
            await SseReader(stream).next("wallboard")
            started = time.monotonic()
            api.stop.set()
            await asyncio.wait_for(api.task, 8)
            assert api.task.exception() is None
            with pytest.raises((EOFError, aiohttp.ClientPayloadError)):
                async with asyncio.timeout(3):
                    while True:  # what was sent before the stop, then the end of the stream
                        await SseReader(stream).next()
        assert time.monotonic() - started < 8


async def test_cancellation_finishes_promptly_with_a_stream_open(
    redis: Redis, redis_server: EmbeddedRedis
) -> None:
    async with (
        running_api(redis_server.url) as api,
        api.http.get(api.base + "/api/v1/events", headers=auth()) as stream,
    ):
        await SseReader(stream).next("wallboard")
        api.task.cancel()
        done, _ = await asyncio.wait([api.task], timeout=3)
        assert done, "run_api did not finish within 3 s of cancellation"


def test_openapi_document_is_valid_yaml_with_unique_operation_paths() -> None:
    document = yaml.safe_load(json.dumps(openapi_document()))
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for path, item in document["paths"].items():
        assert path.startswith("/"), path
        for method, operation in item.items():
            if method == "parameters":
                continue
            assert operation["summary"] and operation["responses"], (path, method)
