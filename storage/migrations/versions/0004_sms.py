"""An index for the per-phone SMS limit (bot/wechat_sender.py): the SMS the outbox sent to one
member lately are read by member, kind and time, not by scanning every message ever sent.

Revision ID: 0004_sms
Revises: 0003_stats
"""
from __future__ import annotations

from alembic import op

revision = "0004_sms"
down_revision = "0003_stats"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_outbox_member_sent", "outbox", ["member_id", "kind", "sent_at"])


def downgrade() -> None:
    op.drop_index("ix_outbox_member_sent", table_name="outbox")
