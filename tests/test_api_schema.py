"""The OpenAPI description and the handlers agree: schemathesis against the real API.

The API runs as in the other API tests (`running_api`: the `acd api` service over real
TCP, the session's redis-server, the AMI simulator), but on its own event loop in a
thread, because schemathesis sends its requests synchronously from the test. Requests
for every operation of the description the API serves (test_api.py checks that
`/openapi.json` is this document) come from schemathesis' phases (the description's
examples, boundary coverage, fuzzing) with valid and invalid input, and every response
goes through all of its checks: no server error, status code, content type, headers and
body (each live event too) as described, invalid input refused, valid input accepted,
auth enforced. Generation is deterministic, so a failure here fails every run.

The reports routes read a real PostgreSQL holding the records of tests/reports_support.py
(times mixed into the generated ones land on them). The description cannot say that `from`
must come before `to`, that `agent` goes with `by=agent` or how long a range may be, so a
well-formed request to those routes may also be refused with 400; tests/test_reports_api.py
checks the requests that must succeed.

The quality review routes take the reviewer token (every other route the full-access token)
and read the same database, which also holds a sampled call (c-done, reviews are stored) and
one that was not sampled (c-offer); the review form is the site's own (FORM), and the
description the API serves says so.

A second pass cuts the API off from Redis, and runs it without PostgreSQL: every answer
must still be one the description declares. The live events' `data` (JSON in a string) is checked against
each kind's `contentSchema` here, since schemathesis does not read inside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema_rs
import pytest
import requests
import schemathesis
from pydantic import SecretStr
from redis.asyncio import ConnectionPool, Redis, UnixDomainSocketConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from schemathesis import Case
from schemathesis.checks import not_a_server_error

from router.settings import QaForm
from tests.records_support import call_record, record_calls, sampled_call_record
from tests.reports_support import write_records
from workers.api.app import openapi_document

from .test_api_support import (
    SITE,
    TOKEN,
    ApiHarness,
    auth,
    enqueue,
    into_wrap_up,
    offer,
    present,
    running_api,
)

if TYPE_CHECKING:
    from load_tests.embedded import EmbeddedPostgres, EmbeddedRedis

# serial: on pytest-xdist workers the cases schemathesis generates are collected but never
# run (6 of 46 ran, silently); `make test` runs this module on its own.
pytestmark = [pytest.mark.redis, pytest.mark.slow, pytest.mark.serial]

EXAMPLES = 30  # per operation and mode in the fuzzing phase: about 15 s on two cores
KNOWN = {
    # Known names, mixed into generated ones so that requests also reach real agents,
    # queues and calls (random names mostly meet a 404).
    "agents": ["a1", "a2", "a3"],
    "queues": ["billing", "support"],
    "calls": ["c-wait", "c-offer", "c-done"],
    # Every `to` is after every `from`, around the reports' records (tests/reports_support.py).
    "report_from": ["2026-10-25", "2026-10-24T22:00:00Z", "2026-10-25T01:00"],
    "report_to": ["2026-10-26", "2026-10-25T05:00:00+01:00", "2026-10-25T03:30"],
    "timezones": ["UTC", "Europe/Berlin", "Asia/Kolkata"],
}
# Well-formed requests that the reports may still refuse (see the module docstring).
REPORTS_ACCEPT = ["2xx", "3xx", "400", "401", "403", "404", "409", "429", "5xx"]
# Quality reviews: the reviewer token on their routes, and a review form of the site's own.
REVIEWER = "reviewer-token-for-the-schema-test"
FORM = QaForm.model_validate(
    {"scale": [0, 10], "criteria": [{"name": "greeting", "weight": 1}, {"name": "resolution", "weight": 2.5}]}
)


def schemathesis_config(examples: int, token: str = TOKEN) -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "headers": {"Authorization": f"Bearer {token}"},
            "generation": {
                "mode": "all",
                "max-examples": examples,
                "deterministic": True,
                "database": "none",
            },
            "phases": {"stateful": {"enabled": False}},
            "checks": {"enabled": True},
            "dictionaries": {name: {"values": values} for name, values in KNOWN.items()},
            "parameters": {
                "path.agent_id": {"dictionary": "agents", "probability": 0.6},
                "query.agent": {"dictionary": "agents", "probability": 0.5},
                "path.queue": {"dictionary": "queues", "probability": 0.6},
                "query.queue": {"dictionary": "queues", "probability": 0.5},
                "path.call_id": {"dictionary": "calls", "probability": 0.6},
                "query.from": {"dictionary": "report_from", "probability": 0.6},
                "query.to": {"dictionary": "report_to", "probability": 0.6},
                "query.timezone": {"dictionary": "timezones", "probability": 0.6},
            },
            # A live-update stream never ends: read its first events, then judge them.
            "operations": [
                {
                    "include-path": "/api/v1/events",
                    "max-stream-events": 4,
                    "request-timeout": 0.5,
                    "generation": {"max-examples": min(examples, 10)},
                },
                {
                    "include-path-regex": "^/api/v1/reports/",
                    "checks": {"positive_data_acceptance": {"expected-statuses": REPORTS_ACCEPT}},
                },
            ],
        }
    )


@contextlib.contextmanager
def api_in_thread(
    redis_url: str, *, postgres: EmbeddedPostgres | None = None, cut_redis: Path | None = None
) -> Iterator[str]:
    """The API (`running_api`) on its own event loop in a thread; yields its base URL.

    ``postgres``: the reports read a fresh database of it, holding the reports' records.
    ``cut_redis``: once the states are written, the API's Redis client is pointed at this
    socket, where nothing listens: every read and write fails as if Redis were down.
    """
    base: list[str] = []
    started, stop = threading.Event(), threading.Event()
    failed: list[BaseException] = []

    async def serve() -> None:
        async with Redis.from_url(redis_url) as redis_before:
            await redis_before.flushdb()  # a clean database, like the `redis` fixture's
        qa = {"reviewer_token": SecretStr(REVIEWER), "acd": {"qa": {"form": FORM}}}
        async with records_database(postgres) as dsn, running_api(redis_url, postgres_dsn=dsn, **qa) as api:
            await _states(api)
            redis = api.service.redis
            kept = redis.connection_pool
            if cut_redis is not None:
                redis.connection_pool = ConnectionPool(
                    connection_class=UnixDomainSocketConnection,
                    path=str(cut_redis),
                    retry=Retry(NoBackoff(), 0),
                )
            base.append(api.base)
            started.set()
            while not stop.is_set():
                await asyncio.sleep(0.05)
            redis.connection_pool = kept

    def main() -> None:
        try:
            asyncio.run(serve())
        except BaseException as exc:
            failed.append(exc)
            started.set()

    thread = threading.Thread(target=main, name="api-under-test", daemon=True)
    thread.start()
    try:
        assert started.wait(30) and not failed, failed
        yield base[0]
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive() and not failed, failed


@contextlib.asynccontextmanager
async def records_database(postgres: EmbeddedPostgres | None) -> AsyncIterator[str | None]:
    """A fresh database with the reports' records as the API's site's, dropped afterwards."""
    if postgres is None:
        yield None
        return
    name = f"schema_{uuid.uuid4().hex[:12]}"
    await postgres.create_database(name)
    try:
        await write_records(postgres.dsn(name), site=SITE)
        reviewed = [
            sampled_call_record("c-done", 1_800_000_100.0, site=SITE),
            call_record("c-offer", site=SITE, qa_sampled=False, qa_reason="", recording=""),
        ]
        await record_calls(postgres.dsn(name), reviewed)
        yield postgres.dsn(name)
    finally:
        await postgres.drop_database(name)


