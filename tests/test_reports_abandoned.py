"""Abandoned callers to call back, over a real PostgreSQL: which calls are listed (outcome
abandoned, a caller number, the range, the site), whether the caller got through later,
newest first and paged without a gap or a repeat; `acd report --abandoned` in every format
and its bad input; GET /api/v1/reports/abandoned (JSON, CSV, tokens, bad input)."""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from load_tests.embedded import EmbeddedRedis, free_port
from router.postgres import open_postgres
from router.settings import PostgresSettings
from tests.reports_support import DEFAULT, call, write_config
from tests.test_cli_errors import one_error_line
from workers import cli
from workers.records.migrate import upgrade
from workers.records.parse import parse_call_record
from workers.records.store import PostgresRecordStore
from workers.reports.queries import ABANDONED_COLUMNS
from workers.reports.request import (
    AbandonedRequest,
    RawAbandoned,
    ReportInputError,
    ReportScope,
    abandoned_request,
    cli_flag,
)
from workers.reports.service import ReportService

from .test_api_support import READ_TOKEN, SITE, ApiHarness, auth, running_api

RANGE = ("--from", "2026-10-25T06:00Z", "--to", "2026-10-25T12:00Z")
QUERY = "from=2026-10-25T06:00Z&to=2026-10-25T12:00Z"
# Newest first; ab6 and ab9 entered at the same second: call_id breaks the tie, descending.
NEWEST_FIRST = ["ab9", "ab6", "ab5", "ab3", "ab2", "ab1"]
NEED_CALLBACK = ["ab9", "ab6", "ab5"]


def caller(record: dict[str, Any], number: str, name: str = "") -> dict[str, Any]:
    return record | {"caller_number": number, "caller_name": name}


def records(site: str) -> list[dict[str, Any]]:
    """The calls (2026-10-25, UTC), by number; the range asked for is 06:00Z to 12:00Z."""
    answered = {"answered": True, "talk": 60.0, "agent": "a1", "site": site}
    return [
        # +111: abandoned at 08:00 and got through at 08:30; abandoned again at 11:00.
        caller(call("ab1", "billing", "08:00:00", "abandoned", 45, site=site), "+111", "Ann"),
        caller(call("an1", "support", "08:30:00", "answered", 5, **answered), "+111", "Ann"),
        caller(call("ab6", "billing", "11:00:00", "abandoned", 20, site=site), "+111", "Ann"),
        # +222: abandoned twice, answered after the range (a later call counts wherever it is).
        caller(call("ab2", "billing", "09:00:00", "abandoned", 10, site=site), "+222"),
        caller(call("ab3", "support", "09:20:00", "abandoned", 70, site=site), "+222"),
        caller(call("an2", "billing", "2026-10-25T13:00:00+00:00", "answered", 8, **answered), "+222"),
        # +444: answered before, not since.
        caller(call("an4", "support", "07:00:00", "answered", 3, **answered), "+444", "Bob"),
        caller(call("ab5", "support", "10:00:00", "abandoned", 30, site=site), "+444", "Bob"),
        caller(call("ab9", "support", "11:00:00", "abandoned", 5, site=site), "+888"),
        # Not listed: no number, another outcome, outside the range.
        caller(call("ab4", "billing", "09:30:00", "abandoned", 15, site=site), ""),
        caller(call("ov1", "billing", "09:40:00", "overflowed", 60, site=site), "+333"),
        caller(call("rs1", "billing", "10:30:00", "closed_by_resync", 12, site=site), "+777"),
        caller(call("ab8", "billing", "2026-10-24T23:00:00+00:00", "abandoned", 9, site=site), "+666"),
        # Another site: neither listed nor a later call of this site's callers.
        caller(call("el1", "billing", "09:10:00", "abandoned", 40, site="elsewhere"), "+555"),
        caller(call("el2", "billing", "10:30:00", "answered", 2, **answered | {"site": "elsewhere"}), "+444"),
    ]


async def write(dsn: str, site: str) -> None:
    settings = PostgresSettings(dsn=dsn)
    await upgrade(settings)
    pool = await open_postgres(settings, "abandoned test")
    try:
        await PostgresRecordStore(pool, "test").write([parse_call_record(r) for r in records(site)])
    finally:
        await pool.close()


SCOPE = ReportScope(site="main", formulas={"billing": DEFAULT, "support": DEFAULT}, agents=frozenset())


def ask(**given: Any) -> AbandonedRequest:
    """The request for 06:00Z to 12:00Z, with ``given`` parameters, as the API would check it."""
    fields = {"start": "2026-10-25T06:00Z", "end": "2026-10-25T12:00Z"} | given
    return abandoned_request(RawAbandoned(**fields), SCOPE, cli_flag)


@pytest.fixture
async def service(postgres_dsn: str) -> AsyncIterator[ReportService]:
    await write(postgres_dsn, "main")
    pool = await open_postgres(PostgresSettings(dsn=postgres_dsn), "abandoned test")
    try:
        yield ReportService(pool, "test", SCOPE)
    finally:
        await pool.close()


