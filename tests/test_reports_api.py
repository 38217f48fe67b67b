"""The reports API over real HTTP, real PostgreSQL and redis-server: GET /api/v1/reports/intervals
(JSON, CSV by `format` or `Accept`) and GET /api/v1/reports/calls (filters, paging to the
end without a gap or a repeat); the tokens; every bad input; 503 without PostgreSQL
configured, and while it is away (the API stays ready)."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from typing import Any

import pytest

from load_tests.embedded import EmbeddedRedis, free_port
from tests.reports_support import QUEUE_FIGURES, ZERO_CALLS, write_records
from workers.records.parse import CALL_TABLE
from workers.reports.report import COLUMNS

from .test_api_support import READ_TOKEN, SITE, TOKEN, ApiHarness, auth, running_api

pytestmark = pytest.mark.redis

DAY = "from=2026-10-25T00:00:00Z&to=2026-10-25T05:00:00Z"
# Every finished call of the site, in the API's order (entered_at, then call_id).
IN_ORDER = ["x1", "c1", "s1", "c2", "s2", "c3", "c4", "c8", "c9", "c5", "c6", "c7", "s3", "x2", "e1"]


@pytest.fixture
async def api(redis_server: EmbeddedRedis, postgres_dsn: str) -> AsyncIterator[ApiHarness]:
    await write_records(postgres_dsn, site=SITE)
    async with running_api(redis_server.url, postgres_dsn=postgres_dsn) as harness:
        yield harness


async def get(api: ApiHarness, path: str, *, token: str | None = TOKEN, **headers: str) -> tuple[int, str, str]:
    """Status, content type and text."""
    sent = (auth(token) if token else {}) | headers
    async with api.http.get(api.base + path, headers=sent) as response:
        return response.status, response.content_type, await response.text()


async def test_the_read_token_may_read_reports_and_no_token_may_not(api: ApiHarness) -> None:
    for path in (f"/api/v1/reports/intervals?{DAY}", "/api/v1/reports/calls"):
        assert (await api.call("GET", path, token=None))[0] == 401
        assert (await api.call("GET", path, token="not-a-token"))[0] == 401
        assert (await api.call("GET", path, token=READ_TOKEN))[0] == 200
        assert (await api.call("GET", path))[0] == 200


async def test_the_json_report_is_the_clis_document(api: ApiHarness) -> None:
    status, body = await api.call("GET", f"/api/v1/reports/intervals?{DAY}&interval=1h&queue=billing")
    assert status == 200, body
    assert body["timezone"] == "UTC" and body["timezone_source"] == "default" and body["site"] == SITE
    assert body["columns"] == list(COLUMNS["queue"]) and len(body["rows"]) == 5
    billing = body["rows"][0]  # 00:00Z-01:00Z: the hour #2 of tests/reports_support.py
    assert billing["interval_start"] == "2026-10-25T00:00:00+00:00"
    expected = ZERO_CALLS | QUEUE_FIGURES[2, "billing"]
    assert {name: billing[name] for name in expected} == {
        name: round(value, 6 if name in ("service_level", "abandon_rate") else 3) if isinstance(value, float) else value
        for name, value in expected.items()
    }
    status, berlin = await api.call(
        "GET", f"/api/v1/reports/intervals?{DAY}&interval=1h&by=agent&agent=a1&timezone=Europe/Berlin"
    )
    assert status == 200 and berlin["timezone_source"] == "requested"
    assert [row["interval_start"] for row in berlin["rows"]] == [
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:00:00+01:00",
    ]
    assert berlin["rows"][0]["avg_quality_score"] == 85.0 and berlin["totals"]["calls_handled"] == 2


async def test_csv_by_format_or_by_accept(api: ApiHarness) -> None:
    for query, headers in ((f"{DAY}&by=site&format=csv", {}), (f"{DAY}&by=site", {"Accept": "text/csv"})):
        status, content_type, text = await get(api, f"/api/v1/reports/intervals?{query}", **headers)
        assert status == 200 and content_type == "text/csv", text
        rows = list(csv.reader(io.StringIO(text)))
        assert tuple(rows[0]) == COLUMNS["site"] and len(rows) == 1 + 20  # 5 hours of 15 minutes
    status, content_type, _ = await get(api, f"/api/v1/reports/intervals?{DAY}&format=json", Accept="text/csv")
    assert status == 200 and content_type == "application/json"  # format= wins


async def test_bad_input_names_the_parameter(api: ApiHarness) -> None:
    cases: list[tuple[str, int, str, str]] = [
        ("from=2026-10-26&to=2026-10-25", 400, "invalid_query", "from '2026-10-26' is not before to '2026-10-25'"),
        ("to=2026-10-25", 400, "invalid_query", "from is required"),
        ("from=yesterday&to=2026-10-25", 400, "invalid_query", "from 'yesterday': expected ISO 8601"),
        (f"{DAY}&interval=10m", 400, "invalid_query", "interval '10m': expected one of 15m, 30m, 1h, 1d"),
        (f"{DAY}&by=team", 400, "invalid_query", "by 'team': expected one of queue, agent, site"),
        (f"{DAY}&timezone=Mars/Olympus", 400, "invalid_query", "timezone 'Mars/Olympus': not a known time zone"),
        (f"{DAY}&format=xml", 400, "invalid_query", "format 'xml': expected one of json, csv"),
        (f"{DAY}&queue=biling", 404, "unknown_queue", "queue 'biling' is not a configured queue"),
        (f"{DAY}&by=agent&agent=zz", 404, "unknown_agent", "agent 'zz' is not a configured agent"),
        (f"{DAY}&agent=a1", 400, "invalid_query", "agent filters agent reports: expected by agent with it"),
    ]
    for query, status, code, message in cases:
        got, body = await api.call("GET", f"/api/v1/reports/intervals?{query}")
        assert (got, body["error"]["code"]) == (status, code), (query, body)
        assert message in body["error"]["message"], (query, body)


async def finished(api: ApiHarness, query: str) -> list[dict[str, Any]]:
    """Every page of /api/v1/reports/calls?query, followed to the end."""
    found: list[dict[str, Any]] = []
    cursor = ""
    while True:
        status, page = await api.call("GET", f"/api/v1/reports/calls?{query}{cursor}")
        assert status == 200, page
        found += page["calls"]
        if page["next_cursor"] is None:
            return found
        assert len(page["calls"]) == page["limit"]
        cursor = f"&cursor={page['next_cursor']}"


async def test_finished_calls_page_through_every_call_once_in_order(api: ApiHarness) -> None:
    pages = await finished(api, "limit=2")
    assert [row["call_id"] for row in pages] == IN_ORDER
    c1 = next(row for row in pages if row["call_id"] == "c1")
    assert c1["revision"] == 2 and c1["wrapup_s"] == 20.0 and c1["entered_at"] == "2026-10-25T00:10:00+00:00"
    assert set(c1) == {name for name in CALL_TABLE.column_names if name != "record_id"}
    status, first = await api.call("GET", "/api/v1/reports/calls")
    assert status == 200 and first["limit"] == 100 and first["next_cursor"] is None
    assert len(first["calls"]) == len(IN_ORDER)


async def test_finished_calls_filtered_by_time_queue_agent_and_outcome(api: ApiHarness) -> None:
    def ids(rows: list[dict[str, Any]]) -> list[str]:
        return [row["call_id"] for row in rows]

    assert ids(await finished(api, f"{DAY}&limit=3")) == IN_ORDER[1:-1]  # 00:00Z to 05:00Z
    assert ids(await finished(api, "queue=support")) == ["s1", "s2", "s3"]
    assert ids(await finished(api, "agent=a1&outcome=answered,transferred")) == ["x1", "c1", "c5"]
    assert ids(await finished(api, "outcome=abandoned&outcome=closed_by_resync")) == ["s2", "c3", "c4", "c6", "x2"]
    berlin = await finished(api, "from=2026-10-26&timezone=Europe/Berlin")
    assert ids(berlin) == ["e1"] and berlin[0]["entered_at"] == "2026-10-26T00:30:00+01:00"


async def test_finished_calls_bad_input(api: ApiHarness) -> None:
    for query, status, message in [
        ("limit=0", 400, "limit '0': expected a whole number from 1 to 1000"),
        ("limit=1001", 400, "limit '1001'"),
        ("limit=2.5", 400, "limit '2.5'"),
        ("cursor=bm90LWEtY3Vyc29y", 400, "cursor 'bm90LWEtY3Vyc29y': not a cursor of this API"),
        ("cursor=%25%25", 400, "not a cursor of this API"),
        ("outcome=hung_up", 400, "outcome 'hung_up': expected one of abandoned, answered"),
        ("queue=biling", 404, "queue 'biling' is not a configured queue"),
        ("from=2026-10-25&to=2026-10-24", 400, "from '2026-10-25' is not before to '2026-10-24'"),
    ]:
        got, body = await api.call("GET", f"/api/v1/reports/calls?{query}")
        assert got == status and message in body["error"]["message"], (query, body)


async def test_without_postgres_configured_the_reports_answer_503_and_bad_input_still_400(
    redis_server: EmbeddedRedis,
) -> None:
    async with running_api(redis_server.url) as api:
        for path in (f"/api/v1/reports/intervals?{DAY}", "/api/v1/reports/calls"):
            status, body = await api.call("GET", path)
            assert status == 503 and body["error"]["code"] == "postgres_not_configured", body
            assert "ACD_POSTGRES__DSN_FILE" in body["error"]["message"]
        status, body = await api.call("GET", "/api/v1/reports/intervals?from=2026-10-25&to=2026-10-24")
        assert status == 400, body


async def test_with_postgres_away_the_api_stays_ready_and_reports_answer_503(redis_server: EmbeddedRedis) -> None:
    port = free_port()
    async with running_api(redis_server.url, postgres_dsn=f"postgresql://acd@127.0.0.1:{port}/acd") as api:
        assert (await api.call("GET", "/ready", token=None))[0] == 200
        status, body = await api.call("GET", f"/api/v1/reports/intervals?{DAY}")
        assert status == 503 and body["error"]["code"] == "postgres_unavailable", body
        assert f"127.0.0.1:{port}" in body["error"]["message"]
        assert (await api.call("GET", "/api/v1/queues"))[0] == 200  # the rest of the API works


async def test_a_database_without_the_schema_is_a_503_that_says_what_to_run(
    redis_server: EmbeddedRedis, postgres_dsn: str
) -> None:
    async with running_api(redis_server.url, postgres_dsn=postgres_dsn) as api:
        status, body = await api.call("GET", "/api/v1/reports/calls")
        assert status == 503 and "acd db upgrade" in body["error"]["message"], body
