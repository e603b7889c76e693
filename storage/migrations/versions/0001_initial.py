"""The initial schema: every table of storage/models.py at the first release.

Revision ID: 0001
Revises:
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# The column types of storage/models.py, spelt out so that later model changes cannot alter this revision.
BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UTC = sa.DateTime(timezone=True)
TABLES = (
    "api_nonces",
    "conversations",
    "hospitals",
    "idempotency_keys",
    "staff",
    "wechat_messages",
    "wechat_tokens",
    "wechat_unreachable",
    "wechat_user_leases",
    "members",
    "slots",
    "bookings",
    "credit_lines",
    "family_links",
    "outbox",
    "status_changes",
    "visits",
    "bills",
    "charges",
    "payments",
    "reminders",
    "trades",
    "refunds",
)


def upgrade() -> None:
    op.create_table(
        "api_nonces",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("hospital_code", sa.String(32), nullable=False),
        sa.Column("nonce", sa.String(64), nullable=False),
        sa.Column("at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_nonces")),
        sa.UniqueConstraint("hospital_code", "nonce", name=op.f("uq_api_nonces_hospital_code_nonce")),
    )
    op.create_index(op.f("ix_api_nonces_at"), "api_nonces", ["at"])

    op.create_table(
        "conversations",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("openid", sa.String(64), nullable=False),
        sa.Column("state", sa.String(64)),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("locale", sa.String(16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.Column("expires_at", UTC),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conversations")),
        sa.UniqueConstraint("openid", name=op.f("uq_conversations_openid")),
    )

    op.create_table(
        "hospitals",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("secret_enc", sa.Text(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hospitals")),
        sa.UniqueConstraint("code", name=op.f("uq_hospitals_code")),
    )

    op.create_table(
        "idempotency_keys",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("scope", sa.String(64), nullable=False),
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("response", sa.JSON()),
        sa.Column("created_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_idempotency_keys")),
        sa.UniqueConstraint("scope", "key", name=op.f("uq_idempotency_keys_scope_key")),
    )

    op.create_table(
        "staff",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("openid", sa.String(64), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff")),
        sa.UniqueConstraint("openid", name=op.f("uq_staff_openid")),
    )

    op.create_table(
        "wechat_messages",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("dedupe_key", sa.String(128), nullable=False),
        sa.Column("openid", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("replies", sa.JSON()),
        sa.Column("received_at", UTC, nullable=False),
        sa.CheckConstraint("status IN ('processing', 'done', 'deferred', 'delivered')", name=op.f("ck_wechat_messages_status")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wechat_messages")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_wechat_messages_dedupe_key")),
    )
    op.create_index(op.f("ix_wechat_messages_received_at"), "wechat_messages", ["received_at"])

    op.create_table(
        "wechat_tokens",
        sa.Column("appid", sa.String(32), nullable=False),
        sa.Column("access_token", sa.Text()),
        sa.Column("expires_at", UTC),
        sa.Column("refresher", sa.String(64)),
        sa.Column("refresh_until", UTC),
        sa.PrimaryKeyConstraint("appid", name=op.f("pk_wechat_tokens")),
    )

    op.create_table(
        "wechat_unreachable",
        sa.Column("openid", sa.String(64), nullable=False),
        sa.Column("errcode", sa.Integer(), nullable=False),
        sa.Column("at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("openid", name=op.f("pk_wechat_unreachable")),
    )

    op.create_table(
        "wechat_user_leases",
        sa.Column("openid", sa.String(64), nullable=False),
        sa.Column("holder", sa.String(64)),
        sa.Column("until", UTC),
        sa.PrimaryKeyConstraint("openid", name=op.f("pk_wechat_user_leases")),
    )

    op.create_table(
        "members",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("openid", sa.String(64)),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("id_number_enc", sa.Text(), nullable=False),
        sa.Column("id_number_hmac", sa.String(64), nullable=False),
        sa.Column("phone_enc", sa.Text()),
        sa.Column("phone_hmac", sa.String(64)),
        sa.Column("birth_date", sa.Date(), nullable=False),
        sa.Column("region", sa.String(6)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("locale", sa.String(16), nullable=False),
        sa.Column("consent_version", sa.String(32)),
        sa.Column("consent_at", UTC),
        sa.Column("commitment_version", sa.String(32)),
        sa.Column("commitment_signed_at", UTC),
        sa.Column("value_added", sa.Boolean(), nullable=False),
        sa.Column("malicious_debt", sa.Boolean(), nullable=False),
        sa.Column("onboarded_by_staff_id", BIGINT),
        sa.Column("status_changed_at", UTC),
        sa.Column("repaired_at", UTC),
        sa.Column("created_at", UTC, nullable=False),
        sa.CheckConstraint("status IN ('prospect', 'active', 'suspended', 'revoked', 'blacklisted', 'cancelled')", name=op.f("ck_members_status")),
        sa.ForeignKeyConstraint(["onboarded_by_staff_id"], ["staff.id"], name=op.f("fk_members_onboarded_by_staff_id_staff")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_members")),
        sa.UniqueConstraint("id_number_hmac", name=op.f("uq_members_id_number_hmac")),
        sa.UniqueConstraint("openid", name=op.f("uq_members_openid")),
    )
    op.create_index(op.f("ix_members_phone_hmac"), "members", ["phone_hmac"])

    op.create_table(
        "slots",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("hospital_id", BIGINT, nullable=False),
        sa.Column("department", sa.String(100), nullable=False),
        sa.Column("doctor", sa.String(100), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("start", sa.String(5), nullable=False),
        sa.Column("end", sa.String(5), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("booked", sa.Integer(), nullable=False),
        sa.Column("fee_fen", BIGINT, nullable=False),
        sa.CheckConstraint("booked >= 0 AND booked <= capacity", name=op.f("ck_slots_booked_range")),
        sa.CheckConstraint("capacity > 0", name=op.f("ck_slots_capacity_pos")),
        sa.CheckConstraint("fee_fen >= 0", name=op.f("ck_slots_fee_nonneg")),
        sa.ForeignKeyConstraint(["hospital_id"], ["hospitals.id"], name=op.f("fk_slots_hospital_id_hospitals")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_slots")),
        sa.UniqueConstraint("hospital_id", "department", "doctor", "day", "start", name=op.f("uq_slots_hospital_id_department_doctor_day_start")),
    )

    op.create_table(
        "bookings",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("slot_id", BIGINT, nullable=False),
        sa.Column("booker_id", BIGINT, nullable=False),
        sa.Column("patient_id", BIGINT, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("visit_no", sa.String(64), nullable=False),
        sa.Column("charge_no", sa.String(64), nullable=False),
        sa.Column("fee_fen", BIGINT, nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("cancelled_at", UTC),
        sa.CheckConstraint("status IN ('booked', 'cancelled')", name=op.f("ck_bookings_status")),
        sa.CheckConstraint("fee_fen >= 0", name=op.f("ck_bookings_fee_nonneg")),
        sa.ForeignKeyConstraint(["booker_id"], ["members.id"], name=op.f("fk_bookings_booker_id_members")),
        sa.ForeignKeyConstraint(["patient_id"], ["members.id"], name=op.f("fk_bookings_patient_id_members")),
        sa.ForeignKeyConstraint(["slot_id"], ["slots.id"], name=op.f("fk_bookings_slot_id_slots")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bookings")),
        sa.UniqueConstraint("visit_no", name=op.f("uq_bookings_visit_no")),
    )
    op.create_index(op.f("ix_bookings_booker_id"), "bookings", ["booker_id"])
    op.create_index(op.f("ix_bookings_patient_id"), "bookings", ["patient_id"])
    op.create_index(op.f("ix_bookings_slot_id"), "bookings", ["slot_id"])
    op.create_index("uq_bookings_live", "bookings", ["patient_id", "slot_id"], unique=True, sqlite_where=sa.text("status = 'booked'"), postgresql_where=sa.text("status = 'booked'"))

    op.create_table(
        "credit_lines",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("member_id", BIGINT, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("limit_fen", BIGINT, nullable=False),
        sa.Column("used_fen", BIGINT, nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.CheckConstraint("kind IN ('outpatient', 'inpatient')", name=op.f("ck_credit_lines_kind")),
        sa.CheckConstraint("limit_fen >= 0", name=op.f("ck_credit_lines_limit_nonneg")),
        sa.CheckConstraint("used_fen >= 0", name=op.f("ck_credit_lines_used_nonneg")),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"], name=op.f("fk_credit_lines_member_id_members")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_lines")),
        sa.UniqueConstraint("member_id", "kind", name=op.f("uq_credit_lines_member_id_kind")),
    )

    op.create_table(
        "family_links",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("payer_id", BIGINT, nullable=False),
        sa.Column("dependent_id", BIGINT, nullable=False),
        sa.Column("relation", sa.String(16), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.CheckConstraint("relation IN ('parent', 'child', 'spouse')", name=op.f("ck_family_links_relation")),
        sa.CheckConstraint("payer_id <> dependent_id", name=op.f("ck_family_links_not_self")),
        sa.ForeignKeyConstraint(["dependent_id"], ["members.id"], name=op.f("fk_family_links_dependent_id_members")),
        sa.ForeignKeyConstraint(["payer_id"], ["members.id"], name=op.f("fk_family_links_payer_id_members")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_family_links")),
        sa.UniqueConstraint("payer_id", "dependent_id", name=op.f("uq_family_links_payer_id_dependent_id")),
    )
    op.create_index(op.f("ix_family_links_dependent_id"), "family_links", ["dependent_id"])
    op.create_index(op.f("ix_family_links_payer_id"), "family_links", ["payer_id"])

    op.create_table(
        "outbox",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("dedupe_key", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("member_id", BIGINT),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text()),
        sa.Column("next_attempt_at", UTC, nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("sent_at", UTC),
        sa.CheckConstraint("status IN ('pending', 'sent', 'dead')", name=op.f("ck_outbox_status")),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"], name=op.f("fk_outbox_member_id_members")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_outbox_dedupe_key")),
    )
    op.create_index("ix_outbox_due", "outbox", ["status", "next_attempt_at"])

    op.create_table(
        "status_changes",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("member_id", BIGINT, nullable=False),
        sa.Column("from_status", sa.String(16), nullable=False),
        sa.Column("to_status", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("at", UTC, nullable=False),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"], name=op.f("fk_status_changes_member_id_members")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_status_changes")),
    )
    op.create_index(op.f("ix_status_changes_member_id"), "status_changes", ["member_id"])

    op.create_table(
        "visits",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("hospital_id", BIGINT, nullable=False),
        sa.Column("visit_no", sa.String(64), nullable=False),
        sa.Column("patient_id", BIGINT),
        sa.Column("line_id", BIGINT),
        sa.Column("department", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("exclusion", sa.String(32)),
        sa.Column("on_credit", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.CheckConstraint("kind IN ('outpatient', 'emergency', 'inpatient')", name=op.f("ck_visits_kind")),
        sa.CheckConstraint("status IN ('open', 'checked_out')", name=op.f("ck_visits_status")),
        sa.ForeignKeyConstraint(["hospital_id"], ["hospitals.id"], name=op.f("fk_visits_hospital_id_hospitals")),
        sa.ForeignKeyConstraint(["line_id"], ["credit_lines.id"], name=op.f("fk_visits_line_id_credit_lines")),
        sa.ForeignKeyConstraint(["patient_id"], ["members.id"], name=op.f("fk_visits_patient_id_members")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_visits")),
        sa.UniqueConstraint("hospital_id", "visit_no", name=op.f("uq_visits_hospital_id_visit_no")),
    )
    op.create_index(op.f("ix_visits_line_id"), "visits", ["line_id"])
    op.create_index(op.f("ix_visits_patient_id"), "visits", ["patient_id"])

    op.create_table(
        "bills",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("bill_no", sa.String(40), nullable=False),
        sa.Column("visit_id", BIGINT, nullable=False),
        sa.Column("payer_id", BIGINT, nullable=False),
        sa.Column("line_id", BIGINT, nullable=False),
        sa.Column("self_pay_fen", BIGINT, nullable=False),
        sa.Column("paid_fen", BIGINT, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("issued_at", UTC, nullable=False),
        sa.Column("due_at", UTC, nullable=False),
        sa.Column("overdue_at", UTC),
        sa.Column("advanced_at", UTC),
        sa.Column("paid_at", UTC),
        sa.Column("pay_token", sa.String(64), nullable=False),
        sa.CheckConstraint("status IN ('open', 'paid', 'overdue', 'advanced', 'written_off')", name=op.f("ck_bills_status")),
        sa.CheckConstraint("paid_fen >= 0 AND paid_fen <= self_pay_fen", name=op.f("ck_bills_paid_range")),
        sa.CheckConstraint("self_pay_fen >= 0", name=op.f("ck_bills_self_pay_nonneg")),
        sa.ForeignKeyConstraint(["line_id"], ["credit_lines.id"], name=op.f("fk_bills_line_id_credit_lines")),
        sa.ForeignKeyConstraint(["payer_id"], ["members.id"], name=op.f("fk_bills_payer_id_members")),
        sa.ForeignKeyConstraint(["visit_id"], ["visits.id"], name=op.f("fk_bills_visit_id_visits")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bills")),
        sa.UniqueConstraint("bill_no", name=op.f("uq_bills_bill_no")),
        sa.UniqueConstraint("pay_token", name=op.f("uq_bills_pay_token")),
        sa.UniqueConstraint("visit_id", name=op.f("uq_bills_visit_id")),
    )
    op.create_index(op.f("ix_bills_overdue_at"), "bills", ["overdue_at"])
    op.create_index(op.f("ix_bills_payer_id"), "bills", ["payer_id"])
    op.create_index("ix_bills_unpaid_due", "bills", ["status", "due_at"])

    op.create_table(
        "charges",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("hospital_id", BIGINT, nullable=False),
        sa.Column("visit_id", BIGINT, nullable=False),
        sa.Column("charge_no", sa.String(64), nullable=False),
        sa.Column("category", sa.String(16), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("amount_fen", BIGINT, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("insurance_fen", BIGINT),
        sa.Column("personal_account_fen", BIGINT),
        sa.Column("self_pay_fen", BIGINT),
        sa.Column("created_at", UTC, nullable=False),
        sa.CheckConstraint("status IN ('held', 'posted', 'released', 'refunded', 'prepaid', 'off_credit')", name=op.f("ck_charges_status")),
        sa.CheckConstraint("amount_fen > 0", name=op.f("ck_charges_amount_pos")),
        sa.CheckConstraint("self_pay_fen IS NULL OR (insurance_fen >= 0 AND personal_account_fen >= 0 AND self_pay_fen >= 0 AND insurance_fen + personal_account_fen + self_pay_fen = amount_fen)", name=op.f("ck_charges_split_sums")),
        sa.ForeignKeyConstraint(["hospital_id"], ["hospitals.id"], name=op.f("fk_charges_hospital_id_hospitals")),
        sa.ForeignKeyConstraint(["visit_id"], ["visits.id"], name=op.f("fk_charges_visit_id_visits")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_charges")),
        sa.UniqueConstraint("hospital_id", "charge_no", name=op.f("uq_charges_hospital_id_charge_no")),
    )
    op.create_index(op.f("ix_charges_visit_id"), "charges", ["visit_id"])

    op.create_table(
        "payments",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("payment_no", sa.String(64), nullable=False),
        sa.Column("bill_id", BIGINT, nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("gateway_txn_id", sa.String(64)),
        sa.Column("amount_fen", BIGINT, nullable=False),
        sa.Column("applied_fen", BIGINT, nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.CheckConstraint("amount_fen > 0", name=op.f("ck_payments_amount_pos")),
        sa.CheckConstraint("applied_fen >= 0 AND applied_fen <= amount_fen", name=op.f("ck_payments_applied_range")),
        sa.ForeignKeyConstraint(["bill_id"], ["bills.id"], name=op.f("fk_payments_bill_id_bills")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments")),
        sa.UniqueConstraint("source", "gateway_txn_id", name=op.f("uq_payments_source_gateway_txn_id")),
        sa.UniqueConstraint("source", "payment_no", name=op.f("uq_payments_source_payment_no")),
    )
    op.create_index(op.f("ix_payments_bill_id"), "payments", ["bill_id"])

    op.create_table(
        "reminders",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("bill_id", BIGINT, nullable=False),
        sa.Column("offset_hours", sa.Integer(), nullable=False),
        sa.Column("at", UTC, nullable=False),
        sa.ForeignKeyConstraint(["bill_id"], ["bills.id"], name=op.f("fk_reminders_bill_id_bills")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reminders")),
        sa.UniqueConstraint("bill_id", "offset_hours", name=op.f("uq_reminders_bill_id_offset_hours")),
    )
    op.create_index(op.f("ix_reminders_bill_id"), "reminders", ["bill_id"])

    op.create_table(
        "trades",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("out_trade_no", sa.String(32), nullable=False),
        sa.Column("bill_id", BIGINT, nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("amount_fen", BIGINT, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("payer_openid", sa.String(64)),
        sa.Column("gateway_txn_id", sa.String(64)),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("paid_at", UTC),
        sa.CheckConstraint("channel IN ('wechatpay', 'alipay')", name=op.f("ck_trades_channel")),
        sa.CheckConstraint("status IN ('created', 'paid', 'closed')", name=op.f("ck_trades_status")),
        sa.CheckConstraint("amount_fen > 0", name=op.f("ck_trades_amount_pos")),
        sa.ForeignKeyConstraint(["bill_id"], ["bills.id"], name=op.f("fk_trades_bill_id_bills")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trades")),
        sa.UniqueConstraint("out_trade_no", name=op.f("uq_trades_out_trade_no")),
    )
    op.create_index(op.f("ix_trades_bill_id"), "trades", ["bill_id"])
    op.create_index("ix_trades_unsettled", "trades", ["status", "created_at"])

    op.create_table(
        "refunds",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("bill_id", BIGINT, nullable=False),
        sa.Column("payment_id", BIGINT),
        sa.Column("charge_id", BIGINT),
        sa.Column("amount_fen", BIGINT, nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.CheckConstraint("status IN ('pending', 'done', 'failed')", name=op.f("ck_refunds_status")),
        sa.CheckConstraint("amount_fen > 0", name=op.f("ck_refunds_amount_pos")),
        sa.ForeignKeyConstraint(["bill_id"], ["bills.id"], name=op.f("fk_refunds_bill_id_bills")),
        sa.ForeignKeyConstraint(["charge_id"], ["charges.id"], name=op.f("fk_refunds_charge_id_charges")),
        sa.ForeignKeyConstraint(["payment_id"], ["payments.id"], name=op.f("fk_refunds_payment_id_payments")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refunds")),
    )
    op.create_index(op.f("ix_refunds_bill_id"), "refunds", ["bill_id"])


def downgrade() -> None:
    for table in reversed(TABLES):
        op.drop_table(table)
