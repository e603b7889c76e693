"""The auditor, on in production: reads the money and status tables in batches of members
and checks billing.invariants over each (used credit = holds + unpaid self-pay, bills =
their items, payments applied once, ...).

`xinyi audit` runs it over the whole database; the sweep runs it over the members it
touched plus a rolling slice of the rest (`RollingAudit`). A batch is read in one
transaction (REPEATABLE READ on PostgreSQL: a payment committed between two of its reads
would look like a breach), and the loop gets a turn between batches.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Iterable

from prometheus_client import Counter
from sqlalchemy import and_, bindparam, func, literal, or_, select
from sqlalchemy.orm import Session, aliased

from billing.core import Core
from billing.invariants import Breach, Rows, check
from billing.ladder import decide, facts_for
from billing.policy import Policy
from storage.models import Bill, Charge, CreditLine, Member, Payment, Refund, StatusChange, Visit

log = logging.getLogger(__name__)
BATCH = 500  # members (or visits of non-members) read per transaction
SLICE = 1000  # members the sweep checks besides those it touched
BREACHES = Counter("xinyi_audit_breaches_total", "Invariant breaches the auditor found", ["invariant"])


@dataclass
class AuditReport:
    members: int = 0
    bills: int = 0
    breaches: list[Breach] = field(default_factory=list)

    def add(self, other: AuditReport) -> None:
        self.members += other.members
        self.bills += other.bills
        self.breaches += other.breaches


async def audit_database(core: Core, *, batch_size: int = BATCH, swept: bool = False,
                         limit_lowered: bool = False) -> AuditReport:
    """Every member, then the visits of people who are not members.
    swept and limit_lowered: see `billing.invariants.check` (tests use them)."""
    now = core.clock.now()
    report = AuditReport()
    for read in (_next_members, _next_non_member_visits):
        after, full = 0, True
        while full:
            rows = await _read(core, read, after, batch_size, core.policy, now if swept else None)
            report.add(_checked(rows, core.policy, now, swept, limit_lowered))
            keys = rows.members or rows.visits  # what the page was read by
            full, after = len(keys) == batch_size, max(keys, default=after)
    return report


async def audit_members(core: Core, member_ids: Iterable[int], *, batch_size: int = BATCH) -> AuditReport:
    ids, now = sorted(set(member_ids)), core.clock.now()
    report = AuditReport()
    for start in range(0, len(ids), batch_size):
        rows = await _read(core, _members_rows, ids[start:start + batch_size], core.policy, None)
        report.add(_checked(rows, core.policy, now, False, False))
    return report


def raise_alarm(breaches: Iterable[Breach]) -> None:
    """One ERROR line and one count per breach: the operator's page, and the metric."""
    for breach in breaches:
        BREACHES.labels(breach.invariant).inc()
        log.error("audit breach: invariant=%s member=%s bill=%s: %s", breach.invariant, breach.member_id,
                  breach.bill_no or "-", breach.text)


@dataclass
class RollingAudit:
    """The sweep's audit: the members a sweep touched, plus the next `slice_size` members
    by id after where the previous sweep stopped, wrapping around at the end, so that
    every member is checked once every ceil(members / slice_size) sweeps at most."""

    slice_size: int = SLICE
    after: int = 0  # the last member id of the previous slice

    async def run(self, core: Core, touched: Iterable[int]) -> AuditReport:
        ids = await _read(core, _member_ids, self.after, self.slice_size)
        self.after = ids[-1] if len(ids) == self.slice_size else 0
        report = await audit_members(core, [*touched, *ids])
        raise_alarm(report.breaches)
        return report


def _checked(rows: Rows, policy: Policy, now: datetime, swept: bool, limit_lowered: bool) -> AuditReport:
    return AuditReport(len(rows.members), len(rows.bills),
                       check(rows, policy, now, swept=swept, limit_lowered=limit_lowered))


async def _read(core: Core, fn, *args):
    """`fn(session, *args)` in one transaction of its own, the loop's turn after it."""
    async with core.db.transaction() as session:
        if not core.db.is_sqlite:  # SQLite's write transaction sees no one else's commits anyway
            await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        result = await session.run_sync(fn, *args)
    await asyncio.sleep(0)
    return result


def _member_ids(session: Session, after: int, limit: int) -> list[int]:
    return list(session.scalars(select(Member.id).where(Member.id > after).order_by(Member.id).limit(limit)))


def _next_members(session: Session, after: int, limit: int, policy: Policy, swept_at: datetime | None) -> Rows:
    return _members_rows(session, _member_ids(session, after, limit), policy, swept_at)


IDS = bindparam("ids", expanding=True)  # the members of one batch
_PAID_BY_THEM = Bill.payer_id.in_(IDS)
_THEIR_BILLS = select(Bill.id).where(_PAID_BY_THEM)
_VISIT = (Visit.id, Visit.visit_no, Visit.line_id, Visit.on_credit, Visit.status)
_PAYMENT_TWIN, _BILL_TWIN = aliased(Payment), aliased(Bill)
# Built once: building a statement costs more than SQLite takes to run it.
_MEMBERS = select(Member.id, Member.status).where(Member.id.in_(IDS))
_CHANGES = (select(StatusChange.member_id, StatusChange.from_status, StatusChange.to_status)
            .where(StatusChange.member_id.in_(IDS)).order_by(StatusChange.id))
