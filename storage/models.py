"""The database schema: SQLAlchemy 2 declarative models.

Amounts are integer fen and the database checks what it can. Facts (charges,
payments, refunds, transitions) are appended; the cached balance `CreditLine.used_fen`
changes in the same transaction as the facts it summarises.
"""
from __future__ import annotations

from datetime import date, datetime, timezone

from sqlalchemy import (
    DDL,
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    event,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_N_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator):
    """Aware UTC datetimes in, aware UTC datetimes out, on SQLite and PostgreSQL alike."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use an aware UTC time")
        return value.astimezone(timezone.utc)

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UtcDateTime, int: BigInteger().with_variant(Integer, "sqlite")}


ID = BigInteger().with_variant(Integer, "sqlite")

MEMBER_STATUSES = ("prospect", "active", "suspended", "revoked", "blacklisted", "cancelled")
BILL_STATUSES = ("open", "paid", "overdue", "advanced", "written_off")
UNPAID_BILL_STATUSES = ("open", "overdue", "advanced")  # a bill that still asks for money
CHARGE_STATUSES = ("held", "posted", "released", "refunded", "prepaid", "off_credit")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Hospital(Base):
    __tablename__ = "hospitals"
    id: Mapped[int] = mapped_column(ID, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    secret_enc: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]


class Staff(Base):
    __tablename__ = "staff"
    id: Mapped[int] = mapped_column(ID, primary_key=True)
    openid: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]


class Member(Base):
    """A person the programme knows: enrolled, or a dependent bound by a relative."""

    __tablename__ = "members"
    __table_args__ = (CheckConstraint(_in("status", MEMBER_STATUSES), name="status"),)
    id: Mapped[int] = mapped_column(ID, primary_key=True)
    openid: Mapped[str | None] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    id_number_enc: Mapped[str] = mapped_column(Text)
    id_number_hmac: Mapped[str] = mapped_column(String(64), unique=True)
    phone_enc: Mapped[str | None] = mapped_column(Text)
    phone_hmac: Mapped[str | None] = mapped_column(String(64), index=True)
    birth_date: Mapped[date] = mapped_column(Date)
    region: Mapped[str | None] = mapped_column(String(6))
    status: Mapped[str] = mapped_column(String(16), default="prospect")
    locale: Mapped[str] = mapped_column(String(16), default="zh_Hans")
    consent_version: Mapped[str | None] = mapped_column(String(32))
    consent_at: Mapped[datetime | None]
    commitment_version: Mapped[str | None] = mapped_column(String(32))
    commitment_signed_at: Mapped[datetime | None] = mapped_column(index=True)
    value_added: Mapped[bool] = mapped_column(Boolean, default=False)
    institution: Mapped[str | None] = mapped_column(String(32))  # the financial institution chosen (policy code), if any
    malicious_debt: Mapped[bool] = mapped_column(Boolean, default=False)
    onboarded_by_staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    status_changed_at: Mapped[datetime | None]
    repaired_at: Mapped[datetime | None]
    created_at: Mapped[datetime]


class CreditLine(Base):
    """A member's line of one kind (outpatient, or inpatient where the policy sets one)."""

    __tablename__ = "credit_lines"
    __table_args__ = (
        UniqueConstraint("member_id", "kind"),
        CheckConstraint("limit_fen >= 0", name="limit_nonneg"),
        CheckConstraint("used_fen >= 0", name="used_nonneg"),
        CheckConstraint(_in("kind", ("outpatient", "inpatient")), name="kind"),
    )
    id: Mapped[int] = mapped_column(ID, primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    kind: Mapped[str] = mapped_column(String(16))
    limit_fen: Mapped[int]
    used_fen: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime]


