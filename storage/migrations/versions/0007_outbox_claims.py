"""The outbox senders' claims read only their lane's pending messages (issue 14): a partial index
for each lane, on id, where the message is pending, so a claim no longer reads the outbox's whole
history of sent messages and of events waiting for a receiver.

Revision ID: 0007_outbox_claims
Revises: 0006_marketing
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_outbox_claims"
down_revision = "0006_marketing"
branch_labels = None
depends_on = None

# Spelt out here, as storage/models.py has them today: a later model change cannot alter this revision.
LANES_PENDING = {"notices": "status = 'pending' AND kind <> 'event'",
                 "events": "status = 'pending' AND kind = 'event'"}


def upgrade() -> None:
    for lane, where in LANES_PENDING.items():
        op.create_index(f"ix_outbox_pending_{lane}", "outbox", ["id"],
                        postgresql_where=sa.text(where), sqlite_where=sa.text(where))


def downgrade() -> None:
    for lane in LANES_PENDING:
        op.drop_index(f"ix_outbox_pending_{lane}", table_name="outbox")
