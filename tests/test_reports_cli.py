"""`acd report`: every kind of bad input is one line on stderr naming the value and what is
expected, exit 2, before PostgreSQL is asked anything; PostgreSQL unreachable is exit 75
(try again later), a database without the schema exit 2; a real report in each format."""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from load_tests.embedded import free_port
from tests.reports_support import write_config, write_records
from tests.test_cli_errors import one_error_line, run_acd
from workers import cli


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path / "acd.yaml")


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """cli.main configures logging onto the captured stderr, which closes after the test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def report(config: Path, *args: str) -> list[str]:
    return ["report", "--config", str(config), *args]


RANGE = ("--from", "2026-10-25T00:00", "--to", "2026-10-25T05:00")

BAD_INPUT = [
    (
        ["--from", "2026-10-26", "--to", "2026-10-25"],
        "--from '2026-10-26' is not before --to '2026-10-25': expected --from earlier than --to",
    ),
    (["--from", "2026-10-25T08:00", "--to", "2026-10-25T08:00"], "is not before --to '2026-10-25T08:00'"),
    (["--from", "yesterday", "--to", "2026-10-25"], "--from 'yesterday': expected ISO 8601: YYYY-MM-DD"),
    (["--from", "2026-10-25", "--to", "2026-02-30"], "--to '2026-02-30': not a valid date or time"),
    (["--from", "2026-10-25", "--to", "2026-10-26T25:00"], "--to '2026-10-26T25:00': not a valid date or time"),
    (
        [*RANGE, "--queue", "biling"],
        "--queue 'biling' is not a configured queue; configured: ['billing', 'sales', 'support']",
    ),
    ([*RANGE, "--by", "agent", "--agent", "a1,zz"], "--agent 'zz' is not a configured agent; configured: ['a1', 'a2'"),
    ([*RANGE, "--interval", "10m"], "--interval '10m': expected one of 15m, 30m, 1h, 1d"),
    ([*RANGE, "--timezone", "Mars/Olympus"], "--timezone 'Mars/Olympus': not a known time zone; expected an IANA name"),
    ([*RANGE, "--by", "team"], "--by 'team': expected one of queue, agent, site"),
    ([*RANGE, "--format", "xml"], "--format 'xml': expected one of table, csv, json"),
    ([*RANGE, "--agent", "a1"], "--agent filters agent reports: expected --by agent with it"),
    ([*RANGE, "--by", "agent", "--queue", "billing"], "--queue filters queue and site reports"),
    (["--to", "2026-10-25"], "--from is required: a time in ISO 8601"),
    (["--from", "1971-01-01", "--to", "2026-01-01"], "holds more than 10000 15m intervals: expected a shorter range"),
    (["--from", "2026-03-29T02:30", "--to", "2026-03-30"], "Europe/Berlin skips this wall time (clocks go forward)"),
    (["--from", "1969-12-31", "--to", "2026-01-01"], "--from '1969-12-31': expected a time from 1970-01-01T00:00Z"),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUT, ids=[message[:40] for _, message in BAD_INPUT])
def test_bad_input_is_one_line_and_exit_2(
    config: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A DSN that nothing answers: the input is checked before any connection is tried.
    monkeypatch.setenv("ACD_POSTGRES__DSN", f"postgresql://acd@127.0.0.1:{free_port()}/acd")
    assert cli.main(report(config, *args)) == cli.EXIT_CONFIG
    line = one_error_line(capsys.readouterr().err, "report")
    assert message in line, line


def test_without_a_dsn_it_says_how_to_give_one(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(report(config, *RANGE)) == cli.EXIT_CONFIG
    assert "no PostgreSQL DSN: set ACD_POSTGRES__DSN" in one_error_line(capsys.readouterr().err, "report")


async def test_postgres_unreachable_is_one_line_and_exit_75(config: Path) -> None:
    port = free_port()
    env = {"ACD_POSTGRES__DSN": f"postgresql://acd@127.0.0.1:{port}/acd", "ACD_POSTGRES__STARTUP_TIMEOUT_S": "1"}
    code, stderr = await run_acd(*report(config, *RANGE), env=env)
    assert code == cli.EXIT_RETRY, stderr
    line = one_error_line(stderr, "report")
    assert f"cannot reach PostgreSQL at acd@127.0.0.1:{port}/acd" in line and "ACD_POSTGRES__DSN" in line


async def test_a_database_without_the_schema_says_to_upgrade_it(config: Path, postgres_dsn: str) -> None:
    code, stderr = await run_acd(*report(config, *RANGE), env={"ACD_POSTGRES__DSN": postgres_dsn})
    assert code == cli.EXIT_CONFIG, stderr
    assert "has no recorder tables: run `acd db upgrade --config FILE` first" in one_error_line(stderr, "report")


async def test_a_csv_report_from_a_real_process(config: Path, postgres_dsn: str) -> None:
    await write_records(postgres_dsn)
    process = await _run(config, postgres_dsn, *RANGE, "--interval", "1h", "--by", "site", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(process)))
    assert [row["offered"] for row in rows] == ["0", "0", "7", "4", "1", "0"]
    assert rows[2]["interval_start"] == "2026-10-25T02:00:00+02:00" and rows[2]["service_level"] == "0.4"


async def _run(config: Path, dsn: str, *args: str) -> str:
    import asyncio
    import os
    import sys

    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "workers.cli",
        *report(config, *args),
        env=os.environ | {"ACD_POSTGRES__DSN": dsn},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    return out.decode()


def test_json_and_table_in_process(
    config: Path, records_dsn: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACD_POSTGRES__DSN", records_dsn)
    args = ("--interval", "1h", "--by", "agent", "--agent", "a2", "--format", "json")
    assert cli.main(report(config, *RANGE, *args)) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["agents"] == ["a2"] and document["timezone_source"] == "site"
    assert [row["calls_handled"] for row in document["rows"]] == [0, 2, 0]
    assert cli.main(report(config, *RANGE, "--timezone", "UTC", "--queue", "support")) == 0
    table = capsys.readouterr().out
    assert "times in UTC: as requested" in table and "support: answered_within_over_answered" in table
    assert "2026-10-25 00:00+00:00  support" in table


@pytest.fixture
async def records_dsn(postgres_dsn: str) -> str:
    await write_records(postgres_dsn)
    return postgres_dsn