class FamilyLink(Base):
    """`payer` pays for, books for and follows `dependent`."""

    __tablename__ = "family_links"
    __table_args__ = (
        UniqueConstraint("payer_id", "dependent_id"),
        CheckConstraint("payer_id <> dependent_id", name="not_self"),
        CheckConstraint(_in("relation", ("parent", "child", "spouse")), name="relation"),
    )
    id: Mapped[int] = mapped_column(ID, primary_key=True)
    payer_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    dependent_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    relation: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]


class Visit(Base):
    __tablename__ = "visits"
    __table_args__ = (
        UniqueConstraint("hospital_id", "visit_no"),
        CheckConstraint(_in("kind", ("outpatient", "emergency", "inpatient")), name="kind"),
        CheckConstraint(_in("status", ("open", "checked_out")), name="status"),
    )
    id: Mapped[int] = mapped_column(ID, primary_key=True)
    hospital_id: Mapped[int] = mapped_column(ForeignKey("hospitals.id"))
    visit_no: Mapped[str] = mapped_column(String(64))
    patient_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"), index=True)
    line_id: Mapped[int | None] = mapped_column(ForeignKey("credit_lines.id"), index=True)
    department: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(16))
    exclusion: Mapped[str | None] = mapped_column(String(32))
    on_credit: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="open")
    created_at: Mapped[datetime] = mapped_column(index=True)


class Charge(Base):
    """One order. On credit it holds `held_fen` on the line until checkout or cancel: the HIS's
    estimate of its self-pay part, or the policy's share of its price."""

    __tablename__ = "charges"
    __table_args__ = (
        UniqueConstraint("hospital_id", "charge_no"),
        CheckConstraint("amount_fen > 0", name="amount_pos"),
        CheckConstraint(_in("status", CHARGE_STATUSES), name="status"),
        CheckConstraint(
            "self_pay_fen IS NULL OR (insurance_fen >= 0 AND personal_account_fen >= 0 AND self_pay_fen >= 0"
            " AND insurance_fen + personal_account_fen + self_pay_fen = amount_fen)",
            name="split_sums",
        ),
        CheckConstraint("held_fen >= 0 AND held_fen <= amount_fen", name="held_range"),
    )
    id: Mapped[int] = mapped_column(ID, primary_key=True)
    hospital_id: Mapped[int] = mapped_column(ForeignKey("hospitals.id"))
    visit_id: Mapped[int] = mapped_column(ForeignKey("visits.id"), index=True)
    charge_no: Mapped[str] = mapped_column(String(64))
    category: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200))
    amount_fen: Mapped[int]
    held_fen: Mapped[int] = mapped_column(Integer, server_default="0")  # 0 when not on credit
    status: Mapped[str] = mapped_column(String(16))
    insurance_fen: Mapped[int | None]
    personal_account_fen: Mapped[int | None]
    self_pay_fen: Mapped[int | None]
    created_at: Mapped[datetime]


class Bill(Base):
    __tablename__ = "bills"
    __table_args__ = (
        CheckConstraint("self_pay_fen >= 0", name="self_pay_nonneg"),
        CheckConstraint("paid_fen >= 0 AND paid_fen <= self_pay_fen", name="paid_range"),
        CheckConstraint("interest_paid_fen >= 0 AND interest_paid_fen <= interest_fen", name="interest_paid_range"),
        CheckConstraint("daily_interest_ppm >= 0", name="interest_ppm_nonneg"),
        CheckConstraint(_in("status", BILL_STATUSES), name="status"),
        Index("ix_bills_unpaid_due", "status", "due_at"),
    )
    id: Mapped[int] = mapped_column(ID, primary_key=True)
    bill_no: Mapped[str] = mapped_column(String(40), unique=True)
    visit_id: Mapped[int] = mapped_column(ForeignKey("visits.id"), unique=True)
    payer_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    line_id: Mapped[int] = mapped_column(ForeignKey("credit_lines.id"))
    self_pay_fen: Mapped[int]  # the principal
    paid_fen: Mapped[int] = mapped_column(default=0)  # of the principal
    status: Mapped[str] = mapped_column(String(16), default="open")
    issued_at: Mapped[datetime] = mapped_column(index=True)
    due_at: Mapped[datetime]  # the end of the interest-free period, where the policy lists institutions
    # The terms of the institution the payer chose, as they were at checkout (billing/interest.py): simple
    # interest on the unpaid principal for each whole day past due_at, paid before the principal.
    institution: Mapped[str | None] = mapped_column(String(32))
    daily_interest_ppm: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    interest_fen: Mapped[int] = mapped_column(default=0, server_default="0")  # accrued up to interest_through
    interest_paid_fen: Mapped[int] = mapped_column(default=0, server_default="0")
    interest_through: Mapped[datetime | None]  # None: nothing accrued yet (accrual starts at due_at)
    overdue_at: Mapped[datetime | None] = mapped_column(index=True)
    advanced_at: Mapped[datetime | None] = mapped_column(index=True)
    paid_at: Mapped[datetime | None]
    disputed_at: Mapped[datetime | None]  # the member disputes it: the overdue ladder waits until it is resolved
    pay_token: Mapped[str] = mapped_column(String(64), unique=True)