async def _states(api: ApiHarness) -> None:
    """Something in every state, so that the views and the live events have content."""
    now = api.clock.now()
    await present(api.store, "a2", now - 100)
    await present(api.store, "a3", now - 100, "paused", "lunch")
    await enqueue(api.store, "c-wait", "billing", now - 30, priority=2)
    await enqueue(api.store, "c-offer", "support", now - 20)
    await offer(api.store, "c-offer", "a2", now - 5)
    await into_wrap_up(api.store, "a1", "c-done", now)


@pytest.fixture(scope="module")
def api_base(redis_server: EmbeddedRedis, postgres_server: EmbeddedPostgres) -> Iterator[str]:
    with api_in_thread(redis_server.url, postgres=postgres_server) as base:
        yield base


@pytest.fixture(scope="module")
def api_base_without_redis(
    redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    with api_in_thread(redis_server.url, cut_redis=tmp_path_factory.mktemp("gone") / "redis.sock") as base:
        yield base


# The description the API serves: a review's scores as FORM defines them.
DOCUMENT = openapi_document(FORM)
QA_ROUTES = "^/api/v1/qa/"
schema = schemathesis.openapi.from_dict(DOCUMENT, config=schemathesis_config(EXAMPLES)).exclude(
    path_regex=QA_ROUTES
)
review_schema = schemathesis.openapi.from_dict(
    DOCUMENT, config=schemathesis_config(EXAMPLES, token=REVIEWER)
).exclude(path_regex="^/(?!api/v1/qa/)")  # (its include() filter is lost by the pytest plugin)
schema_when_redis_is_down = schemathesis.openapi.from_dict(DOCUMENT, config=schemathesis_config(5))


@schema.parametrize()
def test_the_api_answers_as_its_openapi_description_says(case: Case, api_base: str) -> None:
    case.call_and_validate(base_url=api_base)


@review_schema.parametrize()
def test_the_review_routes_answer_as_the_description_says(case: Case, api_base: str) -> None:
    """With the reviewer token, on PostgreSQL: scores checked against the configured form."""
    case.call_and_validate(base_url=api_base)


@schema_when_redis_is_down.parametrize()
def test_with_redis_down_every_answer_is_one_the_description_declares(
    case: Case, api_base_without_redis: str
) -> None:
    """503 (and its error body) wherever Redis is needed; the rest answers as usual."""
    case.call_and_validate(base_url=api_base_without_redis, excluded_checks=[not_a_server_error])


# -- live events: each kind's data against its declared contentSchema ------------------


def _validator(pointer: str) -> Any:
    document = openapi_document()
    return jsonschema_rs.Draft202012Validator({"$ref": pointer, "components": document["components"]})


def _events(base: str, path: str, wanted: set[str]) -> list[dict[str, str]]:
    """The stream's events (SSE fields) until every wanted kind has been seen."""
    events: list[dict[str, str]] = []
    fields: dict[str, str] = {}
    with requests.get(base + path, headers=auth(), stream=True, timeout=10) as response:
        assert response.status_code == 200, response.text
        assert response.headers["Content-Type"] == "text/event-stream"
        for line in response.iter_lines(decode_unicode=True):
            if line:
                name, _, value = line.partition(": ")
                fields[name] = value
            elif "data" in fields:
                events.append(fields)
                if wanted <= {event["event"] for event in events}:
                    return events
            if not line:
                fields = {}
    raise AssertionError(f"the stream ended before {wanted}: {events}")


@pytest.mark.parametrize(
    ("path", "kinds"),
    [
        ("/api/v1/events", {"wallboard", "agent", "calls"}),
        ("/api/v1/events?topics=", {"wallboard", "agent", "calls"}),
        ("/api/v1/events?agent=a1", {"agent"}),
        ("/api/v1/events?topics=calls,%20wallboard", {"calls", "wallboard"}),
    ],
)
def test_every_live_event_matches_its_declared_schema(api_base: str, path: str, kinds: set[str]) -> None:
    envelope = _validator("#/components/schemas/LiveEvent")
    events = _events(api_base, path, kinds)
    assert {event["event"] for event in events} == kinds
    for event in events:
        errors = [error.message for error in envelope.iter_errors(event)]
        assert not errors, (event, errors)
        declared = openapi_document()["components"]["schemas"][event["event"].capitalize() + "Event"]
        content = _validator(declared["properties"]["data"]["contentSchema"]["$ref"])
        data = json.loads(event["data"])
        errors = [f"{error.instance_path}: {error.message}" for error in content.iter_errors(data)]
        assert not errors, (event["event"], data, errors)
    if path.endswith("agent=a1"):
        assert {json.loads(event["data"])["agent_id"] for event in events} == {"a1"}
