"""Quality reviews over the API (docs/quality.md, docs/api.md): the review form, the sampled
calls pending review or reviewed, and a review's scores checked against the form.

The reviewer token alone opens these routes (workers/api/auth.py). Sampled calls and
reviews live in PostgreSQL (workers/api/reviews.py), on the API's pool that the reports
share. As for the reports, the input is checked first (400, 404), then, without a
``postgres`` DSN, 503 ``postgres_not_configured``; with PostgreSQL away or without its
tables, 503 ``postgres_unavailable`` (the error middleware). The form is configuration and
needs no database.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Annotated, Any

from aiohttp import web
from pydantic import Field

from router.settings import QaForm
from workers.api.errors import ApiError, read_body
from workers.api.handlers import Body
from workers.api.reviews import PostgresReviewStore, Status

logger = logging.getLogger(__name__)

STATUSES: tuple[Status, ...] = ("pending", "done")
MAX_LIMIT = 1000
REVIEWER_PATTERN = r"^[^\x00-\x1f\x7f]{1,100}$"
COMMENTS_PATTERN = r"^[^\x00]*$"
MAX_COMMENTS = 10_000


class ReviewBody(Body):
    """A review: who gave it, a score per criterion of the form, comments."""

    reviewer: Annotated[str, Field(pattern=REVIEWER_PATTERN)]
    # Checked against the configured form by ``check_scores``, for errors that name the form.
    scores: dict[str, Any]
    comments: Annotated[str, Field(max_length=MAX_COMMENTS, pattern=COMMENTS_PATTERN)] = ""


def form_json(form: QaForm) -> dict[str, Any]:
    return {
        "scale": list(form.scale),
        "criteria": [c.model_dump(mode="json") for c in form.criteria],
        "total": "the weighted mean of the scores: sum(weight * score) / sum(weight)",
    }


def scores_schema(form: QaForm) -> dict[str, Any]:
    """The JSON Schema of a review's ``scores`` under ``form`` (served in /openapi.json)."""
    low, high = form.scale
    return {
        "type": "object",
        "description": f"a whole number from {low} to {high} for every criterion of the review form "
        "(configuration qa.form; GET /api/v1/qa/form)",
        "required": [c.name for c in form.criteria],
        "additionalProperties": False,
        "properties": {
            c.name: {
                "type": "integer",
                "minimum": low,
                "maximum": high,
                "description": c.description or c.name,
            }
            for c in form.criteria
        },
    }


def _whole(value: object) -> int | None:
    """A JSON integer (3 or 3.0), not true/false or "3"."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value if isinstance(value, int) else None


def check_scores(form: QaForm, scores: Mapping[str, Any]) -> tuple[dict[str, int], float]:
    """The scores as whole numbers and their weighted total; a 400 naming every bad entry."""
    low, high = form.scale
    names = [c.name for c in form.criteria]
    problems: list[dict[str, str]] = []
    for name in sorted(set(scores) - set(names)):
        problems.append(
            {
                "field": f"scores.{name}",
                "problem": f"not a criterion of the form {names}",
                "got": _shown(scores[name]),
            }
        )
    valid: dict[str, int] = {}
    for name in names:
        if name not in scores:
            problems.append(
                {"field": f"scores.{name}", "problem": f"missing: every criterion is scored, {low} to {high}"}
            )
            continue
        score = _whole(scores[name])
        if score is None or not low <= score <= high:
            problem = f"expected a whole number from {low} to {high}"
            problems.append({"field": f"scores.{name}", "problem": problem, "got": _shown(scores[name])})
        else:
            valid[name] = score
    if problems:
        summary = "; ".join(
            p["field"] + ": " + p["problem"] + (f" (got {p['got']})" if "got" in p else "") for p in problems
        )
        raise ApiError(400, "invalid_body", f"invalid body: {summary}", details=problems)
    weights = {c.name: c.weight for c in form.criteria}
    total = sum(weights[name] * score for name, score in valid.items()) / sum(weights.values())
    return valid, round(total, 4)


def _shown(value: Any) -> str:
    return json.dumps(value, default=str)[:200]


def _usable(text: str) -> bool:
    """Text PostgreSQL can take: UTF-8 without NUL."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


class QaHandlers:
    """The /api/v1/qa/... endpoints."""

    def __init__(self, form: QaForm, reviews: PostgresReviewStore | None) -> None:
        self.form = form
        self.reviews = reviews

    def _store(self) -> PostgresReviewStore:
        if self.reviews is None:
            raise ApiError(
                503,
                "postgres_not_configured",
                "quality reviews read the sampled calls `acd record` keeps in PostgreSQL, and this API "
                "has no postgres DSN: set ACD_POSTGRES__DSN_FILE (or ACD_POSTGRES__DSN) for `acd api` "
                "and restart it",
            )
        return self.reviews

    async def get_form(self, request: web.Request) -> web.Response:
        return web.json_response(form_json(self.form))

    async def list_reviews(self, request: web.Request) -> web.Response:
        status, agent_id, queue, limit = self._list_query(request.query)
        store = self._store()
        calls = await store.sampled_calls(status, agent_id=agent_id, queue=queue, limit=limit)
        return web.json_response({"status": status, "count": len(calls), "calls": calls})

    def _list_query(self, query: Mapping[str, str]) -> tuple[Status, str | None, str | None, int]:
        status = query.get("status", "pending")
        if status not in STATUSES:
            raise ApiError(400, "invalid_query", f"status = {status!r}: expected one of {list(STATUSES)}")
        raw_limit = query.get("limit", "100")
        limit = int(raw_limit) if raw_limit.isdecimal() else 0
        if not 1 <= limit <= MAX_LIMIT:
            raise ApiError(
                400, "invalid_query", f"limit = {raw_limit!r}: expected a whole number from 1 to {MAX_LIMIT}"
            )
        filters = {name: query.get(name) or None for name in ("agent", "queue")}
        for name, value in filters.items():
            if value is not None and not _usable(value):
                raise ApiError(400, "invalid_query", f"{name} = {value!r}: not a usable name")
        return ("pending" if status == "pending" else "done"), filters["agent"], filters["queue"], limit

    async def post_review(self, request: web.Request) -> web.Response:
        call_id = request.match_info["call_id"]
        body = await read_body(request, ReviewBody)
        scores, total = check_scores(self.form, body.scores)
        store = self._store()
        if not _usable(call_id):
            raise _unknown_call(call_id)
        sampled = await store.sampled(call_id)
        if sampled is None:
            raise _unknown_call(call_id)
        if not sampled:
            raise ApiError(409, "not_sampled", f"call {call_id!r} was not sampled for quality review")
        review = await store.add(call_id, body.reviewer, scores, total, body.comments)
        if review is None:
            raise _unknown_call(call_id)
        logger.info("call %s reviewed by %s: %s", call_id, body.reviewer, total, extra={"call_id": call_id})
        return web.json_response(review.as_json(), status=201)


def _unknown_call(call_id: str) -> ApiError:
    return ApiError(
        404,
        "unknown_call",
        f"no recorded call {call_id!r}: the recorder (acd record) writes a call once it has ended "
        "(GET /api/v1/qa/reviews lists the sampled ones)",
    )