class Payment(Base):
    """Money received for a bill. `applied_fen` reduced the bill; the excess is refunded."""

    __tablename__ = "payments"
    __table_args__ = (
        UniqueConstraint("source", "payment_no"),
        UniqueConstraint("source", "gateway_txn_id"),
        CheckConstraint("amount_fen > 0", name="amount_pos"),
        CheckConstraint("applied_fen >= 0 AND applied_fen <= amount_fen", name="applied_range"),
    )
    id: Mapped[int] = mapped_column(ID, primary_key=True)
    source: Mapped[str] = mapped_column(String(32))  # a hospital code, or the gateway
    payment_no: Mapped[str] = mapped_column(String(64))
    bill_id: Mapped[int] = mapped_column(ForeignKey("bills.id"), index=True)
    channel: Mapped[str] = mapped_column(String(16))
    gateway_txn_id: Mapped[str | None] = mapped_column(String(64))
    amount_fen: Mapped[int]
    applied_fen: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(index=True)


class Refund(Base):
    """Money owed back: an excess payment, or a paid item abandoned after checkout."""

    __tablename__ = "refunds"
    __table_args__ = (
        CheckConstraint("amount_fen > 0", name="amount_pos"),
        CheckConstraint(_in("status", ("pending", "done", "failed")), name="status"),
    )
    id: Mapped[int] = mapped_column(ID, primary_key=True)
    bill_id: Mapped[int] = mapped_column(ForeignKey("bills.id"), index=True)
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("payments.id"))
    charge_id: Mapped[int | None] = mapped_column(ForeignKey("charges.id"))
    amount_fen: Mapped[int]
    reason: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    created_at: Mapped[datetime]


