"""Start-up failures end with one clear message, over real processes: exit status 2 for what
only a configuration change can cure, 75 (EX_TEMPFAIL) for what a restart may cure."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from load_tests.amisim.pbx import Pbx
from load_tests.amisim.perms import AmiUser
from load_tests.amisim.server import AmiSimulator
from load_tests.embedded import EmbeddedRedis, free_port
from router.clock import ScaledClock

CONFIG = """
queues:
  - name: billing
agents:
  - {id: a1, skills: {billing: 3}}
"""


async def run_acd(*args: str, env: dict[str, str], timeout_s: float = 60) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "workers.cli",
        *args,
        env=os.environ | env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), timeout_s)
    assert process.returncode is not None
    return process.returncode, stderr.decode()


@pytest.fixture
def config(tmp_config: Path) -> Path:
    tmp_config.write_text(CONFIG)
    return tmp_config


@pytest.fixture
async def simulator() -> AsyncIterator[AmiSimulator]:
    pbx = Pbx(ScaledClock(), seed=1)
    sim = AmiSimulator(pbx, users={"acd-router": AmiUser("right", frozenset({"all"}), frozenset({"all"}))})
    await sim.start()
    yield sim
    await sim.stop()
    await pbx.aclose()


async def test_wrong_ami_credentials(config: Path, simulator: AmiSimulator, kafka_bootstrap: str) -> None:
    env = {
        "ACD_AMI__PORT": str(simulator.port),
        "ACD_AMI__SECRET": "wrong",
        "ACD_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
        "ACD_KAFKA__TOPIC_PREFIX": "acd-cli-errors",
    }
    code, stderr = await run_acd("ingest", "--config", str(config), env=env)
    assert code == 2, stderr
    assert "refused AMI login for user 'acd-router'" in stderr and "ACD_AMI__SECRET" in stderr
    assert "wrong" not in stderr  # the secret itself is never printed


async def test_unreachable_broker(config: Path) -> None:
    port = free_port()
    env = {"ACD_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{port}", "ACD_KAFKA__STARTUP_TIMEOUT_S": "2"}
    async with EmbeddedRedis(config.parent / "redis") as redis_server:
        env["ACD_REDIS__URL"] = redis_server.url
        code, stderr = await run_acd("route", "--config", str(config), env=env)
    assert code == 75, stderr  # the broker may be starting: systemd restarts the process
    assert f"cannot reach Kafka at 127.0.0.1:{port}" in stderr and "ACD_KAFKA__BOOTSTRAP_SERVERS" in stderr


async def test_unreachable_redis(config: Path) -> None:
    port = free_port()
    env = {"ACD_REDIS__URL": f"redis://127.0.0.1:{port}/0", "ACD_REDIS__STARTUP_TIMEOUT_S": "1"}
    code, stderr = await run_acd("route", "--config", str(config), env=env)
    assert code == 75, stderr
    assert f"cannot reach Redis at redis://127.0.0.1:{port}/0" in stderr and "ACD_REDIS__URL" in stderr


async def test_unknown_queue_in_config(tmp_config: Path) -> None:
    tmp_config.write_text(CONFIG + "routing: {unknown_queue: biling}\n")
    code, stderr = await run_acd("route", "--config", str(tmp_config), env={})
    assert code == 2, stderr
    assert "routing.unknown_queue = 'biling' is not a configured queue" in stderr and "['billing']" in stderr


async def test_invalid_value_in_config(tmp_config: Path) -> None:
    tmp_config.write_text(CONFIG.replace("billing: 3", "billing: 7"))
    code, stderr = await run_acd("route", "--config", str(tmp_config), env={})
    assert code == 2, stderr
    assert "agents.0.skills.billing = 7" in stderr


def one_error_line(stderr: str, command: str) -> str:
    errors = [line for line in stderr.splitlines() if line.startswith(f"acd {command}: error:")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
    return errors[0]


async def test_record_without_a_dsn(config: Path) -> None:
    code, stderr = await run_acd("record", "--config", str(config), env={})
    assert code == 2, stderr
    line = one_error_line(stderr, "record")
    assert "no PostgreSQL DSN: set ACD_POSTGRES__DSN" in line and "ACD_POSTGRES__DSN_FILE" in line


async def test_record_and_db_upgrade_with_postgres_unreachable(config: Path) -> None:
    port = free_port()
    env = {"ACD_POSTGRES__DSN": f"postgresql://acd@127.0.0.1:{port}/acd", "ACD_POSTGRES__STARTUP_TIMEOUT_S": "1"}
    for args in (["record"], ["db", "upgrade"]):
        code, stderr = await run_acd(*args, "--config", str(config), env=env)
        assert code == 75, stderr  # PostgreSQL may be starting: a supervisor restarts the process
        line = one_error_line(stderr, args[0])
        assert f"cannot reach PostgreSQL at acd@127.0.0.1:{port}/acd" in line and "ACD_POSTGRES__DSN" in line


async def test_record_on_a_database_without_the_schema(config: Path, postgres_dsn: str) -> None:
    code, stderr = await run_acd("record", "--config", str(config), env={"ACD_POSTGRES__DSN": postgres_dsn})
    assert code == 2, stderr
    assert "has no recorder tables: run `acd db upgrade --config FILE` first" in one_error_line(stderr, "record")


async def test_record_with_a_database_that_does_not_exist(config: Path, postgres_dsn: str) -> None:
    dsn = postgres_dsn.rsplit("/", 1)[0] + "/nosuchdb"
    code, stderr = await run_acd("record", "--config", str(config), env={"ACD_POSTGRES__DSN": dsn})
    assert code == 2, stderr
    line = one_error_line(stderr, "record")
    assert 'database "nosuchdb" does not exist: create it (createdb)' in line
