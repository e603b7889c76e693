"""Terse builders for billing tests: enrol people, open visits with charges, check out,
pay, and read back what the database holds."""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from stdnum.cn import ric

from audit import audit
from billing import marketing, members, payments, visits
from billing.core import Core
from billing.interest import owed
from billing.outbox import EVENT
from billing.sweep import SweepReport, sweep
from storage.models import Base, Bill, Charge, CreditLine, Member, Outbox, Reminder, Visit

PHONE = "13800138000"
_serial = itertools.count(1)


def next_no(prefix: str) -> str:
    """A fresh hospital number (visit_no, charge_no, payment_no)."""
    return f"{prefix}{next(_serial):06d}"


def id_number_for(born: str, serial: int, region: str = "110105") -> str:
    """A valid ID number (with its check digit) for someone the registry does not know; born is YYYYMMDD."""
    base = f"{region}{born}{serial:03d}"
    return base + ric.calc_check_digit(base + "0")


def first_institution(core: Core) -> str | None:
    """What these tests choose when they do not say: the first institution the policy lists, if any."""
    return core.policy.institutions[0].code if core.policy.institutions else None


async def enrol(core: Core, id_number: str, *, phone: str = PHONE, openid: str | None = None, name: str | None = None,
                institution: str | None = None) -> int:
    """Enrol a registry resident with the policy's current documents and `institution` (by default
    `first_institution`); returns the member id."""
    if name is None:
        name = (await core.registry.lookup(id_number)).name
    enrolment = await members.enrol(
        core, openid=openid, name=name, id_number=id_number, phone=phone,
        consent_version=core.policy.consent_version, commitment_version=core.policy.commitment_version,
        institution=institution or first_institution(core),
    )
    return enrolment.member_id


@dataclass
class VisitRef:
    visit_no: str
    on_credit: bool
    reason: str
    hospital: str = "H1"
    charge_nos: list[str] = field(default_factory=list)


async def open_visit(core: Core, id_number: str, *, kind: str = "outpatient", exclusion: str | None = None,
                     hospital: str = "H1") -> VisitRef:
    visit_no = next_no("V")
    answer = await visits.open_visit(core, hospital, {
        "visit_no": visit_no, "id_number": id_number, "department": "内科", "kind": kind, "exclusion": exclusion,
    })
    return VisitRef(visit_no, answer["on_credit"], answer["reason"], hospital)


async def charge(core: Core, visit: VisitRef, amount_fen: int, *, prepaid: bool = False, category: str = "exam",
                 estimate_fen: int | None = None) -> dict[str, Any]:
    charge_no = next_no("C")
    body = {"charge_no": charge_no, "category": category, "name": "检查", "amount_fen": amount_fen, "prepaid": prepaid}
    if estimate_fen is not None:
        body["self_pay_estimate_fen"] = estimate_fen
    answer = await visits.post_charge(core, visit.hospital, visit.visit_no, body)
    visit.charge_nos.append(charge_no)
    return answer


async def visit_with_charges(core: Core, id_number: str, *amounts_fen: int, kind: str = "outpatient",
                             exclusion: str | None = None, hospital: str = "H1") -> VisitRef:
    visit = await open_visit(core, id_number, kind=kind, exclusion=exclusion, hospital=hospital)
    for amount_fen in amounts_fen:
        await charge(core, visit, amount_fen)
    return visit


async def split_for(core: Core, visit: VisitRef, insurance: dict[str, int] | None = None) -> dict[str, Any]:
    """A checkout body covering every held charge: `insurance[charge_no]` by insurance, the rest self-pay."""
    insurance = insurance or {}
    async with core.db.transaction() as session:
        held = (await session.execute(
            select(Charge.charge_no, Charge.amount_fen).join(Visit, Visit.id == Charge.visit_id)
            .where(Visit.visit_no == visit.visit_no, Charge.status == "held").order_by(Charge.id)
        )).all()
    return {"items": [
        {"charge_no": no, "insurance_fen": insurance.get(no, 0), "personal_account_fen": 0,
         "self_pay_fen": amount - insurance.get(no, 0)}
        for no, amount in held
    ]}


async def checkout(core: Core, visit: VisitRef, insurance: dict[str, int] | None = None) -> dict[str, Any]:
    return await visits.checkout(core, visit.hospital, visit.visit_no, await split_for(core, visit, insurance))


