"""Quality reviews in PostgreSQL: the sampled calls reviewers grade and the reviews they give.

Sampled calls are the recorder's ``call_records`` rows with ``qa_sampled`` (written once the
call has ended: `acd record`, docs/records.md); a review is a row of ``qa_reviews``. A call
is *pending* until it has a review and *done* once it has one (a call may be reviewed more
than once: a second reviewer, a calibration session). Every statement is one round trip;
PostgreSQL's failures come out as the project's errors (router.postgres).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg

from router.errors import RecordRejectedError
from router.postgres import Pool, postgres_errors

Status = Literal["pending", "done"]

_REVIEWS = """
COALESCE((
  SELECT json_agg(json_build_object(
    'id', r.id, 'reviewer', r.reviewer, 'scores', r.scores, 'total', r.total,
    'comments', r.comments, 'created_at', extract(epoch FROM r.created_at)::float8) ORDER BY r.id)
  FROM qa_reviews r WHERE r.site = c.site AND r.call_id = c.call_id), '[]'::json)
"""
_REVIEWED = "EXISTS (SELECT 1 FROM qa_reviews r WHERE r.site = c.site AND r.call_id = c.call_id)"
_LAST_REVIEW = "(SELECT max(r.created_at) FROM qa_reviews r WHERE r.site = c.site AND r.call_id = c.call_id)"


def _list_sql(status: Status) -> str:
    # Pending: oldest first (the reviewers' queue). Done: the latest reviewed first.
    where, order = (
        (f"NOT {_REVIEWED}", "c.answered_at, c.call_id")
        if status == "pending"
        else (
            _REVIEWED,
            f"{_LAST_REVIEW} DESC, c.call_id",
        )
    )
    return f"""
SELECT c.call_id, c.segment, c.queue, c.agent_id, c.outcome,
       extract(epoch FROM c.entered_at)::float8 AS entered_at,
       extract(epoch FROM c.answered_at)::float8 AS answered_at,
       extract(epoch FROM c.ended_at)::float8 AS ended_at,
       c.wait_s, c.talk_s, c.recording, c.qa_reason, {_REVIEWS} AS reviews
FROM call_records c
WHERE c.site = $1 AND c.qa_sampled AND {where}
  AND ($2::text IS NULL OR c.agent_id = $2) AND ($3::text IS NULL OR c.queue = $3)
ORDER BY {order}
LIMIT $4
"""


LIST_SQL: dict[Status, str] = {"pending": _list_sql("pending"), "done": _list_sql("done")}
SAMPLED_SQL = "SELECT qa_sampled FROM call_records WHERE site = $1 AND call_id = $2"
INSERT_SQL = """
INSERT INTO qa_reviews (site, call_id, reviewer, scores, total, comments)
VALUES ($1, $2, $3, $4::jsonb, $5, $6)
RETURNING id, extract(epoch FROM created_at)::float8 AS created_at
"""


@dataclass(frozen=True, slots=True)
class Review:
    """One review of a sampled call."""

    id: int
    call_id: str
    reviewer: str
    scores: dict[str, int]
    total: float
    comments: str
    created_at: float

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "call_id": self.call_id,
            "reviewer": self.reviewer,
            "scores": self.scores,
            "total": self.total,
            "comments": self.comments,
            "created_at": self.created_at,
        }


def _call(row: asyncpg.Record) -> dict[str, Any]:
    call = {name: value for name, value in row.items() if name != "reviews"}  # a Record iterates values
    reviews = row["reviews"]
    call["reviews"] = json.loads(reviews) if isinstance(reviews, str) else reviews
    return call


class PostgresReviewStore:
    """A site's sampled calls and their reviews."""

    def __init__(self, pool: Pool, where: str, site: str) -> None:
        self.pool = pool
        self.where = where
        self.site = site

    async def sampled_calls(
        self, status: Status, *, agent_id: str | None = None, queue: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Sampled calls without a review (``pending``) or with one (``done``, with its reviews)."""
        with postgres_errors(self.where):
            rows = await self.pool.fetch(LIST_SQL[status], self.site, agent_id, queue, limit)
        return [_call(row) for row in rows]

    async def sampled(self, call_id: str) -> bool | None:
        """Whether the recorded call was sampled; None when no such call is recorded."""
        with postgres_errors(self.where):
            found = await self.pool.fetchval(SAMPLED_SQL, self.site, call_id)
        return None if found is None else bool(found)

    async def add(
        self, call_id: str, reviewer: str, scores: Mapping[str, int], total: float, comments: str
    ) -> Review | None:
        """Store a review; None when the call's record is gone meanwhile (deleted with it)."""
        try:
            with postgres_errors(self.where):
                row = await self.pool.fetchrow(
                    INSERT_SQL, self.site, call_id, reviewer, json.dumps(dict(scores)), total, comments
                )
        except RecordRejectedError as exc:
            if isinstance(exc.__cause__, asyncpg.ForeignKeyViolationError):
                return None
            raise
        if row is None:  # INSERT ... RETURNING always returns its row
            raise RuntimeError("INSERT INTO qa_reviews returned no row")
        return Review(
            int(row["id"]), call_id, reviewer, dict(scores), total, comments, float(row["created_at"])
        )
