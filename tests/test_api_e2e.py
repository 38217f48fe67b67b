"""The API end to end, as separate processes: API login -> AMI QueueAdd -> ingest -> Kafka
-> routing worker -> Redis -> GET shows the agent available; then a call routed to it,
after-call work ended through the API, and the next call routed to it — with the agent
desktop's live stream watching."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from load_tests.embedded import EmbeddedRedis, free_port
from tests.polling import eventually

from .test_api_support import TOKEN, Pipeline, auth, pipeline

WITHIN = 45.0  # seconds for a step of the whole pipeline (processes on a shared machine)

pytestmark = pytest.mark.slow

BILLING = {"name": "billing", "wrapup_s": 600, "service_level": {"threshold_s": 20, "target": 0.8}}
AGENTS = [{"id": "a1", "skills": {"billing": 3}}, {"id": "a2", "skills": {"billing": 1}}]


@pytest.fixture
async def pipe(
    redis: Redis, redis_server: EmbeddedRedis, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> AsyncIterator[tuple[Pipeline, str]]:
    port = free_port()
    async with pipeline(
        tmp_path, redis_server.url, kafka_bootstrap, topic_prefix, queues=[BILLING], agents=AGENTS
    ) as harness:
        api_env = {"ACD_API__TOKEN": TOKEN, "ACD_API__PORT": str(port), "ACD_API__PUSH_INTERVAL_S": "0.2"}
        await harness.start("ingest", "route", "dispatch", "api", env={"api": api_env})
        yield harness, f"http://127.0.0.1:{port}"


class Client:
    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base

    async def send(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.session.request(method, self.base + path, headers=auth(), json=body) as response:
            return response.status, await response.json()

    async def agent(self, agent_id: str) -> dict[str, Any]:
        status, body = await self.send("GET", f"/api/v1/agents/{agent_id}")
        assert status == 200, body
        return dict(body)

    async def until_agent(
        self, agent_id: str, check: Callable[[dict[str, Any]], bool], what: str
    ) -> dict[str, Any]:
        return await eventually(lambda: self._matching(agent_id, check), what, within=WITHIN)

    async def _matching(
        self, agent_id: str, check: Callable[[dict[str, Any]], bool]
    ) -> dict[str, Any] | None:
        agent = await self.agent(agent_id)
        return agent if check(agent) else None


async def desk_states(session: aiohttp.ClientSession, base: str, seen: list[tuple[str, str]]) -> None:
    """An agent desktop: a1's live stream, recording (state, activity) as it changes."""
    async with session.get(f"{base}/api/v1/events?agent=a1", headers=auth()) as stream:
        event = ""
        async for raw in stream.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "agent":
                data = json.loads(line[6:])
                if not seen or seen[-1] != (data["state"], data["activity"]):
                    seen.append((data["state"], data["activity"]))


async def test_agent_control_through_the_whole_pipeline(pipe: tuple[Pipeline, str]) -> None:
    harness, base = pipe
    seen: list[tuple[str, str]] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        api = Client(session, base)
        desk = asyncio.create_task(desk_states(session, base, seen))
        try:
            # The desktop is connected (it has its first state) before anything happens.
            await eventually(lambda: _true(bool(seen)), "the desktop stream's first state", within=WITHIN)
            await _scenario(harness, api, seen)
        finally:
            desk.cancel()
            await asyncio.gather(desk, return_exceptions=True)
    assert seen[0] == ("logged_out", "logged_out") and ("available", "on_call") in seen


async def _true(value: bool) -> bool:
    return value


async def desk_saw(seen: list[tuple[str, str]], state: str) -> None:
    """Every state the API reports also reaches the agent desktop's live stream."""
    await eventually(
        lambda: _true(bool(seen) and seen[-1][0] == state), f"the desktop stream shows {state}", within=WITHIN
    )


async def _scenario(harness: Pipeline, api: Client, seen: list[tuple[str, str]]) -> None:
    assert (await api.agent("a1"))["state"] == "logged_out"

    # Login: QueueAdd to Asterisk; the state arrives through ingest, Kafka and a router.
    status, body = await api.send("POST", "/api/v1/agents/a1/login")
    assert status == 202 and body["sent"] == "QueueAdd"
    await api.until_agent("a1", lambda a: a["state"] == "available", "a1 available after the API login")
    await desk_saw(seen, "available")
    assert harness.pbx.ledger.agents["a1"].logged_in

    # Pause with a reason code, then ready.
    assert (await api.send("POST", "/api/v1/agents/a1/pause", {"reason": "break"}))[0] == 202
    await api.until_agent(
        "a1", lambda a: (a["state"], a["reason"]) == ("paused", "break"), "a1 paused (break)"
    )
    await desk_saw(seen, "paused")
    assert (await api.send("POST", "/api/v1/agents/a1/ready"))[0] == 202
    await api.until_agent("a1", lambda a: a["state"] == "available", "a1 available again")

    # A call is routed to a1; the decision and its reason are visible; after it, wrap-up.
    first = harness.pbx.place_call("billing", handle_time_s=1.0, patience_s=600)
    await eventually(
        lambda: _answered_by(harness, first.call_id, "a1"), "the first call answered by a1", within=WITHIN
    )
    status, decision = await api.send("GET", f"/api/v1/calls/{first.call_id}/decision")
    assert status == 200 and decision["agent_id"] == "a1" and decision["reason"]
    agent = await api.until_agent("a1", lambda a: a["state"] == "wrap_up", "a1 in after-call work")
    assert agent["wrapup_until"] > harness.clock.now() + 500  # 600 s of wrap-up configured
    await desk_saw(seen, "wrap_up")

    # While a1 is in wrap-up a second call waits; the supervisor sees it in line.
    second = harness.pbx.place_call("billing", handle_time_s=1.0, patience_s=600)
    calls = await eventually(lambda: _waiting_calls(api), "the second call visible as waiting", within=WITHIN)
    assert calls[0]["call_id"] == second.call_id and calls[0]["position"] == 1 and calls[0]["wait_s"] >= 0

    # Ending wrap-up through the API makes a1 available; the routers then give it the call.
    status, body = await api.send("POST", "/api/v1/agents/a1/wrapup/finish")
    assert status == 200 and body["state"] == "available"
    await eventually(
        lambda: _answered_by(harness, second.call_id, "a1"), "the second call answered by a1", within=WITHIN
    )
    assert harness.pbx.ledger.double_assignments == [] and harness.pbx.ledger.unexpected_redirects == []

    await api.until_agent("a1", lambda a: a["state"] == "wrap_up", "a1 in after-call work again")
    assert (await api.send("POST", "/api/v1/agents/a1/logout"))[0] == 202
    await api.until_agent("a1", lambda a: a["state"] == "logged_out", "a1 logged out")
    await desk_saw(seen, "logged_out")


async def _answered_by(harness: Pipeline, call_id: str, agent_id: str) -> bool:
    record = harness.pbx.ledger.calls.get(call_id)
    return record is not None and record.agent_id == agent_id and record.answered_at is not None


async def _waiting_calls(api: Client) -> list[dict[str, Any]]:
    status, body = await api.send("GET", "/api/v1/calls")
    assert status == 200
    return [call for call in body["calls"] if call["state"] == "waiting"]
