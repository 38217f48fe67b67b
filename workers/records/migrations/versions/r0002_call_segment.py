"""Call records: ``segment`` and ``queue_entered_at`` (docs/records.md, added to the call record).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import TIMESTAMP

revision = "0002"
down_revision: str | None = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Rows recorded before take the contract's defaults: the first visit, and no
    # queue_entered_at (null reads as entered_at).
    op.add_column("call_records", sa.Column("segment", sa.Integer, nullable=False, server_default="1"))
    op.add_column("call_records", sa.Column("queue_entered_at", TIMESTAMP(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("call_records", "queue_entered_at")
    op.drop_column("call_records", "segment")
