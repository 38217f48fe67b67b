"""Every long-running process stops promptly: on its stop event (SIGTERM) by draining, and
on cancellation, with I/O in flight (AMI traffic, Kafka fetches, Redis calls)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest
from pydantic import SecretStr

from load_tests.amisim.pbx import Pbx
from load_tests.amisim.perms import AmiUser
from load_tests.amisim.server import AmiSimulator
from load_tests.embedded import EmbeddedRedis
from router.clock import ScaledClock
from router.domain import AgentConfig, QueueConfig
from router.settings import AcdSettings, AmiSettings, KafkaSettings, RedisSettings
from tests.polling import eventually
from workers.collector import run_collector
from workers.dispatcher import run_dispatcher
from workers.ingest import run_ingest
from workers.routing import run_routing

pytestmark = pytest.mark.slow

Main = Callable[[AcdSettings, ScaledClock, asyncio.Event], Coroutine[Any, Any, None]]
MAINS: dict[str, Main] = {
    "ingest": run_ingest,
    "route": run_routing,
    "dispatch": run_dispatcher,
    "collect": run_collector,
}


@pytest.fixture
async def stack(
    tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str, topic_prefix: str
) -> AsyncIterator[tuple[AcdSettings, ScaledClock, Pbx]]:
    clock = ScaledClock(time_scale=20.0)
    pbx = Pbx(clock, seed=3)
    sim = AmiSimulator(pbx, users={"acd": AmiUser("s", frozenset({"all"}), frozenset({"all"}))})
    await sim.start()
    async with EmbeddedRedis(tmp_path_factory.mktemp("lifecycle"), unix_socket_only=True) as redis_server:
        settings = AcdSettings(
            site="life",
            queues=(QueueConfig(name="q"),),
            agents=(AgentConfig(id="a1"), AgentConfig(id="a2")),
            ami=AmiSettings(port=sim.port, username="acd", secret=SecretStr("s")),
            kafka=KafkaSettings(
                bootstrap_servers=kafka_bootstrap,
                topic_prefix=topic_prefix,
                partitions=2,
                # Its own groups: a member left by an earlier test on this broker would hold
                # up the join until its session expires (6 s).
                consumer_group=f"{topic_prefix}-routing",
            ),
            redis=RedisSettings(url=redis_server.url),
        )
        yield settings, clock, pbx
    await sim.stop()
    await pbx.aclose()


async def traffic(pbx: Pbx, stop: asyncio.Event) -> None:
    """Calls keep arriving so that every process has I/O in flight when it is stopped."""
    for agent_id in ("a1", "a2"):
        pbx.add_agent(agent_id)
        pbx.login(agent_id)
    while not stop.is_set():
        pbx.place_call("q", handle_time_s=30, patience_s=20)
        await asyncio.sleep(0.05)


async def start_all(
    stack: tuple[AcdSettings, ScaledClock, Pbx],
) -> tuple[dict[str, asyncio.Task[None]], asyncio.Event]:
    settings, clock, pbx = stack
    stop = asyncio.Event()
    tasks = {
        name: asyncio.create_task(main(settings, clock, stop), name=name) for name, main in MAINS.items()
    }
    tasks["traffic"] = asyncio.create_task(traffic(pbx, stop))
    try:
        # Consumer groups joined and calls flowing end to end: an offer reached the PBX (a
        # Redirect), so it went ingest -> broker -> routing -> dispatcher -> AMI. (Not "a call
        # answered": this traffic overloads two agents, and the longest-waiting caller, offered
        # first, may give up while the phone rings.)
        await eventually(
            lambda: any(c.offers for c in pbx.ledger.calls.values()), "an offer on the PBX", within=30
        )
    except BaseException:
        for task in tasks.values():
            task.cancel()
        await asyncio.wait(tasks.values(), timeout=10)
        raise
    for name, task in tasks.items():
        assert not task.done(), f"{name} ended early: {task.exception() if task.done() else ''}"
    return tasks, stop


async def test_stop_event_drains_and_returns_promptly(stack: tuple[AcdSettings, ScaledClock, Pbx]) -> None:
    tasks, stop = await start_all(stack)
    started = time.monotonic()
    stop.set()
    done, pending = await asyncio.wait(tasks.values(), timeout=8)
    elapsed = time.monotonic() - started
    assert not pending, f"still running after {elapsed:.1f}s: {[t.get_name() for t in pending]}"
    for task in done:
        assert task.exception() is None, (task.get_name(), task.exception())


async def test_cancellation_finishes_promptly_with_io_in_flight(
    stack: tuple[AcdSettings, ScaledClock, Pbx],
) -> None:
    tasks, stop = await start_all(stack)
    for task in tasks.values():
        task.cancel()
    done, pending = await asyncio.wait(tasks.values(), timeout=3)
    stop.set()
    assert not pending, [t.get_name() for t in pending]
    assert all(task.cancelled() or task.exception() is None for task in done)