class IdempotencyKey(Base):
    """The first outcome of a money-moving request, by the caller's own number."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("scope", "key"),)
    id: Mapped[int] = mapped_column(ID, primary_key=True)
    scope: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(128))
    request_hash: Mapped[str] = mapped_column(String(64))
    response: Mapped[dict | None] = mapped_column(JSON)
    created_at: Mapped[datetime]


class StatusChange(Base):
    """Every member status move, with why: the audit trail of the overdue ladder."""

    __tablename__ = "status_changes"
    id: Mapped[int] = mapped_column(ID, primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    from_status: Mapped[str] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(index=True)


class Reminder(Base):
    __tablename__ = "reminders"
    __table_args__ = (UniqueConstraint("bill_id", "offset_hours"),)
    id: Mapped[int] = mapped_column(ID, primary_key=True)
    bill_id: Mapped[int] = mapped_column(ForeignKey("bills.id"), index=True)
    offset_hours: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime]


# dropped: a message that must not go any more, settled unsent (a marketing message whose consent was withdrawn)
OUTBOX_STATUSES = ("pending", "sent", "dead", "dropped")


OUTBOX_EVENT = "event"  # the kind of a programme event's row, the events lane's; every other kind is a notice
# Each outbox lane's pending messages, as its partial index and billing/outbox.py's claim spell them.
OUTBOX_LANES_PENDING = {"notices": f"status = 'pending' AND kind <> '{OUTBOX_EVENT}'",
                        "events": f"status = 'pending' AND kind = '{OUTBOX_EVENT}'"}


class Outbox(Base):
    """Side effects written with the state change that caused them; a sender drains them."""

    __tablename__ = "outbox"
    __table_args__ = (
        CheckConstraint(_in("status", OUTBOX_STATUSES), name="status"),
        Index("ix_outbox_due", "status", "next_attempt_at"),
        Index("ix_outbox_member_sent", "member_id", "kind", "sent_at"),  # the per-phone SMS limit
        # A sender's claim (billing/outbox.py), one for each lane: its pending messages in id order.
        # Without them a claim read the outbox's whole history (on a city's day, 138 ms a claim at
        # 330,000 rows): the sent rows stay, and events pile up pending while no receiver is set.
        *(Index(f"ix_outbox_pending_{lane}", "id", postgresql_where=text(where), sqlite_where=text(where))
          for lane, where in OUTBOX_LANES_PENDING.items()),
    )
    id: Mapped[int] = mapped_column(ID, primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(128), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"))
    payload: Mapped[dict] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime]
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]


class Slot(Base):
    """A bookable period of one doctor, imported from a hospital's schedule."""

    __tablename__ = "slots"
    __table_args__ = (
        UniqueConstraint("hospital_id", "department", "doctor", "day", "start"),
        CheckConstraint("capacity > 0", name="capacity_pos"),
        CheckConstraint("booked >= 0 AND booked <= capacity", name="booked_range"),
        CheckConstraint("fee_fen >= 0", name="fee_nonneg"),
    )
    id: Mapped[int] = mapped_column(ID, primary_key=True)
    hospital_id: Mapped[int] = mapped_column(ForeignKey("hospitals.id"))
    department: Mapped[str] = mapped_column(String(100))
    doctor: Mapped[str] = mapped_column(String(100))
    day: Mapped[date] = mapped_column(Date)
    start: Mapped[str] = mapped_column(String(5))
    end: Mapped[str] = mapped_column(String(5))
    capacity: Mapped[int] = mapped_column(Integer)
    booked: Mapped[int] = mapped_column(Integer, default=0)
    fee_fen: Mapped[int]


class ApiNonce(Base):
    """Nonces of signed hospital requests seen within the allowed clock skew: a replay fails the unique key."""

    __tablename__ = "api_nonces"
    __table_args__ = (UniqueConstraint("hospital_code", "nonce"),)
    id: Mapped[int] = mapped_column(ID, primary_key=True)
    hospital_code: Mapped[str] = mapped_column(String(32))
    nonce: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(index=True)


class Trade(Base):
    """One attempt to pay a bill through a gateway: our out_trade_no, their transaction id."""

    __tablename__ = "trades"
    __table_args__ = (
        CheckConstraint("amount_fen > 0", name="amount_pos"),
        CheckConstraint(_in("status", ("created", "paid", "closed")), name="status"),
        CheckConstraint(_in("channel", ("wechatpay", "alipay")), name="channel"),
        Index("ix_trades_unsettled", "status", "created_at"),
    )
    id: Mapped[int] = mapped_column(ID, primary_key=True)
    out_trade_no: Mapped[str] = mapped_column(String(32), unique=True)
    bill_id: Mapped[int] = mapped_column(ForeignKey("bills.id"), index=True)
    channel: Mapped[str] = mapped_column(String(16))
    amount_fen: Mapped[int]
    # The bill's interest accrued when the trade was quoted: a payment through it settles the bill as of then.
    interest_fen: Mapped[int] = mapped_column(default=0, server_default="0")
    status: Mapped[str] = mapped_column(String(16), default="created")
    payer_openid: Mapped[str | None] = mapped_column(String(64))
    gateway_txn_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime]
    paid_at: Mapped[datetime | None]


