"""The operator console: operators, the staff a community account covers, the append-only
audit log (the database refuses UPDATE and DELETE on it), and bills.disputed_at.

Revision ID: 0003_console
Revises: 0003_selfpay
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_console"
down_revision = "0003_selfpay"
branch_labels = None
depends_on = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UTC = sa.DateTime(timezone=True)
# Spelt out here, as storage/models.py has them today: a later model change cannot alter this revision.
GUARDS = {
    "sqlite": [
        f"CREATE TRIGGER audit_log_no_{verb.lower()} BEFORE {verb} ON audit_log "
        "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"
        for verb in ("UPDATE", "DELETE")
    ],
    "postgresql": [
        "CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$",
        "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log "
        "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()",
    ],
}
GUARDS_DROP = {
    "sqlite": ["DROP TRIGGER audit_log_no_update", "DROP TRIGGER audit_log_no_delete"],
    "postgresql": ["DROP TRIGGER audit_log_append_only ON audit_log", "DROP FUNCTION audit_log_append_only()"],
}


def upgrade() -> None:
    op.create_table(
        "operators",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("hospital_id", BIGINT, nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        sa.Column("locked_until", UTC, nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.CheckConstraint("role IN ('operator', 'hospital', 'community', 'auditor')", name=op.f("ck_operators_role")),
        sa.CheckConstraint("(role = 'hospital') = (hospital_id IS NOT NULL)", name=op.f("ck_operators_hospital_role")),
        sa.CheckConstraint("failed_logins >= 0", name=op.f("ck_operators_failed_nonneg")),
        sa.ForeignKeyConstraint(["hospital_id"], ["hospitals.id"], name=op.f("fk_operators_hospital_id_hospitals")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operators")),
        sa.UniqueConstraint("username", name=op.f("uq_operators_username")),
    )
    op.create_table(
        "operator_staff",
        sa.Column("operator_id", BIGINT, nullable=False),
        sa.Column("staff_id", BIGINT, nullable=False),
        sa.ForeignKeyConstraint(["operator_id"], ["operators.id"], name=op.f("fk_operator_staff_operator_id_operators")),
        sa.ForeignKeyConstraint(["staff_id"], ["staff.id"], name=op.f("fk_operator_staff_staff_id_staff")),
        sa.PrimaryKeyConstraint("operator_id", "staff_id", name=op.f("pk_operator_staff")),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("at", UTC, nullable=False),
        sa.Column("operator_id", BIGINT, nullable=True),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("target", sa.String(80), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["operator_id"], ["operators.id"], name=op.f("fk_audit_log_operator_id_operators")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index(op.f("ix_audit_log_at"), "audit_log", ["at"])
    op.create_index(op.f("ix_audit_log_target"), "audit_log", ["target"])
    for statement in GUARDS[op.get_bind().dialect.name]:
        op.execute(statement)
    op.add_column("bills", sa.Column("disputed_at", UTC, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("bills") as batch:
        batch.drop_column("disputed_at")
    for statement in GUARDS_DROP[op.get_bind().dialect.name]:
        op.execute(statement)
    op.drop_index(op.f("ix_audit_log_target"), table_name="audit_log")
    op.drop_index(op.f("ix_audit_log_at"), table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_table("operator_staff")
    op.drop_table("operators")
