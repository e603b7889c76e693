"""A member's account as the chat shows it: lines, bills, family and their visits.

Reads only, apart from the member's language; every figure comes from the same rows the
hospital API and the ladder use.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from billing.core import Core
from billing.interest import Owed, owed
from billing.lines import spendable_fen
from billing.payments import bill_item
from billing.pii import mask_id_number
from storage.models import UNPAID_BILL_STATUSES, Bill, Charge, CreditLine, FamilyLink, Hospital, Member, Payment, Visit


@dataclass(frozen=True)
class Line:
    kind: str
    limit_fen: int
    used_fen: int
    available_fen: int


@dataclass(frozen=True)
class BillSummary:
    bill_no: str
    status: str
    self_pay_fen: int
    paid_fen: int
    issued_at: datetime
    due_at: datetime
    hospital_name: str
    payer_id: int
    patient_id: int | None
    patient_name: str | None
    pay_url: str
    items: list[dict[str, Any]]
    channels: tuple[str, ...]  # how the payments that went to it were made, first first (handlers.i18n.PAYMENT_CHANNELS)
    institution: str | None  # whose terms it was issued under
    owed: Owed  # principal and interest, as accrued when it was read

    @property
    def unpaid_fen(self) -> int:
        """What it still asks for: the principal unpaid and the interest unpaid."""
        return self.owed.total_fen


@dataclass(frozen=True)
class Credit:
    status: str
    lines: list[Line]
    unpaid_fen: int
    next_bill: BillSummary | None  # the unpaid bill due first
    unpaid_bills: int = 0
    institution: str | None = None  # the financial institution the member chose, where the policy lists them


@dataclass(frozen=True)
class Dependent:
    id: int
    name: str
    relation: str
    masked_id_number: str
    birth_date: date  # what the chat offers by age (no 儿科 for an adult)


@dataclass(frozen=True)
class VisitSummary:
    visit_no: str
    hospital_name: str
    department: str
    started_at: datetime
    status: str
    on_credit: bool


async def credit(core: Core, member_id: int) -> Credit:
    return await core.db.run(_credit, core, member_id)


def _credit(session: Session, core: Core, member_id: int) -> Credit:
    member = session.get(Member, member_id)
    lines = [
        Line(line.kind, line.limit_fen, line.used_fen, spendable_fen(line, member.status))
        for line in session.scalars(select(CreditLine).where(CreditLine.member_id == member_id).order_by(CreditLine.kind.desc()))
    ]
    unpaid = _bills(session, core, member_id, None, True)
    count = session.scalar(select(func.count()).select_from(Bill).where(
        Bill.payer_id == member_id, Bill.status.in_(UNPAID_BILL_STATUSES)))
    return Credit(member.status, lines, sum(b.unpaid_fen for b in unpaid), unpaid[0] if unpaid else None, count,
                  member.institution)


async def bills(core: Core, *, payer_id: int | None = None, patient_id: int | None = None, unpaid: bool,
                limit: int = 20) -> list[BillSummary]:
    """Unpaid bills due first, or settled ones latest first, itemised as the hospital API shows them."""
    return await core.db.run(_bills, core, payer_id, patient_id, unpaid, limit)


def _bills(session: Session, core: Core, payer_id: int | None, patient_id: int | None, unpaid: bool,
           limit: int = 20) -> list[BillSummary]:
    query = (
        select(Bill, Hospital.name, Visit.patient_id, Member.name)
        .join(Visit, Visit.id == Bill.visit_id).join(Hospital, Hospital.id == Visit.hospital_id)
        .outerjoin(Member, Member.id == Visit.patient_id)
    )
    if payer_id is not None:
        query = query.where(Bill.payer_id == payer_id)
    if patient_id is not None:
        query = query.where(Visit.patient_id == patient_id)
    if unpaid:
        query = query.where(Bill.status.in_(UNPAID_BILL_STATUSES)).order_by(Bill.due_at, Bill.id)
    else:
        query = query.where(Bill.status.not_in(UNPAID_BILL_STATUSES)).order_by(Bill.issued_at.desc(), Bill.id.desc())
    rows = session.execute(query.limit(limit)).all()
    items: dict[int, list[dict]] = {bill.visit_id: [] for bill, *_ in rows}
    channels: dict[int, list[str]] = {bill.id: [] for bill, *_ in rows}
    if items:  # every bill's items and payments in one read each, not one read a bill
        for charge in session.scalars(select(Charge).where(Charge.visit_id.in_(items)).order_by(Charge.id)):
            items[charge.visit_id].append(bill_item(charge))
        for bill_id, channel in session.execute(select(Payment.bill_id, Payment.channel).where(
                Payment.bill_id.in_(channels), Payment.applied_fen > 0).order_by(Payment.id)):
            if channel not in channels[bill_id]:
                channels[bill_id].append(channel)
    now = core.clock.now()
    return [BillSummary(bill.bill_no, bill.status, bill.self_pay_fen, bill.paid_fen, bill.issued_at, bill.due_at,
                        hospital_name, bill.payer_id, patient_id, patient_name, core.pay_url(bill.pay_token),
                        items[bill.visit_id], tuple(channels[bill.id]), bill.institution, owed(bill, now))
            for bill, hospital_name, patient_id, patient_name in rows]


async def family(core: Core, payer_id: int) -> list[Dependent]:
    rows = await core.db.run(lambda session: session.execute(
        select(Member, FamilyLink.relation).join(FamilyLink, FamilyLink.dependent_id == Member.id)
        .where(FamilyLink.payer_id == payer_id).order_by(FamilyLink.id)
    ).all())
    return [Dependent(m.id, m.name, relation, mask_id_number(core.pii.decrypt(m.id_number_enc)), m.birth_date)
            for m, relation in rows]


async def visits_of(core: Core, patient_id: int, limit: int = 5) -> list[VisitSummary]:
    """The latest visits of a person, whoever pays for them (云伴诊: the payer follows along)."""
    rows = await core.db.run(lambda session: session.execute(
        select(Visit, Hospital.name).join(Hospital, Hospital.id == Visit.hospital_id)
        .where(Visit.patient_id == patient_id).order_by(Visit.created_at.desc(), Visit.id.desc()).limit(limit)
    ).all())
    return [VisitSummary(v.visit_no, name, v.department, v.created_at, v.status, v.on_credit) for v, name in rows]


async def set_locale(core: Core, openid: str, locale: str) -> None:
    """The language notifications to this person go out in."""
    await core.db.run(lambda session: session.execute(update(Member).where(Member.openid == openid).values(locale=locale)))
