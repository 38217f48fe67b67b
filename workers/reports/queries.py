"""What the reports read from the recorder's tables (docs/records.md, Tables), one site at a time.

Only rows are read here; what they add up to is figures.py's. PostgreSQL's failures come
out as the project's errors (router/postgres.py): unavailable (retriable), or refused
(no tables yet: `acd db upgrade`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from router.postgres import Pool, postgres_errors
from workers.records.parse import CALL_TABLE
from workers.reports.figures import CallFacts, Review, StateSpan
from workers.reports.request import AbandonedRequest, CallsRequest, Cursor

# A filter given as an array, or NULL for none: one statement serves both.
CALLS = """
SELECT queue, agent_id, entered_at, outcome, answered_at IS NOT NULL AS answered, wait_s, talk_s,
       wrapup_s, sl_threshold_s, answered_within_threshold, abandoned_within_threshold
FROM call_records
WHERE site = $1 AND entered_at >= $2 AND entered_at < $3
  AND ($4::text[] IS NULL OR queue = ANY($4::text[]))
  AND ($5::text[] IS NULL OR agent_id = ANY($5::text[]))
"""
# States that overlap the range. logged_out adds nothing to any figure, and is the state
# that lasts for days (nights, holidays): left out, the rest is hours at most.
STATES = """
SELECT agent_id, state, reason, start_at, end_at
FROM agent_state_records
WHERE site = $1 AND start_at < $3 AND end_at > $2 AND state <> 'logged_out'
  AND ($4::text[] IS NULL OR agent_id = ANY($4::text[]))
"""
REVIEWS = """
SELECT c.agent_id, c.entered_at, r.total
FROM qa_reviews r JOIN call_records c ON c.site = r.site AND c.call_id = r.call_id
WHERE c.site = $1 AND c.entered_at >= $2 AND c.entered_at < $3
  AND c.answered_at IS NOT NULL AND c.agent_id <> '' AND r.total IS NOT NULL
  AND ($4::text[] IS NULL OR c.agent_id = ANY($4::text[]))
"""
# The finished calls API: every column of the call record but record_id, in
# (entered_at, call_id) order, after the cursor; one row more than the page tells
# whether there is a next page.
CALL_COLUMNS = tuple(name for name in CALL_TABLE.column_names if name != "record_id")
FINISHED_CALLS = f"""
SELECT {", ".join(CALL_COLUMNS)}
FROM call_records
WHERE site = $1
  AND ($2::timestamptz IS NULL OR entered_at >= $2) AND ($3::timestamptz IS NULL OR entered_at < $3)
  AND ($4::text[] IS NULL OR queue = ANY($4::text[]))
  AND ($5::text[] IS NULL OR agent_id = ANY($5::text[]))
  AND ($6::text[] IS NULL OR outcome = ANY($6::text[]))
  AND ($7::timestamptz IS NULL OR (entered_at, call_id) > ($7, $8::text))
ORDER BY entered_at, call_id
LIMIT $9
"""

# Callers to call back: abandoned calls with a caller number, newest first (then call_id, the
# page's order), each with the calls the same number made after it entered (any queue) and
# the first answer among them: a caller answered since needs no call back. The index
# call_records_site_caller_entered_at (revision 0004) serves the lookup of later calls.
ABANDONED_COLUMNS = (
    "call_id",
    "queue",
    "caller_number",
    "caller_name",
    "entered_at",
    "abandoned_at",
    "wait_s",
    "abandoned_within_threshold",
    "later_calls",
    "answered_later",
    "answered_later_at",
)
ABANDONED = """
SELECT a.call_id, a.queue, a.caller_number, a.caller_name, a.entered_at, a.ended_at AS abandoned_at,
       a.wait_s, a.abandoned_within_threshold, later.calls AS later_calls,
       later.answered_at IS NOT NULL AS answered_later, later.answered_at AS answered_later_at
FROM call_records a
CROSS JOIN LATERAL (
    SELECT count(*) AS calls, min(l.answered_at) AS answered_at
    FROM call_records l
    WHERE l.site = a.site AND l.caller_number = a.caller_number AND l.entered_at > a.entered_at
) later
WHERE a.site = $1 AND a.outcome = 'abandoned' AND a.caller_number <> ''
  AND a.entered_at >= $2 AND a.entered_at < $3
  AND ($4::text[] IS NULL OR a.queue = ANY($4::text[]))
  AND ($5::boolean IS NULL OR (later.answered_at IS NULL) = $5)
  AND ($6::timestamptz IS NULL OR (a.entered_at, a.call_id) < ($6, $7::text))
ORDER BY a.entered_at DESC, a.call_id DESC
LIMIT $8
"""


def _filter(values: Sequence[str]) -> list[str] | None:
    return list(values) or None


class ReportQueries:
    """Reads one site's records for a time range."""

    def __init__(self, pool: Pool, where: str, site: str) -> None:
        self.pool = pool
        self.where = where
        self.site = site

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        with postgres_errors(self.where):
            return list(await self.pool.fetch(sql, *args))

    async def calls(
        self, start: datetime, end: datetime, queues: Sequence[str] = (), agents: Sequence[str] = ()
    ) -> list[CallFacts]:
        """Calls that entered in [start, end)."""
        rows = await self._fetch(CALLS, self.site, start, end, _filter(queues), _filter(agents))
        return [CallFacts(**dict(row)) for row in rows]

    async def states(self, start: datetime, end: datetime, agents: Sequence[str] = ()) -> list[StateSpan]:
        """Agent states (but logged_out) that overlap [start, end), whole: figures.py clips them."""
        rows = await self._fetch(STATES, self.site, start, end, _filter(agents))
        return [
            StateSpan(row["agent_id"], row["state"], row["reason"], row["start_at"], row["end_at"])
            for row in rows
        ]

    async def reviews(self, start: datetime, end: datetime, agents: Sequence[str] = ()) -> list[Review]:
        """Scored quality reviews of answered calls that entered in [start, end)."""
        rows = await self._fetch(REVIEWS, self.site, start, end, _filter(agents))
        return [Review(row["agent_id"], row["entered_at"], float(row["total"])) for row in rows]

    async def finished_calls(self, request: CallsRequest) -> tuple[list[dict[str, Any]], Cursor | None]:
        """A page of finished calls, and the cursor of the next page (None: this is the last)."""
        after = request.after
        rows = await self._fetch(
            FINISHED_CALLS,
            self.site,
            request.start,
            request.end,
            _filter(request.queues),
            _filter(request.agents),
            _filter(request.outcomes),
            None if after is None else after.entered_at,
            None if after is None else after.call_id,
            request.limit + 1,
        )
        page = [dict(row) for row in rows[: request.limit]]
        more = len(rows) > request.limit
        return page, Cursor(page[-1]["entered_at"], page[-1]["call_id"]) if more else None

    async def abandoned(self, request: AbandonedRequest) -> tuple[list[dict[str, Any]], Cursor | None]:
        """A page of abandoned callers, newest first, and the cursor of the next page (None: last)."""
        after, limit = request.after, request.limit
        rows = await self._fetch(
            ABANDONED,
            self.site,
            request.start,
            request.end,
            _filter(request.queues),
            request.needs_callback,
            None if after is None else after.entered_at,
            None if after is None else after.call_id,
            None if limit is None else limit + 1,
        )
        page = [dict(row) for row in (rows if limit is None else rows[:limit])]
        more = limit is not None and len(rows) > limit
        return page, Cursor(page[-1]["entered_at"], page[-1]["call_id"]) if more else None