class Conversation(Base):
    """One chat per WeChat user: the step they are at, their answers so far, their language.

    `version` grows with every save; a save expecting an older version fails, so two
    messages handled at once can never silently overwrite each other's state.
    """

    __tablename__ = "conversations"
    id: Mapped[int] = mapped_column(ID, primary_key=True)
    openid: Mapped[str] = mapped_column(String(64), unique=True)
    state: Mapped[str | None] = mapped_column(String(64))  # "enrol:await_id_number"; None between flows
    data: Mapped[dict] = mapped_column(JSON, default=dict)
    locale: Mapped[str] = mapped_column(String(16), default="zh_Hans")
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]


class Booking(Base):
    """A 挂号 made in chat: one place in a slot, its registration fee charged on credit
    under the booking's own visit and charge numbers."""

    __tablename__ = "bookings"
    __table_args__ = (
        CheckConstraint(_in("status", ("booked", "cancelled")), name="status"),
        CheckConstraint("fee_fen >= 0", name="fee_nonneg"),
    )
    id: Mapped[int] = mapped_column(ID, primary_key=True)
    slot_id: Mapped[int] = mapped_column(ForeignKey("slots.id"), index=True)
    booker_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="booked")
    visit_no: Mapped[str] = mapped_column(String(64), unique=True)
    charge_no: Mapped[str] = mapped_column(String(64))
    fee_fen: Mapped[int]
    created_at: Mapped[datetime]
    cancelled_at: Mapped[datetime | None]


# One live booking per patient and slot: a doubled confirmation cannot take two places.
Index("uq_bookings_live", Booking.patient_id, Booking.slot_id, unique=True,
      sqlite_where=Booking.status == "booked", postgresql_where=Booking.status == "booked")


WECHAT_MESSAGE_STATUSES = ("processing", "done", "deferred", "delivered")


class WeChatMessage(Base):
    """A message or event from WeChat by its dedupe key (MsgId, or sender + time for events),
    recorded before its handler runs: a retry finds it and gets the same answer."""

    __tablename__ = "wechat_messages"
    __table_args__ = (CheckConstraint(_in("status", WECHAT_MESSAGE_STATUSES), name="status"),)
    id: Mapped[int] = mapped_column(ID, primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(128), unique=True)
    openid: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="processing")
    replies: Mapped[list | None] = mapped_column(JSON)
    received_at: Mapped[datetime] = mapped_column(index=True)
    # Replies still to send as customer-service messages: if they are not sent by then (their
    # worker died), another worker sends them. NULL once sent, or when there are none.
    send_after: Mapped[datetime | None] = mapped_column(index=True)


class WeChatUserLease(Base):
    """Which worker handles a user's message now: a lease row, so no transaction stays open meanwhile."""

    __tablename__ = "wechat_user_leases"
    openid: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(64))
    until: Mapped[datetime | None]


class WeChatToken(Base):
    """The official account's access_token, shared by every worker; `refresher` holds the refresh lease."""

    __tablename__ = "wechat_tokens"
    appid: Mapped[str] = mapped_column(String(32), primary_key=True)
    access_token: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[datetime | None]
    refresher: Mapped[str | None] = mapped_column(String(64))
    refresh_until: Mapped[datetime | None]


class WeChatUnreachable(Base):
    """A user WeChat will not deliver to (unfollowed, refused our messages): notices go by SMS until they write again."""

    __tablename__ = "wechat_unreachable"
    openid: Mapped[str] = mapped_column(String(64), primary_key=True)
    errcode: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime]


OPERATOR_ROLES = ("operator", "hospital", "community", "auditor")