_LINES = (select(CreditLine.id, CreditLine.member_id, CreditLine.limit_fen, CreditLine.used_fen)
          .where(or_(CreditLine.member_id.in_(IDS), CreditLine.id.in_(select(Bill.line_id).where(_PAID_BY_THEM)))))
_VISITS = (select(*_VISIT, func.coalesce(CreditLine.member_id, Visit.patient_id).label("owner"))
           .outerjoin(CreditLine, CreditLine.id == Visit.line_id)
           .where(or_(Visit.line_id.in_(select(CreditLine.id).where(CreditLine.member_id.in_(IDS))),
                      and_(Visit.line_id.is_(None), Visit.patient_id.in_(IDS)),
                      Visit.id.in_(select(Bill.visit_id).where(_PAID_BY_THEM)))))
_NON_MEMBER_VISITS = (select(*_VISIT, literal(None).label("owner"))
                      .where(Visit.line_id.is_(None), Visit.patient_id.is_(None), Visit.id > bindparam("after"))
                      .order_by(Visit.id).limit(bindparam("limit")))
_CHARGES = select(Charge.id, Charge.charge_no, Charge.visit_id, Charge.amount_fen, Charge.status, Charge.insurance_fen,
                  Charge.personal_account_fen, Charge.self_pay_fen).where(Charge.visit_id.in_(bindparam("visits", expanding=True)))
_BILLS = select(Bill.id, Bill.bill_no, Bill.visit_id, Bill.payer_id, Bill.line_id, Bill.self_pay_fen, Bill.paid_fen,
                Bill.status, Bill.due_at).where(_PAID_BY_THEM)
_PAYMENTS = select(Payment.id, Payment.source, Payment.payment_no, Payment.bill_id, Payment.amount_fen,
                   Payment.applied_fen).where(Payment.bill_id.in_(_THEIR_BILLS))
_REFUNDS = (select(Refund.id, Refund.bill_id, Refund.payment_id, Refund.amount_fen, Refund.reason)
            .where(Refund.bill_id.in_(_THEIR_BILLS)))
# The database's unique keys forbid these; the auditor does not take that on trust.
_BILL_TWINS = (select(Bill.visit_id, func.count(_BILL_TWIN.id.distinct()), func.min(_BILL_TWIN.id))
               .join(_BILL_TWIN, _BILL_TWIN.visit_id == Bill.visit_id).where(_PAID_BY_THEM)
               .group_by(Bill.visit_id).having(func.count(_BILL_TWIN.id.distinct()) > 1))
_PAYMENT_TWINS = (select(Payment.source, Payment.payment_no, func.count(_PAYMENT_TWIN.id.distinct()),
                         func.min(_PAYMENT_TWIN.id))
                  .join(_PAYMENT_TWIN, and_(_PAYMENT_TWIN.source == Payment.source,
                                            _PAYMENT_TWIN.payment_no == Payment.payment_no))
                  .where(Payment.bill_id.in_(_THEIR_BILLS))
                  .group_by(Payment.source, Payment.payment_no).having(func.count(_PAYMENT_TWIN.id.distinct()) > 1))


def _members_rows(session: Session, ids: list[int], policy: Policy, swept_at: datetime | None) -> Rows:
    if not ids:
        return Rows(members={})
    them = {"ids": ids}
    members = dict(session.execute(_MEMBERS, them).all())
    visits = {v.id: v for v in session.execute(_VISITS, them)}
    rows = Rows(
        members=members,
        changes=session.execute(_CHANGES, them).all(),
        lines={line.id: line for line in session.execute(_LINES, them)},
        visits=visits,
        own_visits={v.id for v in visits.values() if v.owner in members},
        charges=_charges_of(session, list(visits)),
        bills=session.execute(_BILLS, them).all(),
        payments=session.execute(_PAYMENTS, them).all(),
        refunds=session.execute(_REFUNDS, them).all(),
        bill_twins=session.execute(_BILL_TWINS, them).all(),
        payment_twins=session.execute(_PAYMENT_TWINS, them).all(),
    )
    if swept_at is not None and members:
        facts = facts_for(session, policy, sorted(members), swept_at)
        rows.pending_moves = {m: d for m, f in facts.items() if (d := decide(policy, f)) is not None}
    return rows


def _next_non_member_visits(session: Session, after: int, limit: int, *_) -> Rows:
    """Visits of people who are not members: no line, no bill, only their charges to check."""
    visits = {v.id: v for v in session.execute(_NON_MEMBER_VISITS, {"after": after, "limit": limit})}
    return Rows(members={}, visits=visits, own_visits=set(visits), charges=_charges_of(session, list(visits)))


def _charges_of(session: Session, visit_ids: list[int]) -> list:
    return session.execute(_CHARGES, {"visits": visit_ids}).all() if visit_ids else []