async def test_lists_abandoned_callers_with_a_number_newest_first_and_whether_they_got_through(
    service: ReportService,
) -> None:
    document = await service.abandoned_callers(ask())
    rows = {row["call_id"]: row for row in document["callers"]}
    assert [row["call_id"] for row in document["callers"]] == NEWEST_FIRST
    assert document["columns"] == list(ABANDONED_COLUMNS) and list(rows["ab1"]) == list(ABANDONED_COLUMNS)
    assert rows["ab1"] == {
        "call_id": "ab1",
        "queue": "billing",
        "caller_number": "+111",
        "caller_name": "Ann",
        "entered_at": "2026-10-25T08:00:00+00:00",
        "abandoned_at": "2026-10-25T08:00:45+00:00",
        "wait_s": 45.0,
        "abandoned_within_threshold": False,
        "later_calls": 2,  # an1 and ab6
        "answered_later": True,
        "answered_later_at": "2026-10-25T08:30:05+00:00",
    }
    assert (rows["ab2"]["later_calls"], rows["ab2"]["answered_later_at"]) == (2, "2026-10-25T13:00:08+00:00")
    assert rows["ab2"]["abandoned_within_threshold"] and rows["ab3"]["answered_later"]
    # Answered before is not answered since; another site's calls are not this caller's.
    assert (rows["ab5"]["later_calls"], rows["ab5"]["answered_later"]) == (0, False)
    assert (rows["ab6"]["later_calls"], rows["ab6"]["answered_later_at"]) == (0, None)
    assert (
        document["timezone"] == "UTC"
        and document["needs_callback"] is None
        and document["next_cursor"] is None
    )


async def test_filters_by_need_queue_and_time_zone(service: ReportService) -> None:
    async def ids(**given: Any) -> list[str]:
        return [row["call_id"] for row in (await service.abandoned_callers(ask(**given)))["callers"]]

    assert await ids(needs_callback="true") == NEED_CALLBACK
    assert await ids(needs_callback="false") == ["ab3", "ab2", "ab1"]
    assert await ids(queues=["billing"]) == ["ab6", "ab2", "ab1"]
    assert await ids(queues=["support"], needs_callback="false") == ["ab3"]
    assert await ids(start="2026-10-25T09:00Z", end="2026-10-25T10:00Z") == ["ab3", "ab2"]  # end excluded
    berlin = await service.abandoned_callers(ask(timezone="Europe/Berlin", start="2026-10-25T12:00"))
    assert [row["entered_at"] for row in berlin["callers"]] == [
        "2026-10-25T12:00:00+01:00",  # ab9 and ab6: 11:00Z
        "2026-10-25T12:00:00+01:00",
    ]


async def test_pages_newest_first_without_a_gap_or_a_repeat(service: ReportService) -> None:
    seen: list[str] = []
    cursor = None
    while True:
        page = await service.abandoned_callers(ask(limit="2", cursor=cursor))
        seen += [row["call_id"] for row in page["callers"]]
        if (cursor := page["next_cursor"]) is None:
            break
        assert len(page["callers"]) == 2
    assert seen == NEWEST_FIRST
    assert [
        r["call_id"] for r in (await service.abandoned_callers(ask(limit="6")))["callers"]
    ] == NEWEST_FIRST


def test_parameters_are_checked_before_postgresql_is_asked() -> None:
    for given, message in [
        ({"needs_callback": "yes"}, "--needs_callback 'yes': expected one of true, false"),
        ({"queues": ["biling"]}, "--queue 'biling' is not a configured queue"),
        ({"limit": "0"}, "--limit '0': expected a whole number from 1 to 1000"),
        ({"start": "2026-10-26"}, "is not before --to"),
        ({"start": None}, "--from is required"),
        ({"cursor": "nope"}, "not a cursor of this API"),
    ]:
        with pytest.raises(ReportInputError, match=message):
            ask(**given)


