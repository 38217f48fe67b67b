"""The one process lifecycle, over real processes and in-process: readiness follows the real
state of the links, SIGHUP reloads every process the same way, a port in use is one line
and exit status 2, and cancellation ends promptly with I/O in flight."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from load_tests.embedded import EmbeddedRedis, free_port
from router.clock import ScaledClock
from router.settings import AcdSettings, HttpSettings, RedisSettings
from tests.polling import eventually
from workers.lifecycle import Component, ProcessContext, ProcessLifecycle, ProcessState

SUPPORT = {"name": "support"}
SALES = {"name": "sales", "service_level": {"threshold_s": 30, "target": 0.9}}


def write_config(path: Path, redis_url: str, kafka: str, prefix: str, queues: list[dict[str, Any]]) -> None:
    config = {
        "site": "lifecycle",
        "queues": queues,
        "agents": [{"id": "a1", "skills": {"support": 2}}],
        "kafka": {
            "bootstrap_servers": kafka,
            "topic_prefix": prefix,
            "partitions": 2,
            "consumer_group": f"{prefix}-routing",
        },
        "redis": {"url": redis_url, "socket_timeout_s": 1},
    }
    path.write_text(json.dumps(config))  # JSON is YAML


def clean_env() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if not name.startswith("ACD_")}


@contextlib.asynccontextmanager
async def acd(command: str, config: Path, log: Path, **env: str) -> AsyncIterator[asyncio.subprocess.Process]:
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "workers.cli",
            command,
            "--config",
            str(config),
            env=clean_env() | env,
            stdout=out,
            stderr=out,
        )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                process.kill()
                await process.wait()


async def get(port: int, path: str) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as session,
        session.get(f"http://127.0.0.1:{port}{path}") as response,
    ):
        text = await response.text()
        return response.status, (json.loads(text) if path != "/metrics" else text)


# What a probe of a process's HTTP port meets while the process is not listening yet.
NOT_LISTENING = (aiohttp.ClientError, OSError, TimeoutError)


def ready_is(port: int, wanted: bool) -> Callable[[], Awaitable[Any]]:
    async def probe() -> Any:
        status, body = await get(port, "/ready")
        return body if (status == 200) == wanted and body["ready"] == wanted else None

    return probe


@pytest.mark.slow
async def test_route_and_collect_are_ready_only_while_redis_answers(
    tmp_path: Path, kafka_bootstrap: str, topic_prefix: str
) -> None:
    async with EmbeddedRedis(tmp_path / "redis") as redis_server:  # TCP: it comes back on its port
        config = tmp_path / "acd.yaml"
        write_config(config, redis_server.url, kafka_bootstrap, topic_prefix, [SUPPORT])
        ports = {"route": free_port(), "collect": free_port()}
        async with (
            acd("route", config, tmp_path / "route.log", ACD_HTTP__PORT=str(ports["route"])) as route,
            acd("collect", config, tmp_path / "collect.log", ACD_HTTP__PORT=str(ports["collect"])) as collect,
        ):
            for name, port in ports.items():
                body = await eventually(
                    ready_is(port, True), f"{name} ready", within=60, ignoring=NOT_LISTENING
                )
                assert body["links"]["redis"] is True and body["state"] == "running"
            assert (await get(ports["route"], "/ready"))[1]["links"]["kafka"] is True

            await redis_server.stop()
            for name, port in ports.items():
                body = await eventually(
                    ready_is(port, False), f"{name} not ready with Redis stopped", within=30
                )
                assert body["links"]["redis"] is False, name
                assert (await get(port, "/health")) == (200, {"status": "ok", "state": "running"})

            await redis_server.start()
            for name, port in ports.items():
                await eventually(ready_is(port, True), f"{name} ready again after Redis came back", within=30)
            assert route.returncode is None and collect.returncode is None


@pytest.mark.slow
async def test_sighup_gives_the_collector_a_new_queue(
    redis_server: EmbeddedRedis, tmp_path: Path, kafka_bootstrap: str, topic_prefix: str
) -> None:
    config = tmp_path / "acd.yaml"
    write_config(config, redis_server.url, kafka_bootstrap, topic_prefix, [SUPPORT])
    port, log = free_port(), tmp_path / "collect.log"

    async def exports_sales() -> bool:
        _, text = await get(port, "/metrics")
        return 'acd_queue_service_level_target_ratio{queue="sales"} 0.9' in text

    async with acd("collect", config, log, ACD_HTTP__PORT=str(port)) as collect:
        await eventually(ready_is(port, True), "collect ready", within=30, ignoring=NOT_LISTENING)
        assert not await exports_sales()
        write_config(config, redis_server.url, kafka_bootstrap, topic_prefix, [SUPPORT, SALES])
        collect.send_signal(signal.SIGHUP)
        await eventually(exports_sales, lambda: f"a gauge for the new queue; log:\n{log.read_text()[-2000:]}")
        assert "configuration reloaded: queues ['sales', 'support']" in log.read_text()

        config.write_text("queues: [unclosed\n")  # an invalid file changes nothing
        collect.send_signal(signal.SIGHUP)
        await eventually(lambda: _logged(log, "configuration reload refused, nothing changed"), "a refusal")
        assert await exports_sales() and collect.returncode is None


async def _logged(log: Path, text: str) -> bool:
    return text in log.read_text()


@pytest.mark.parametrize(("command", "taken"), [("collect", "HTTP"), ("api", "API")])
async def test_a_port_in_use_is_one_line_and_exit_status_2(
    redis_server: EmbeddedRedis, tmp_path: Path, command: str, taken: str
) -> None:
    config = tmp_path / "acd.yaml"
    config.write_text(json.dumps({"queues": [SUPPORT], "redis": {"url": redis_server.url}}))
    with socket.create_server(("127.0.0.1", 0)) as holder:
        port = holder.getsockname()[1]
        env = {
            "ACD_API__TOKEN": "t" * 24,
            "ACD_HTTP__PORT": str(free_port()),
            "ACD_API__PORT": str(free_port()),
        }
        env[f"ACD_{taken}__PORT"] = str(port)
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "workers.cli",
            command,
            "--config",
            str(config),
            env=clean_env() | env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _, stderr = await asyncio.wait_for(process.communicate(), 60)
    text = stderr.decode()
    assert process.returncode == 2, text
    assert "Traceback" not in text
    errors = [line for line in text.splitlines() if line.startswith(f"acd {command}: error:")]
    assert len(errors) == 1, text
    assert f"127.0.0.1:{port}" in errors[0] and f"ACD_{taken}__PORT" in errors[0]


# -- in-process: states, drain, cancellation ---------------------------------------------


def lifecycle_settings(redis_url: str) -> AcdSettings:
    return AcdSettings(redis=RedisSettings(url=redis_url), http=HttpSettings(port=0))


async def test_states_in_health_and_a_drain_within_the_grace(redis_server: EmbeddedRedis) -> None:
    lifecycle = ProcessLifecycle("test", lifecycle_settings(redis_server.url), ScaledClock(), grace_s=5)
    drained = asyncio.Event()

    async def open_component(ctx: ProcessContext) -> Component:
        redis = await ctx.redis()

        async def work(stop: asyncio.Event) -> None:
            await stop.wait()
            await asyncio.sleep(0.5)  # in-flight work finishing while draining
            await redis.set("lifecycle:drained", "1")
            drained.set()

        return Component(draining=[work])

    stop = asyncio.Event()
    task = asyncio.create_task(lifecycle.run(open_component, stop))
    await eventually(lambda: _state_is(lifecycle, ProcessState.RUNNING), "running", within=10)
    port = lifecycle.endpoints.port
    assert await get(port, "/health") == (200, {"status": "ok", "state": "running"})
    assert await get(port, "/ready") == (200, {"ready": True, "state": "running", "links": {"redis": True}})
    stop.set()
    await eventually(lambda: _state_is(lifecycle, ProcessState.DRAINING), "draining", within=2)
    status, body = await get(port, "/ready")
    assert status == 503 and body["state"] == "draining"
    await asyncio.wait_for(task, 5)
    assert drained.is_set() and lifecycle.state is ProcessState.STOPPED


async def _state_is(lifecycle: ProcessLifecycle, state: ProcessState) -> bool:
    return lifecycle.state is state


async def test_cancellation_finishes_promptly_with_redis_io_in_flight(redis_server: EmbeddedRedis) -> None:
    lifecycle = ProcessLifecycle("test", lifecycle_settings(redis_server.url), ScaledClock())
    blocked = asyncio.Event()

    async def open_component(ctx: ProcessContext) -> Component:
        redis = await ctx.redis()

        async def work(stop: asyncio.Event) -> None:
            blocked.set()
            await redis.blpop(["lifecycle:never"], timeout=0)  # a read that never returns

        async def other(stop: asyncio.Event) -> None:
            await redis.blpop(["lifecycle:nor"], timeout=0)

        return Component(draining=[work], background=[other])

    task = asyncio.create_task(lifecycle.run(open_component, asyncio.Event()))
    await asyncio.wait_for(blocked.wait(), 10)
    await asyncio.sleep(0.2)
    started = time.monotonic()
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=3)
    assert done, "the lifecycle did not finish within 3 s of cancellation"
    assert task.cancelled() and time.monotonic() - started < 3
    assert lifecycle.state is ProcessState.STOPPED
