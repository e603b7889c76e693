"""charges.held_fen: what an order holds on the line, its self-pay estimate or the policy's share.

Revision ID: 0003_selfpay
Revises: 0002
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_selfpay"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("charges") as batch:
        batch.add_column(sa.Column("held_fen", sa.Integer(), server_default="0", nullable=False))
    # Until now an order on credit held its whole price.
    op.execute("UPDATE charges SET held_fen = amount_fen WHERE status NOT IN ('prepaid', 'off_credit')")
    with op.batch_alter_table("charges") as batch:
        batch.create_check_constraint(op.f("ck_charges_held_range"), "held_fen >= 0 AND held_fen <= amount_fen")


def downgrade() -> None:
    with op.batch_alter_table("charges") as batch:
        batch.drop_constraint(op.f("ck_charges_held_range"), type_="check")
        batch.drop_column("held_fen")
