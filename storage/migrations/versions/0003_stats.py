"""Indexes on the times the programme's figures count by (billing/reports.py): a date range
reads its own rows, not the whole table.

Revision ID: 0003_stats
Revises: 0003_console
"""
from __future__ import annotations

from alembic import op

revision = "0003_stats"
down_revision = "0003_console"
branch_labels = None
depends_on = None

INDEXED = (("members", "commitment_signed_at"), ("visits", "created_at"), ("bills", "issued_at"), ("bills", "advanced_at"),
           ("payments", "created_at"), ("status_changes", "at"))


def upgrade() -> None:
    for table, column in INDEXED:
        op.create_index(op.f(f"ix_{table}_{column}"), table, [column])


def downgrade() -> None:
    for table, column in reversed(INDEXED):
        op.drop_index(op.f(f"ix_{table}_{column}"), table_name=table)
