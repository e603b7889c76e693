"""Marketing only with a separate, revocable consent (issue 12): every yes and no of a member
(marketing_consents), the offers operators sent (marketing_offers), and the outbox's `dropped`
status for a marketing message whose consent was withdrawn before it went.

Revision ID: 0006_marketing
Revises: 0004_sms
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_marketing"
down_revision = "0005_interest"
branch_labels = None
depends_on = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UTC = sa.DateTime(timezone=True)
# Spelt out here, as storage/models.py has them today: a later model change cannot alter this revision.
STATUSES_BEFORE = "status IN ('pending', 'sent', 'dead')"
STATUSES_AFTER = "status IN ('pending', 'sent', 'dead', 'dropped')"


def upgrade() -> None:
    op.create_table(
        "marketing_consents",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("member_id", BIGINT, nullable=False),
        sa.Column("granted", sa.Boolean(), nullable=False),
        sa.Column("via", sa.String(16), nullable=False),
        sa.Column("operator_id", BIGINT, nullable=True),
        sa.Column("at", UTC, nullable=False),
        sa.CheckConstraint("(via = 'console') = (operator_id IS NOT NULL)", name=op.f("ck_marketing_consents_console_operator")),
        sa.CheckConstraint("via IN ('chat', 'console', 'unfollow')", name=op.f("ck_marketing_consents_via")),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"], name=op.f("fk_marketing_consents_member_id_members")),
        sa.ForeignKeyConstraint(["operator_id"], ["operators.id"], name=op.f("fk_marketing_consents_operator_id_operators")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_marketing_consents")),
    )
    op.create_index("ix_marketing_consents_member_latest", "marketing_consents", ["member_id", "id"])
    op.create_table(
        "marketing_offers",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("sender", sa.String(50), nullable=False),
        sa.Column("texts", sa.JSON(), nullable=False),
        sa.Column("operator_id", BIGINT, nullable=False),
        sa.Column("recipients", sa.Integer(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.CheckConstraint("recipients >= 0", name=op.f("ck_marketing_offers_recipients_nonneg")),
        sa.ForeignKeyConstraint(["operator_id"], ["operators.id"], name=op.f("fk_marketing_offers_operator_id_operators")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_marketing_offers")),
    )
    op.create_index(op.f("ix_marketing_offers_created_at"), "marketing_offers", ["created_at"])
    _outbox_statuses(STATUSES_AFTER)


def downgrade() -> None:
    # A dropped message was settled unsent: as the older schema knows no such status, it stays dead.
    op.execute("UPDATE outbox SET status = 'dead' WHERE status = 'dropped'")
    _outbox_statuses(STATUSES_BEFORE)
    op.drop_index(op.f("ix_marketing_offers_created_at"), table_name="marketing_offers")
    op.drop_table("marketing_offers")
    op.drop_index("ix_marketing_consents_member_latest", table_name="marketing_consents")
    op.drop_table("marketing_consents")


def _outbox_statuses(check: str) -> None:
    """The outbox's status check, replaced (SQLite copies the table to do it)."""
    with op.batch_alter_table("outbox") as batch:
        batch.drop_constraint(op.f("ck_outbox_status"), type_="check")
        batch.create_check_constraint(op.f("ck_outbox_status"), check)
