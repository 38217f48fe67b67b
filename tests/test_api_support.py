"""Shared set-up for the API tests (no tests here): the `acd api` service in-process over
real TCP, on the session's redis-server and an AMI simulator, plus ways to put agents and
calls into given states with the routing store's own scripts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from pydantic import SecretStr
from redis.asyncio import Redis

from load_tests.amisim.pbx import Pbx
from load_tests.amisim.perms import AmiUser
from load_tests.amisim.server import AmiSimulator
from load_tests.children import ChildProcesses, ChildSpec
from router.clock import ScaledClock
from router.domain import AgentConfig, QueueConfig, ServiceLevelTarget
from router.schedule import BusinessHours
from router.settings import AcdSettings, AmiSettings, HttpSettings, PostgresSettings, RedisSettings
from router.store import NO_POSITION, NewCall, RedisStateStore
from router.store.admin import AdminStore
from tests.polling import eventually
from workers.api.process import ApiService, run_api
from workers.api.settings import ApiSettings

TOKEN = "full-access-token-for-tests"
READ_TOKEN = "read-only-token-for-tests"
SITE = "apitest"
AMI_SECRET = "api-secret"

QUEUES = (
    QueueConfig(
        name="billing",
        service_level=ServiceLevelTarget(threshold_s=20, target=0.8),
        wrapup_s=30,
        hours=BusinessHours(closed_target="acd-closed,billing,1"),  # open all week (no weekly hours)
    ),
    QueueConfig(name="support", service_level=ServiceLevelTarget(threshold_s=30, target=0.9)),
)
AGENTS = (
    AgentConfig(id="a1", skills={"billing": 3}),
    AgentConfig(id="a2", skills={"billing": 5, "spanish": 2}),
    AgentConfig(id="a3", skills={"support": 4}, extension="2003", interface="PJSIP/2003"),
)


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class ApiHarness:
    service: ApiService
    pbx: Pbx
    simulator: AmiSimulator
    store: RedisStateStore
    admin: AdminStore
    clock: ScaledClock
    http: aiohttp.ClientSession
    stop: asyncio.Event
    task: asyncio.Task[None]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.service.port}"

    async def call(
        self, method: str, path: str, *, token: str | None = TOKEN, body: Any = None, raw: bytes | None = None
    ) -> tuple[int, Any]:
        headers = auth(token) if token else {}
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        if data is not None:
            headers["Content-Type"] = "application/json"
        async with self.http.request(method, self.base + path, headers=headers, data=data) as response:
            text = await response.text()
            try:
                return response.status, json.loads(text)
            except ValueError:
                return response.status, text


def api_settings(**overrides: Any) -> ApiSettings:
    values: dict[str, Any] = {
        "port": 0,
        "token": SecretStr(TOKEN),
        "read_token": SecretStr(READ_TOKEN),
        "push_interval_s": 0.1,
        "heartbeat_s": 1.0,
    }
    return ApiSettings(**(values | overrides))


@contextlib.asynccontextmanager
async def running_api(
    redis_url: str, *, postgres_dsn: str | None = None, acd: dict[str, Any] | None = None, **overrides: Any
) -> AsyncIterator[ApiHarness]:
    """The API on ``redis_url``; with ``postgres_dsn``, its reports and reviews read that database.
    ``overrides``: the api section's fields; ``acd``: other sections' (timezone, qa, postgres)."""
    clock = ScaledClock()
    pbx = Pbx(clock, seed=7)
    for agent in AGENTS:
        pbx.add_agent(agent.id, extension=agent.dial_extension, interface=agent.interface)
    user = AmiUser(AMI_SECRET, frozenset({"system"}), frozenset({"agent"}))
    simulator = AmiSimulator(pbx, users={"acd-api": user})
    await simulator.start()
    settings = AcdSettings(
        site=SITE,
        queues=QUEUES,
        agents=AGENTS,
        ami=AmiSettings(
            port=simulator.port,
            username="acd-api",
            secret=SecretStr(AMI_SECRET),
            reconnect_min_s=0.05,
            reconnect_max_s=0.2,
            action_timeout_s=2,
        ),
        redis=RedisSettings(url=redis_url),
        http=HttpSettings(port=0),
        **({"postgres": PostgresSettings(dsn=postgres_dsn, startup_timeout_s=1)} | (acd or {})),
    )
    redis = Redis.from_url(redis_url, decode_responses=True)
    store, admin = RedisStateStore(redis, SITE), AdminStore(redis, SITE)
    await admin.apply_profiles(AGENTS, clock.now(), force=False)  # what seed_agents does
    stop = asyncio.Event()
    started: asyncio.Future[ApiService] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(run_api(settings, api_settings(**overrides), clock, stop, started=started))
    try:
        service = await asyncio.wait_for(asyncio.shield(started), 10)
        await eventually(lambda: service.gateway.connected, "the API logged in to AMI")
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            yield ApiHarness(service, pbx, simulator, store, admin, clock, http, stop, task)
    finally:
        stop.set()
        if not task.done():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 10)
        await redis.aclose()
        await simulator.stop()
        await pbx.aclose()


# -- states, written with the routing store's own scripts --------------------------------


async def present(
    store: RedisStateStore, agent_id: str, at: float, state: str = "available", reason: str = ""
) -> None:
    await store.agent_presence(agent_id, state, reason, at, NO_POSITION)


async def enqueue(
    store: RedisStateStore, call_id: str, queue: str, at: float, *, priority: int = 0, wrapup: float = 0.0
) -> None:
    threshold = next(q.service_level.threshold_s for q in QUEUES if q.name == queue)
    call = NewCall(
        call_id=call_id,
        queue=queue,
        priority=priority,
        priority_explicit=False,
        requirements=None,
        channel=f"PJSIP/trunk-{call_id}",
        entered_at=at,
        relax_due=None,
        overflow_due=None,
        sl_threshold=threshold,
        wrapup_s=wrapup,
    )
    await store.enqueue(call, NO_POSITION)


async def offer(
    store: RedisStateStore, call_id: str, agent_id: str, at: float, reason: str = "longest idle"
) -> None:
    record = {"call_id": call_id, "agent_id": agent_id, "strategy": "longest-idle", "reason": reason}
    outcome = await store.reserve(call_id, agent_id, f"offer-{call_id}", at, at + 10, json.dumps(record))
    assert outcome.status == "ok", outcome


async def into_wrap_up(
    store: RedisStateStore, agent_id: str, call_id: str, at: float, wrapup: float = 30.0
) -> None:
    """Agent takes a billing call and hangs up: after-call work of ``wrapup`` seconds."""
    await present(store, agent_id, at - 60)
    await enqueue(store, call_id, "billing", at - 50, wrapup=wrapup)
    await offer(store, call_id, agent_id, at - 45)
    assert (await store.agent_answered(call_id, agent_id, at - 40, NO_POSITION)).status == "answered"
    assert (await store.caller_hung_up(call_id, at, NO_POSITION)).status == "completed"


# -- the whole pipeline as real processes ------------------------------------------------


PIPELINE_SECRET = "pipeline-secret"


@dataclass
class Pipeline:
    """`acd` processes (ingest, route, ...) on a real Kafka and Redis, in front of the simulator."""

    config_path: Path
    config: dict[str, Any]
    children: ChildProcesses
    pbx: Pbx
    simulator: AmiSimulator
    clock: ScaledClock
    redis: Redis
    store: RedisStateStore
    admin: AdminStore

    def spec(self, name: str, env: dict[str, str] | None = None) -> ChildSpec:
        command = name.split("-")[0]
        base = {"ACD_AMI__SECRET": PIPELINE_SECRET}
        return ChildSpec(name, ["--config", str(self.config_path)], command, base | (env or {}))

    async def start(self, *names: str, env: dict[str, dict[str, str]] | None = None) -> None:
        for name in names:
            await self.children.start_one(self.spec(name, (env or {}).get(name)))
        await self.children.wait_ready(timeout_s=90)

    async def restart(self, name: str) -> None:
        await self.children.kill(name, signal.SIGTERM)
        assert self.children.children[name].process.returncode == 0
        await self.start(name)

    def write_config(self, **changes: Any) -> None:
        self.config = self.config | changes
        self.config_path.write_text(json.dumps(self.config, indent=2))  # JSON is YAML

    def log(self, name: str) -> str:
        return (self.children.run_dir / f"{name}.log").read_text(errors="replace")

    async def call_state(self, call_id: str) -> dict[str, str]:
        return await self.store.call(call_id)


@contextlib.asynccontextmanager
async def pipeline(
    run_dir: Path,
    redis_url: str,
    kafka_bootstrap: str,
    topic_prefix: str,
    *,
    queues: list[dict[str, Any]],
    agents: list[dict[str, Any]],
    site: str = "pipe",
    pbx_options: dict[str, Any] | None = None,
) -> AsyncIterator[Pipeline]:
    clock = ScaledClock()
    pbx = Pbx(clock, seed=11, **(pbx_options or {}))
    for agent in agents:
        pbx.add_agent(agent["id"], answer_delay_s=0.5)
    everything = frozenset({"all"})
    simulator = AmiSimulator(pbx, users={"acd-router": AmiUser(PIPELINE_SECRET, everything, everything)})
    await simulator.start()
    config = {
        "site": site,
        "queues": queues,
        "agents": agents,
        "ami": {"host": "127.0.0.1", "port": simulator.port, "username": "acd-router"},
        # Its own consumer groups too: the members an earlier test left on this broker would
        # hold up the join until their sessions expire.
        "kafka": {
            "bootstrap_servers": kafka_bootstrap,
            "topic_prefix": topic_prefix,
            "partitions": 2,
            "consumer_group": f"{topic_prefix}-routing",
        },
        "redis": {"url": redis_url},
        "routing": {"timer_interval_s": 0.1},
        "clock": {"time_scale": clock.time_scale, "epoch": clock.epoch},
    }
    config_path = run_dir / "acd.yaml"
    children = ChildProcesses(run_dir)
    redis = Redis.from_url(redis_url, decode_responses=True)
    harness = Pipeline(
        config_path,
        config,
        children,
        pbx,
        simulator,
        clock,
        redis,
        RedisStateStore(redis, site),
        AdminStore(redis, site),
    )
    harness.write_config()
    try:
        yield harness
    finally:
        await children.stop()
        await redis.aclose()
        await simulator.stop()
        await pbx.aclose()
