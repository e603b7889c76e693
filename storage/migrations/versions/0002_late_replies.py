"""wechat_messages.send_after: late replies a dead worker left unsent are sent by another.

Revision ID: 0002
Revises: 0001
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("wechat_messages", sa.Column("send_after", sa.DateTime(timezone=True)))
    op.create_index(op.f("ix_wechat_messages_send_after"), "wechat_messages", ["send_after"])


def downgrade() -> None:
    op.drop_index(op.f("ix_wechat_messages_send_after"), table_name="wechat_messages")
    with op.batch_alter_table("wechat_messages") as batch:
        batch.drop_column("send_after")
