"""Financial institutions and their interest (seed 004): the institution a member chose; on a bill,
the terms it was issued under and the interest accrued and paid; on a cashier trade, the interest
of its quote. Rows from before have none: no institution, no interest.

Revision ID: 0005_interest
Revises: 0004_sms
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_interest"
down_revision = "0004_sms"
branch_labels = None
depends_on = None

# The column types of storage/models.py, spelt out so that later model changes cannot alter this revision.
BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("members") as batch:
        batch.add_column(sa.Column("institution", sa.String(32)))
    with op.batch_alter_table("bills") as batch:
        batch.add_column(sa.Column("institution", sa.String(32)))
        batch.add_column(sa.Column("daily_interest_ppm", sa.Integer(), server_default="0", nullable=False))
        batch.add_column(sa.Column("interest_fen", BIGINT, server_default="0", nullable=False))
        batch.add_column(sa.Column("interest_paid_fen", BIGINT, server_default="0", nullable=False))
        batch.add_column(sa.Column("interest_through", UTC))
    with op.batch_alter_table("bills") as batch:
        batch.create_check_constraint(op.f("ck_bills_interest_paid_range"),
                                      "interest_paid_fen >= 0 AND interest_paid_fen <= interest_fen")
        batch.create_check_constraint(op.f("ck_bills_interest_ppm_nonneg"), "daily_interest_ppm >= 0")
    with op.batch_alter_table("trades") as batch:
        batch.add_column(sa.Column("interest_fen", BIGINT, server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("trades") as batch:
        batch.drop_column("interest_fen")
    with op.batch_alter_table("bills") as batch:
        batch.drop_constraint(op.f("ck_bills_interest_ppm_nonneg"), type_="check")
        batch.drop_constraint(op.f("ck_bills_interest_paid_range"), type_="check")
        for column in ("interest_through", "interest_paid_fen", "interest_fen", "daily_interest_ppm", "institution"):
            batch.drop_column(column)
    with op.batch_alter_table("members") as batch:
        batch.drop_column("institution")