# -- `acd report --abandoned` -------------------------------------------------------------


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
async def config(tmp_path: Path, postgres_dsn: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    await write(postgres_dsn, "main")
    monkeypatch.setenv("ACD_POSTGRES__DSN", postgres_dsn)
    return write_config(tmp_path / "acd.yaml")


def report(config: Path, *args: str) -> list[str]:
    return ["report", "--config", str(config), "--abandoned", *RANGE, *args]


def test_command_line_json_csv_and_table(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(report(config, "--format", "json", "--timezone", "UTC")) == 0
    document = json.loads(capsys.readouterr().out)
    assert [row["call_id"] for row in document["callers"]] == NEWEST_FIRST and document["limit"] is None
    assert cli.main(report(config, "--format", "csv", "--needs-callback", "--queue", "billing,support")) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [row["call_id"] for row in rows] == NEED_CALLBACK
    assert rows[1]["entered_at"] == "2026-10-25T12:00:00+01:00"  # the site's zone
    assert (rows[1]["caller_number"], rows[1]["answered_later"], rows[1]["answered_later_at"]) == (
        "+111",
        "false",
        "",
    )
    assert rows[0]["wait_s"] == "5" and rows[0]["abandoned_within_threshold"] == "true"
    assert cli.main(report(config, "--limit", "2", "--timezone", "UTC")) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("Abandoned callers to call back: site main")
    assert table[2].split() == [
        "abandoned",
        "at",
        "queue",
        "number",
        "name",
        "waited",
        "called",
        "again",
        "answered",
        "since",
    ]
    assert table[3].split() == ["2026-10-25", "11:00:05+00:00", "support", "+888", "-", "5.0s", "0", "-"]
    assert len(table) == 5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--abandoned", *RANGE, "--interval", "1h"], "--interval belongs to interval reports"),
        (["--abandoned", *RANGE, "--by", "agent"], "--by belongs to interval reports"),
        (["--abandoned", *RANGE, "--agent", "a1"], "--agent belongs to interval reports"),
        ([*RANGE, "--needs-callback"], "--needs-callback belongs to the list of abandoned callers"),
        ([*RANGE, "--limit", "5"], "--limit belongs to the list of abandoned callers"),
        (["--abandoned", *RANGE, "--limit", "many"], "--limit 'many': expected a whole number"),
        (["--abandoned", "--to", "2026-10-25"], "--from is required"),
        (["--abandoned", *RANGE, "--queue", "biling"], "--queue 'biling' is not a configured queue"),
    ],
)
def test_command_line_bad_input_is_one_line_and_exit_2(
    tmp_path: Path,
    args: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ACD_POSTGRES__DSN", f"postgresql://acd@127.0.0.1:{free_port()}/acd")
    config = write_config(tmp_path / "acd.yaml")
    assert cli.main(["report", "--config", str(config), *args]) == cli.EXIT_CONFIG
    line = one_error_line(capsys.readouterr().err, "report")
    assert message in line, line


# -- GET /api/v1/reports/abandoned --------------------------------------------------------


@pytest.fixture
async def api(redis_server: EmbeddedRedis, postgres_dsn: str) -> AsyncIterator[ApiHarness]:
    await write(postgres_dsn, SITE)
    async with running_api(redis_server.url, postgres_dsn=postgres_dsn) as harness:
        yield harness


@pytest.mark.redis
async def test_api_json_pages_and_csv(api: ApiHarness) -> None:
    path = f"/api/v1/reports/abandoned?{QUERY}"
    assert (await api.call("GET", path, token=None))[0] == 401
    status, body = await api.call("GET", path, token=READ_TOKEN)
    assert status == 200 and body["site"] == SITE and body["limit"] == 100, body
    assert [row["call_id"] for row in body["callers"]] == NEWEST_FIRST
    seen, cursor = [], ""
    while True:
        status, page = await api.call("GET", f"{path}&limit=4&needs_callback=false{cursor}")
        assert status == 200, page
        seen += [row["call_id"] for row in page["callers"]]
        if page["next_cursor"] is None:
            break
        cursor = f"&cursor={page['next_cursor']}"
    assert seen == ["ab3", "ab2", "ab1"]
    async with api.http.get(
        api.base + f"{path}&limit=2", headers=auth() | {"Accept": "text/csv"}
    ) as response:
        assert response.status == 200 and response.content_type == "text/csv"
        rows = list(csv.reader(io.StringIO(await response.text())))
        assert rows[0] == list(ABANDONED_COLUMNS) and [r[0] for r in rows[1:]] == NEWEST_FIRST[:2]
        following = response.headers["Acd-Next-Cursor"]
    status, page = await api.call("GET", f"{path}&limit=2&cursor={following}")
    assert [row["call_id"] for row in page["callers"]] == NEWEST_FIRST[2:4]


@pytest.mark.redis
async def test_api_bad_input(api: ApiHarness) -> None:
    for query, status, message in [
        ("to=2026-10-25", 400, "from is required"),
        (f"{QUERY}&needs_callback=maybe", 400, "needs_callback 'maybe': expected one of true, false"),
        (f"{QUERY}&queue=biling", 404, "queue 'biling' is not a configured queue"),
        (f"{QUERY}&limit=1001", 400, "limit '1001'"),
        (f"{QUERY}&format=xml", 400, "format 'xml'"),
    ]:
        got, body = await api.call("GET", f"/api/v1/reports/abandoned?{query}")
        assert got == status and message in body["error"]["message"], (query, body)


@pytest.mark.redis
async def test_api_without_postgres_is_503(redis_server: EmbeddedRedis) -> None:
    async with running_api(redis_server.url) as api:
        status, body = await api.call("GET", f"/api/v1/reports/abandoned?{QUERY}")
        assert status == 503 and body["error"]["code"] == "postgres_not_configured", body
