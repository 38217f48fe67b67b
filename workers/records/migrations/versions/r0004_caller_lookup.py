"""Call records by caller: the abandoned callers' list looks up each caller's later calls
(docs/reports.md, Abandoned callers to call back).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "call_records_site_caller_entered_at", "call_records", ["site", "caller_number", "entered_at"]
    )


def downgrade() -> None:
    op.drop_index("call_records_site_caller_entered_at", table_name="call_records")
