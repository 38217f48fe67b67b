"""Call records: ``qa_reason`` (why a call was sampled for review), and an index of the
sampled calls for the reviews' lists (docs/quality.md).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Rows recorded before take the contract's default: not sampled, or sampled for no
    # reason the router said.
    op.add_column("call_records", sa.Column("qa_reason", sa.Text, nullable=False, server_default=""))
    # The reviews API lists a site's sampled calls by time; few calls are sampled.
    op.create_index(
        "call_records_qa_sampled",
        "call_records",
        ["site", "answered_at"],
        postgresql_where=sa.text("qa_sampled"),
    )


def downgrade() -> None:
    op.drop_index("call_records_qa_sampled", table_name="call_records")
    op.drop_column("call_records", "qa_reason")