async def billed_visit(core: Core, id_number: str, *amounts_fen: int) -> str:
    """A visit charged and checked out all self-pay; returns the bill number."""
    return (await checkout(core, await visit_with_charges(core, id_number, *amounts_fen)))["bill_no"]


async def pay(core: Core, bill_no: str, amount_fen: int, *, payment_no: str | None = None, channel: str = "window",
              hospital: str = "H1") -> dict[str, Any]:
    return await payments.pay_at_hospital(core, hospital, bill_no, {
        "payment_no": payment_no or next_no("P"), "channel": channel, "amount_fen": amount_fen,
    })


async def pay_in_full(core: Core, bill_no: str) -> dict[str, Any]:
    """Pay what the bill asks for now: its principal unpaid and its interest as accrued by now."""
    return await pay(core, bill_no, owed(await bill(core, bill_no), core.clock.now()).total_fen)


async def sweep_checked(core: Core) -> SweepReport:
    """Sweep, then prove it settled: a second sweep at the same instant finds nothing to do,
    and every invariant of the auditor holds."""
    report = await sweep(core)
    again = await sweep(core)
    assert (again.bills_overdue, again.bills_advanced, again.reminders, again.status_changes) == (0, 0, 0, 0)
    await audit(core, swept=True)
    return report


class OffersOnly:
    """An outbox sender that delivers a partner's offer only as billing.marketing.to_send allows, as
    bot/wechat_sender.py does, and counts every other notice as sent; `sent` is (member id, text)."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self.sent: list[tuple[int, str]] = []

    async def send(self, message: Outbox) -> None:
        if message.kind != marketing.KIND:
            return
        offer = await marketing.to_send(self.core, message.payload["offer_id"], message.member_id)
        self.sent.append((message.member_id, f"{offer.sender}: {offer.text('zh_Hant')}"))


# --- reading back ------------------------------------------------------------------------


async def bill(core: Core, bill_no: str) -> Bill:
    async with core.db.transaction() as session:
        return await session.scalar(select(Bill).where(Bill.bill_no == bill_no))


async def member(core: Core, member_id: int) -> Member:
    async with core.db.transaction() as session:
        return await session.get(Member, member_id)


async def status_of(core: Core, member_id: int) -> str:
    return (await member(core, member_id)).status


async def line(core: Core, member_id: int, kind: str = "outpatient") -> CreditLine | None:
    async with core.db.transaction() as session:
        return await session.scalar(select(CreditLine).where(CreditLine.member_id == member_id, CreditLine.kind == kind))


async def used_fen(core: Core, member_id: int, kind: str = "outpatient") -> int:
    return (await line(core, member_id, kind)).used_fen


async def outbox(core: Core, kind: str, member_id: int | None = None) -> list[Outbox]:
    query = select(Outbox).where(Outbox.kind == kind).order_by(Outbox.id)
    if member_id is not None:
        query = query.where(Outbox.member_id == member_id)
    async with core.db.transaction() as session:
        return list(await session.scalars(query))


async def events(core: Core, name: str, member_id: int | None = None) -> list[dict[str, Any]]:
    """The `data` of the programme events called `name`, oldest first."""
    return [row.payload["data"] for row in await outbox(core, EVENT, member_id) if row.payload["event"] == name]


async def reminder_offsets(core: Core, bill_no: str) -> list[int]:
    async with core.db.transaction() as session:
        return list(await session.scalars(
            select(Reminder.offset_hours).join(Bill, Bill.id == Reminder.bill_id)
            .where(Bill.bill_no == bill_no).order_by(Reminder.offset_hours)
        ))


async def row_counts(core: Core) -> dict[str, int]:
    """Rows per table: equal before and after a refused request means nothing changed."""
    async with core.db.transaction() as session:
        return {table.name: await session.scalar(select(func.count()).select_from(table))
                for table in Base.metadata.sorted_tables}


async def snapshot(core: Core) -> tuple[dict[str, int], list[tuple[int, int]]]:
    """Row counts plus every line's used_fen."""
    async with core.db.transaction() as session:
        lines = (await session.execute(select(CreditLine.id, CreditLine.used_fen).order_by(CreditLine.id))).all()
    return await row_counts(core), [tuple(line) for line in lines]
