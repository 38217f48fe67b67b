"""`acd api` as a real process: start-up errors, JSON logs with agent ids, SIGTERM with a
live stream open; `acd check-config`; the JSON log formatter."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from redis.asyncio import Redis

from load_tests.amisim.pbx import Pbx
from load_tests.amisim.perms import AmiUser
from load_tests.amisim.server import AmiSimulator
from load_tests.embedded import EmbeddedRedis, free_port
from router.clock import ScaledClock
from workers.runtime import JsonFormatter

from .test_api_support import TOKEN

CONFIG = """
site: proc
queues:
  - name: billing
    service_level: {threshold_s: 20, target: 0.8}
agents:
  - {id: a1, skills: {billing: 3}}
"""

pytestmark = pytest.mark.redis


async def run_acd(*args: str, env: dict[str, str], timeout_s: float = 30) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "workers.cli",
        *args,
        env=_clean_env() | env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout_s)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


def _clean_env() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if not name.startswith("ACD_")}


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "acd.yaml"
    path.write_text(CONFIG)
    return path


@pytest.fixture
async def simulator() -> AsyncIterator[AmiSimulator]:
    pbx = Pbx(ScaledClock(), seed=2)
    pbx.add_agent("a1")
    sim = AmiSimulator(pbx, users={"acd-api": AmiUser("s3cret", frozenset({"system"}), frozenset({"agent"}))})
    await sim.start()
    yield sim
    await sim.stop()
    await pbx.aclose()


def api_env(redis_server: EmbeddedRedis, simulator: AmiSimulator, api_port: int) -> dict[str, str]:
    return {
        "ACD_API__TOKEN": TOKEN,
        "ACD_API__PORT": str(api_port),
        "ACD_API__PUSH_INTERVAL_S": "0.2",
        "ACD_HTTP__PORT": str(free_port()),
        "ACD_REDIS__URL": redis_server.url,
        "ACD_AMI__PORT": str(simulator.port),
        "ACD_AMI__USERNAME": "acd-api",
        "ACD_AMI__SECRET": "s3cret",
    }


async def wait_ready(port: int, process: asyncio.subprocess.Process, within: float = 30) -> None:
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            assert process.returncode is None, "acd api exited during start-up"
            try:
                async with session.get(f"http://127.0.0.1:{port}/ready") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("acd api not ready in time")


async def test_api_process_logs_json_with_agent_ids_and_stops_cleanly_on_sigterm(
    redis: Redis, redis_server: EmbeddedRedis, simulator: AmiSimulator, config: Path, tmp_path: Path
) -> None:
    port = free_port()
    log_path = tmp_path / "api.log"
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "workers.cli",
            "--json-logs",
            "api",
            "--config",
            str(config),
            env=_clean_env() | api_env(redis_server, simulator, port),
            stdout=log,
            stderr=log,
        )
    try:
        await wait_ready(port, process)
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with aiohttp.ClientSession() as session:
            async with session.post(base + "/api/v1/agents/a1/login", headers=headers) as response:
                assert response.status == 202
            assert simulator.pbx.ledger.agents["a1"].logged_in
            async with session.get(base + "/api/v1/events", headers=headers) as stream:
                assert (await stream.content.readline()).startswith(b"retry:")
                started = time.monotonic()
                process.send_signal(signal.SIGTERM)
                code = await asyncio.wait_for(process.wait(), 10)
        assert code == 0
        assert time.monotonic() - started < 10
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    login = [line for line in lines if line.get("agent_id") == "a1"]
    assert login and login[0]["message"] == "agent a1: login requested" and login[0]["level"] == "info"
    assert TOKEN not in log_path.read_text()


async def test_api_refuses_to_start_without_a_token(redis_server: EmbeddedRedis, config: Path) -> None:
    code, _, stderr = await run_acd("api", "--config", str(config), env={"ACD_REDIS__URL": redis_server.url})
    assert code == 2
    assert "acd api: error:" in stderr and "ACD_API__TOKEN" in stderr and "Bearer" in stderr


async def test_unknown_or_invalid_api_settings_are_named(config: Path) -> None:
    code, _, stderr = await run_acd(
        "api", "--config", str(config), env={"ACD_API__TOKEN": "secret-x", "ACD_API__TOKNE_FILE": "/x"}
    )
    assert code == 2 and "ACD_API__TOKNE_FILE" in stderr and "token_file" in stderr
    code, _, stderr = await run_acd(
        "api", "--config", str(config), env={"ACD_API__TOKEN": "secret-x", "ACD_API__PORT": "eighty"}
    )
    assert code == 2 and "api.port = 'eighty'" in stderr and "secret-x" not in stderr
    code, _, stderr = await run_acd(
        "api",
        "--config",
        str(config),
        env={"ACD_API__TOKEN_FILE": "/nonexistent/token", "ACD_API__READ_TOKEN": "secret-y"},
    )
    assert code == 2 and "cannot read api.token_file from /nonexistent/token" in stderr
    assert "secret-y" not in stderr


async def test_check_config(config: Path, tmp_path: Path) -> None:
    code, stdout, _ = await run_acd("check-config", "--config", str(config), env={})
    assert code == 0 and "OK" in stdout and "1 queues: billing" in stdout and "1 agents" in stdout
    broken = tmp_path / "broken.yaml"
    broken.write_text(CONFIG.replace("target: 0.8", "target: 1.8"))
    code, _, stderr = await run_acd("check-config", "--config", str(broken), env={})
    assert (
        code == 2 and "queues.0.service_level.target = 1.8" in stderr and "less than or equal to 1" in stderr
    )


def test_json_logs_carry_call_and_agent_ids() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("test.jsonlogs")
    log.addHandler(handler)
    log.propagate = False
    log.setLevel(logging.INFO)
    try:
        log.warning(
            "routed %s to %s", "c-1", "a-9", extra={"call_id": "c-1", "agent_id": "a-9", "wait_s": 3.5}
        )
        log.info("plain")
    finally:
        log.removeHandler(handler)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "routed c-1 to a-9" and first["level"] == "warning"
    assert (first["call_id"], first["agent_id"], first["wait_s"]) == ("c-1", "a-9", 3.5)
    assert set(second) == {"ts", "level", "logger", "message", "taskName"} or set(second) == {
        "ts",
        "level",
        "logger",
        "message",
    }
