"""Quality reviews over the API, on a real PostgreSQL (the recorder's schema, calls written by
its own store) and the API over real TCP: the reviewer token and only it, the form from the
configuration, pending and done lists, scores checked against the form with errors naming
the field, and clear 503s when PostgreSQL is missing, down or not set up."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from load_tests.embedded import EmbeddedPostgres, EmbeddedRedis, free_port
from router.settings import QaForm
from tests.records_support import T0, call_record, record_calls, sampled_call_record
from workers.api.app import openapi_document

from .test_api_support import READ_TOKEN, SITE, TOKEN, ApiHarness, running_api

pytestmark = [pytest.mark.redis, pytest.mark.postgres]

REVIEWER = "reviewer-token-for-tests"
FORM = {
    "scale": [1, 5],
    "criteria": [
        {"name": "greeting", "weight": 1, "description": "greets and names the company"},
        {"name": "resolution", "weight": 3, "description": "solves the caller's problem"},
    ],
}
GOOD = {"reviewer": "Jane Roe", "scores": {"greeting": 4, "resolution": 5}, "comments": "well handled"}


def sampled(call_id: str, answered: float, **fields: Any) -> dict[str, Any]:
    return sampled_call_record(call_id, answered, **({"site": SITE} | fields))


@pytest.fixture
async def calls_dsn(postgres_dsn: str) -> str:
    await record_calls(
        postgres_dsn,
        [
            sampled("c-late", T0 + 300, agent_id="a2", queue="support"),
            sampled("c-early", T0 + 100, qa_reason="minimum"),
            sampled("c-mid", T0 + 200),
            call_record("c-plain", site=SITE, qa_sampled=False, recording=""),
            sampled("c-elsewhere", T0 + 50, site="other-site"),
        ],
    )
    return postgres_dsn


@pytest.fixture
async def api(redis: Redis, redis_server: EmbeddedRedis, calls_dsn: str) -> AsyncIterator[ApiHarness]:
    async with running_api(
        redis_server.url, postgres_dsn=calls_dsn, acd={"qa": {"form": FORM}}, reviewer_token=SecretStr(REVIEWER)
    ) as harness:
        yield harness


async def reviews(api: ApiHarness, query: str = "") -> list[str]:
    status, body = await api.call("GET", "/api/v1/qa/reviews" + query, token=REVIEWER)
    assert status == 200, body
    assert body["count"] == len(body["calls"])
    return [call["call_id"] for call in body["calls"]]


# -- tokens --------------------------------------------------------------------------------------


async def test_the_review_routes_take_the_reviewer_token_and_it_opens_nothing_else(api: ApiHarness) -> None:
    for path in ("/api/v1/qa/form", "/api/v1/qa/reviews"):
        status, body = await api.call("GET", path, token=None)
        assert status == 401 and "ACD_API__REVIEWER_TOKEN" in body["error"]["message"]
        assert (await api.call("GET", path, token="not-a-token"))[0] == 401
        for other in (TOKEN, READ_TOKEN):
            status, body = await api.call("GET", path, token=other)
            assert status == 403 and "need the reviewer token" in body["error"]["message"], body
        assert (await api.call("GET", path, token=REVIEWER))[0] == 200
    status, _ = await api.call("POST", "/api/v1/qa/reviews/c-mid", token=TOKEN, body=GOOD)
    assert status == 403
    # The reviewer token on the rest of the API: refused, for reads and changes alike.
    for method, path in (("GET", "/api/v1/agents"), ("GET", "/api/v1/queues"), ("POST", "/api/v1/agents/a1/logout")):
        status, body = await api.call(method, path, token=REVIEWER)
        assert status == 403 and "reviewer token opens only /api/v1/qa/" in body["error"]["message"]


async def test_without_a_reviewer_token_the_routes_say_how_to_open_them(
    redis: Redis, redis_server: EmbeddedRedis
) -> None:
    async with running_api(redis_server.url) as api:
        status, body = await api.call("GET", "/api/v1/qa/reviews", token=TOKEN)
        assert status == 403 and "none is configured: set ACD_API__REVIEWER_TOKEN" in body["error"]["message"]


def test_the_reviewer_token_must_differ_from_the_others() -> None:
    from router.settings import ApiSettings

    with pytest.raises(ValueError, match="reviewer_token must differ"):
        ApiSettings(token=SecretStr("same"), reviewer_token=SecretStr("same"))


# -- the form, the lists ---------------------------------------------------------------------------


async def test_the_form_is_the_configured_one_and_the_description_says_so(api: ApiHarness) -> None:
    status, form = await api.call("GET", "/api/v1/qa/form", token=REVIEWER)
    assert status == 200 and form["scale"] == [1, 5]
    assert [(c["name"], c["weight"]) for c in form["criteria"]] == [("greeting", 1.0), ("resolution", 3.0)]
    status, document = await api.call("GET", "/openapi.json", token=None)
    scores = document["components"]["schemas"]["QaScores"]
    assert scores["required"] == ["greeting", "resolution"] and scores["additionalProperties"] is False
    assert scores["properties"]["resolution"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 5,
        "description": "solves the caller's problem",
    }
    assert document == openapi_document(QaForm.model_validate(FORM))


async def test_pending_lists_the_sites_sampled_calls_oldest_first_and_filters(api: ApiHarness) -> None:
    assert await reviews(api) == ["c-early", "c-mid", "c-late"]  # not c-plain, not the other site's
    assert await reviews(api, "?status=pending&agent=a2") == ["c-late"]
    assert await reviews(api, "?queue=support") == ["c-late"]
    assert await reviews(api, "?limit=2") == ["c-early", "c-mid"]
    assert await reviews(api, "?status=done") == []
    status, body = await api.call("GET", "/api/v1/qa/reviews", token=REVIEWER)
    first = body["calls"][0]
    assert (first["qa_reason"], first["recording"], first["reviews"]) == ("minimum", "acd-c-early.wav", [])
    assert (first["answered_at"], first["agent_id"], first["outcome"]) == (T0 + 100, "a1", "answered")
    for query, problem in (("?status=open", "status = 'open'"), ("?status=", "status = ''"), ("?limit=0", "limit")):
        status, body = await api.call("GET", "/api/v1/qa/reviews" + query, token=REVIEWER)
        assert status == 400 and body["error"]["code"] == "invalid_query" and problem in body["error"]["message"]


async def test_a_review_is_stored_and_moves_the_call_from_pending_to_done(api: ApiHarness) -> None:
    status, review = await api.call("POST", "/api/v1/qa/reviews/c-mid", token=REVIEWER, body=GOOD)
    assert status == 201, review
    assert (review["call_id"], review["reviewer"], review["scores"]) == ("c-mid", "Jane Roe", GOOD["scores"])
    assert review["total"] == 4.75  # (1 * 4 + 3 * 5) / 4
    assert review["comments"] == "well handled" and review["id"] >= 1 and review["created_at"] > 0
    assert await reviews(api) == ["c-early", "c-late"]
    assert await reviews(api, "?status=done") == ["c-mid"]
    # A second opinion (scores 3.0 is a whole number too) adds to the call's reviews.
    second = {"reviewer": "Max", "scores": {"greeting": 3.0, "resolution": 2}}
    status, again = await api.call("POST", "/api/v1/qa/reviews/c-mid", token=REVIEWER, body=second)
    assert status == 201 and again["total"] == 2.25 and again["comments"] == ""
    status, body = await api.call("GET", "/api/v1/qa/reviews?status=done", token=REVIEWER)
    [call] = body["calls"]
    assert [(r["reviewer"], r["total"], r["scores"]) for r in call["reviews"]] == [
        ("Jane Roe", 4.75, {"greeting": 4, "resolution": 5}),
        ("Max", 2.25, {"greeting": 3, "resolution": 2}),
    ]


async def test_scores_are_checked_against_the_form_naming_each_bad_field(api: ApiHarness) -> None:
    cases = [
        ({"greeting": 4}, "scores.resolution: missing: every criterion is scored, 1 to 5"),
        ({"greeting": 4, "resolution": 6}, "scores.resolution: expected a whole number from 1 to 5 (got 6)"),
        ({"greeting": 0, "resolution": 5}, "scores.greeting: expected a whole number from 1 to 5 (got 0)"),
        ({"greeting": 2.5, "resolution": 5}, "scores.greeting: expected a whole number from 1 to 5 (got 2.5)"),
        ({"greeting": True, "resolution": 5}, "scores.greeting: expected a whole number from 1 to 5 (got true)"),
        ({"greeting": "4", "resolution": 5}, 'scores.greeting: expected a whole number from 1 to 5 (got "4")'),
        (
            {"greeting": 4, "resolution": 5, "empathy": 3},
            "scores.empathy: not a criterion of the form ['greeting', 'resolution'] (got 3)",
        ),
    ]
    for scores, message in cases:
        status, body = await api.call(
            "POST", "/api/v1/qa/reviews/c-mid", token=REVIEWER, body={"reviewer": "Jane", "scores": scores}
        )
        assert status == 400 and body["error"]["code"] == "invalid_body", body
        assert message in body["error"]["message"], (scores, body["error"]["message"])
        assert any(d["field"].startswith("scores.") for d in body["error"]["details"])
    for bad, field in (
        ({"scores": GOOD["scores"]}, "reviewer"),
        ({**GOOD, "reviewer": ""}, "reviewer"),
        ({**GOOD, "comments": "a\x00b"}, "comments"),
        ({**GOOD, "stars": 5}, "stars"),
    ):
        status, body = await api.call("POST", "/api/v1/qa/reviews/c-mid", token=REVIEWER, body=bad)
        assert status == 400 and body["error"]["details"][0]["field"] == field, body
    assert await reviews(api, "?status=done") == []  # nothing stored


async def test_only_recorded_sampled_calls_can_be_reviewed(api: ApiHarness) -> None:
    status, body = await api.call("POST", "/api/v1/qa/reviews/c-nowhere", token=REVIEWER, body=GOOD)
    assert status == 404 and body["error"]["code"] == "unknown_call" and "acd record" in body["error"]["message"]
    status, body = await api.call("POST", "/api/v1/qa/reviews/c-elsewhere", token=REVIEWER, body=GOOD)
    assert status == 404  # another site's call
    status, body = await api.call("POST", "/api/v1/qa/reviews/c-plain", token=REVIEWER, body=GOOD)
    assert status == 409 and body["error"]["code"] == "not_sampled"


# -- without PostgreSQL -----------------------------------------------------------------------------


async def test_without_postgresql_the_review_routes_answer_503_and_say_why(
    redis: Redis, redis_server: EmbeddedRedis
) -> None:
    async with running_api(redis_server.url, reviewer_token=SecretStr(REVIEWER)) as api:
        review = {"reviewer": "Jane", "scores": {"overall": 3}}  # the default form's
        for method, path in (("GET", "/api/v1/qa/reviews"), ("POST", "/api/v1/qa/reviews/c-mid")):
            status, body = await api.call(method, path, token=REVIEWER, body=review if method == "POST" else None)
            assert status == 503 and body["error"]["code"] == "postgres_not_configured"
            message = body["error"]["message"]
            assert "PostgreSQL" in message and "ACD_POSTGRES__DSN_FILE" in message and "acd api" in message
        # The input is checked first, as for the reports.
        status, body = await api.call("POST", "/api/v1/qa/reviews/c-mid", token=REVIEWER, body=GOOD)
        assert status == 400 and "scores.greeting: not a criterion" in body["error"]["message"]
        assert (await api.call("GET", "/api/v1/qa/form", token=REVIEWER))[0] == 200  # configuration only
        assert (await api.call("GET", "/api/v1/queues"))[0] == 200  # the rest is unaffected


async def test_postgresql_down_or_not_set_up_is_a_503_that_says_what_to_do(
    redis: Redis, redis_server: EmbeddedRedis, postgres_server: EmbeddedPostgres, postgres_dsn: str
) -> None:
    nobody = f"postgresql://acd@127.0.0.1:{free_port()}/records"
    async with running_api(
        redis_server.url, acd={"postgres": {"dsn": nobody, "connect_timeout_s": 1}}, reviewer_token=SecretStr(REVIEWER)
    ) as api:
        status, body = await api.call("GET", "/api/v1/qa/reviews", token=REVIEWER)
        assert status == 503 and body["error"]["code"] == "postgres_unavailable", body
        assert (await api.call("GET", "/ready", token=None))[0] == 200  # the API itself is fine
    # A database without the recorder's tables (`acd db upgrade` never ran).
    async with running_api(
        redis_server.url, acd={"postgres": {"dsn": postgres_dsn}}, reviewer_token=SecretStr(REVIEWER)
    ) as api:
        status, body = await api.call("GET", "/api/v1/qa/reviews", token=REVIEWER)
        assert status == 503 and body["error"]["code"] == "postgres_unavailable", body
        assert "acd db upgrade" in body["error"]["message"]
