"""Call records, agent-state records and quality reviews (docs/records.md, Tables).

Revision ID: 0001
Revises: (none)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import DOUBLE_PRECISION, JSONB, TIMESTAMP

revision = "0001"
down_revision: str | None = None
branch_labels = None
depends_on = None

TIME = TIMESTAMP(timezone=True)


def _text(name: str) -> sa.Column[str]:
    return sa.Column(name, sa.Text, nullable=False)


def _seconds(name: str, *, nullable: bool = False) -> sa.Column[float]:
    return sa.Column(name, DOUBLE_PRECISION, nullable=nullable)


def _recorded_at() -> sa.Column[object]:
    return sa.Column("recorded_at", TIME, nullable=False, server_default=sa.func.now())


def upgrade() -> None:
    op.create_table(
        "call_records",
        _text("site"),
        _text("call_id"),
        _text("record_id"),
        sa.Column("revision", sa.Integer, nullable=False),
        _text("queue"),
        _text("first_queue"),
        sa.Column("priority", sa.Integer, nullable=False),
        _text("caller_number"),
        _text("caller_name"),
        sa.Column("entered_at", TIME, nullable=False),
        sa.Column("first_offered_at", TIME, nullable=True),
        sa.Column("answered_at", TIME, nullable=True),
        sa.Column("ended_at", TIME, nullable=False),
        _text("outcome"),
        _seconds("wait_s"),
        _seconds("talk_s"),
        _seconds("wrapup_s", nullable=True),
        _text("agent_id"),
        sa.Column("offers", sa.Integer, nullable=False),
        sa.Column("ring_no_answers", sa.Integer, nullable=False),
        _text("requirements"),
        _text("decision_reason"),
        _seconds("sl_threshold_s"),
        sa.Column("answered_within_threshold", sa.Boolean, nullable=False),
        sa.Column("abandoned_within_threshold", sa.Boolean, nullable=False),
        _text("recording"),
        sa.Column("qa_sampled", sa.Boolean, nullable=False),
        _recorded_at(),
        sa.PrimaryKeyConstraint("site", "call_id", name="call_records_pkey"),
        sa.CheckConstraint("revision >= 1", name="call_records_revision_check"),
    )
    # Interval reports: a time range, per queue or per agent.
    op.create_index("call_records_queue_entered_at", "call_records", ["queue", "entered_at"])
    op.create_index("call_records_agent_entered_at", "call_records", ["agent_id", "entered_at"])
    op.create_index("call_records_entered_at", "call_records", ["entered_at"])

    op.create_table(
        "agent_state_records",
        _text("record_id"),
        _text("site"),
        _text("agent_id"),
        _text("state"),
        _text("reason"),
        sa.Column("start_at", TIME, nullable=False),
        sa.Column("end_at", TIME, nullable=False),
        _seconds("duration_s"),
        _recorded_at(),
        sa.PrimaryKeyConstraint("record_id", name="agent_state_records_pkey"),
    )
    op.create_index("agent_state_records_agent_start_at", "agent_state_records", ["agent_id", "start_at"])
    op.create_index("agent_state_records_start_at", "agent_state_records", ["start_at"])

    op.create_table(
        "qa_reviews",
        sa.Column("id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
        _text("site"),
        _text("call_id"),
        _text("reviewer"),
        sa.Column("scores", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("total", DOUBLE_PRECISION, nullable=True),
        sa.Column("comments", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", TIME, nullable=False, server_default=sa.func.now()),
        sa.ForeignKeyConstraint(
            ["site", "call_id"],
            ["call_records.site", "call_records.call_id"],
            name="qa_reviews_call_fkey",
            ondelete="CASCADE",
        ),
    )
    op.create_index("qa_reviews_call", "qa_reviews", ["site", "call_id"])
    op.create_index("qa_reviews_reviewer_created_at", "qa_reviews", ["reviewer", "created_at"])


def downgrade() -> None:
    op.drop_table("qa_reviews")
    op.drop_table("agent_state_records")
    op.drop_table("call_records")