class Operator(Base):
    """A console account of the programme's staff. A `hospital` account sees one hospital;
    a `community` account sees the residents its staff members (OperatorStaff) onboarded."""

    __tablename__ = "operators"
    __table_args__ = (
        CheckConstraint(_in("role", OPERATOR_ROLES), name="role"),
        CheckConstraint("(role = 'hospital') = (hospital_id IS NOT NULL)", name="hospital_role"),
        CheckConstraint("failed_logins >= 0", name="failed_nonneg"),
    )
    id: Mapped[int] = mapped_column(ID, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(String(16))
    hospital_id: Mapped[int | None] = mapped_column(ForeignKey("hospitals.id"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)  # in a row, since the last success or lockout
    locked_until: Mapped[datetime | None]
    created_at: Mapped[datetime]


class OperatorStaff(Base):
    """The community staff members whose residents a `community` account covers."""

    __tablename__ = "operator_staff"
    operator_id: Mapped[int] = mapped_column(ForeignKey("operators.id"), primary_key=True)
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id"), primary_key=True)


class AuditEntry(Base):
    """What an operator did, why, and the state before and after: append-only. The database
    refuses UPDATE and DELETE on it (triggers below and in migration 0003_console)."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(ID, primary_key=True)
    at: Mapped[datetime] = mapped_column(index=True)
    operator_id: Mapped[int | None] = mapped_column(ForeignKey("operators.id"))
    username: Mapped[str] = mapped_column(String(64))  # as it was then; also for a failed login of no account
    action: Mapped[str] = mapped_column(String(32))
    target: Mapped[str] = mapped_column(String(80), index=True)  # "member:12", "bill:B2026...", "refund:3"
    reason: Mapped[str] = mapped_column(Text)
    before: Mapped[dict | None] = mapped_column(JSON)
    after: Mapped[dict | None] = mapped_column(JSON)


AUDIT_LOG_GUARDS = {
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
for _dialect, _statements in AUDIT_LOG_GUARDS.items():
    for _statement in _statements:
        event.listen(AuditEntry.__table__, "after_create", DDL(_statement).execute_if(dialect=_dialect))


CONSENT_WAYS = ("chat", "console", "unfollow")


class MarketingConsent(Base):
    """Every yes and no of a member to partners' offers (营销信息, billing/marketing.py), kept apart
    from the privacy notice and the commitment. Rows are only added; the latest is the member's
    choice now, and a member without one has said no. `via`: typed in the chat, recorded by an
    operator (a withdrawal only), or the account unfollowed."""

    __tablename__ = "marketing_consents"
    __table_args__ = (
        CheckConstraint(_in("via", CONSENT_WAYS), name="via"),
        CheckConstraint("(via = 'console') = (operator_id IS NOT NULL)", name="console_operator"),
        Index("ix_marketing_consents_member_latest", "member_id", "id"),
    )
    id: Mapped[int] = mapped_column(ID, primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    granted: Mapped[bool] = mapped_column(Boolean)
    via: Mapped[str] = mapped_column(String(16))
    operator_id: Mapped[int | None] = mapped_column(ForeignKey("operators.id"))
    at: Mapped[datetime]


class MarketingOffer(Base):
    """An offer an operator sent, in up to three languages, queued in the outbox for the members
    who consented then (each checked again when it is sent)."""

    __tablename__ = "marketing_offers"
    __table_args__ = (CheckConstraint("recipients >= 0", name="recipients_nonneg"),)
    id: Mapped[int] = mapped_column(ID, primary_key=True)
    sender: Mapped[str] = mapped_column(String(50))  # who makes the offer: an institution's name
    texts: Mapped[dict] = mapped_column(JSON)  # {locale: text}, zh_Hans always
    operator_id: Mapped[int] = mapped_column(ForeignKey("operators.id"))
    recipients: Mapped[int] = mapped_column(Integer)  # members it was queued for
    created_at: Mapped[datetime] = mapped_column(index=True)
