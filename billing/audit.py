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
from typing import AsyncIterator, Iterable

from sqlalchemy import and_, bindparam, func, or_, select, text
from sqlalchemy.orm import Session

from billing.core import Core
from billing.invariants import Breach, Rows, check
from billing.ladder import decide, facts_for
from billing.metrics import BREACHES
from billing.policy import Policy
from storage.models import Bill, Charge, CreditLine, Member, Payment, Refund, StatusChange, Visit

log = logging.getLogger(__name__)
# Members (or visits of non-members) read per transaction: on SQLite every transaction holds
# the write lock, and a request may queue behind one batch (about 1,000 bills at 10 a member).
BATCH = 100
SLICE = 1000  # members the sweep checks besides those it touched


@dataclass
class AuditReport:
    members: int = 0
    bills: int = 0
    breaches: list[Breach] = field(default_factory=list)

    def add(self, other: AuditReport) -> None:
        self.members += other.members
        self.bills += other.bills
        self.breaches += other.breaches


async def audit_database(core: Core, *, batch_size: int = BATCH, swept: bool = False) -> AuditReport:
    """Every member, then the visits of people who are not members.
    swept: see `billing.invariants.check` (tests use it)."""
    now = core.clock.now()
    report = AuditReport()
    async for rows in _pages(core, _next_members, batch_size, core.policy, now if swept else None):
        report.add(_checked(rows, core.policy, now, swept))
    async for rows in _pages(core, _next_non_member_visits, batch_size):
        report.add(_checked(rows, core.policy, now, swept))
    return report


async def audit_members(core: Core, member_ids: Iterable[int], *, batch_size: int = BATCH) -> AuditReport:
    ids, now = sorted(set(member_ids)), core.clock.now()
    report = AuditReport()
    for start in range(0, len(ids), batch_size):
        rows = await _read(core, _members_rows, ids[start:start + batch_size], core.policy, None)
        report.add(_checked(rows, core.policy, now, False))
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
    by id after where the previous sweep stopped, going on from the first after the last,
    so that any ceil(members / slice_size) sweeps in a row check every member."""

    slice_size: int = SLICE
    after: int = 0  # the last member id of the previous slice

    async def run(self, core: Core, touched: Iterable[int]) -> AuditReport:
        ids = await _read(core, _member_ids, self.after, self.slice_size)
        if len(ids) < self.slice_size:  # past the last member
            ids += await _read(core, _member_ids, 0, self.slice_size - len(ids))
        self.after = ids[-1] if ids else 0
        report = await audit_members(core, [*touched, *ids])
        raise_alarm(report.breaches)
        return report


def _checked(rows: Rows, policy: Policy, now: datetime, swept: bool) -> AuditReport:
    return AuditReport(len(rows.members), len(rows.bills), check(rows, policy, now, swept=swept))


async def _pages(core: Core, read, size: int, *args) -> AsyncIterator[Rows]:
    """The rows `read(session, after, size, *args)` gives with the keys they were read by, page
    after page by key, until a page is not full."""
    after = 0
    while True:
        keys, rows = await _read(core, read, after, size, *args)
        yield rows
        if len(keys) < size:
            return
        after = keys[-1]


async def _read(core: Core, fn, *args):
    """`fn(session, *args)` in one transaction of its own, the loop's turn after it."""
    result = await core.db.run(_in_snapshot, fn, *args)
    await asyncio.sleep(0)
    return result


def _in_snapshot(session: Session, fn, *args):
    """One snapshot for all of `fn`'s reads. A SQLite transaction holds the write lock, so nobody
    commits meanwhile; PostgreSQL is asked for it before the transaction's first statement."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
    return fn(session, *args)


def _member_ids(session: Session, after: int, limit: int) -> list[int]:
    return list(session.scalars(select(Member.id).where(Member.id > after).order_by(Member.id).limit(limit)))


def _next_members(session: Session, after: int, limit: int, policy: Policy,
                  swept_at: datetime | None) -> tuple[list[int], Rows]:
    ids = _member_ids(session, after, limit)
    return ids, _members_rows(session, ids, policy, swept_at)


# Built once (building a statement costs more than SQLite takes to run it), and each an
# indexed read: an OR over subqueries would make PostgreSQL scan the whole table per batch.
_IDS = bindparam("ids", expanding=True)  # the members of one batch
_VISIT = (Visit.id, Visit.visit_no, Visit.line_id, Visit.patient_id, Visit.on_credit, Visit.status)
_MEMBERS = select(Member.id, Member.status).where(Member.id.in_(_IDS))
_CHANGES = (select(StatusChange.member_id, StatusChange.from_status, StatusChange.to_status)
            .where(StatusChange.member_id.in_(_IDS)).order_by(StatusChange.id))
_LINES = select(CreditLine.id, CreditLine.member_id, CreditLine.limit_fen, CreditLine.used_fen)
_THEIR_LINES = _LINES.where(CreditLine.member_id.in_(_IDS))
_LINES_BY_ID = _LINES.where(CreditLine.id.in_(bindparam("lines", expanding=True)))
_THEIR_VISITS = select(*_VISIT).where(or_(Visit.line_id.in_(bindparam("lines", expanding=True)),
                                          and_(Visit.line_id.is_(None), Visit.patient_id.in_(_IDS))))
_VISITS_BY_ID = select(*_VISIT).where(Visit.id.in_(bindparam("visits", expanding=True)))
_NON_MEMBER_VISITS = (select(*_VISIT)
                      .where(Visit.line_id.is_(None), Visit.patient_id.is_(None), Visit.id > bindparam("after"))
                      .order_by(Visit.id).limit(bindparam("limit")))
_CHARGES = (select(Charge.id, Charge.charge_no, Charge.visit_id, Charge.amount_fen, Charge.held_fen, Charge.status, Charge.insurance_fen,
                   Charge.personal_account_fen, Charge.self_pay_fen)
            .where(Charge.visit_id.in_(bindparam("visits", expanding=True))))
_BILLS = select(Bill.id, Bill.bill_no, Bill.visit_id, Bill.payer_id, Bill.line_id, Bill.self_pay_fen, Bill.paid_fen,
                Bill.status, Bill.due_at, Bill.daily_interest_ppm, Bill.interest_fen, Bill.interest_paid_fen,
                Bill.interest_through).where(Bill.payer_id.in_(_IDS))
_PAYMENTS = select(Payment.id, Payment.source, Payment.payment_no, Payment.bill_id, Payment.amount_fen,
                   Payment.applied_fen).where(Payment.bill_id.in_(bindparam("bills", expanding=True)))
_REFUNDS = (select(Refund.id, Refund.bill_id, Refund.payment_id, Refund.amount_fen, Refund.reason)
            .where(Refund.bill_id.in_(bindparam("bills", expanding=True))))
# The database's unique keys forbid these; the auditor does not take that on trust.
_BILL_TWINS = (select(Bill.visit_id, func.count(), func.min(Bill.id))
               .where(Bill.visit_id.in_(bindparam("visits", expanding=True)))
               .group_by(Bill.visit_id).having(func.count() > 1))
# By sources times numbers: a pair none of the batch's payments has is left out by the check (its first copy is not theirs).
_PAYMENT_TWINS = (select(Payment.source, Payment.payment_no, func.count(), func.min(Payment.id))
                  .where(Payment.source.in_(bindparam("sources", expanding=True)),
                         Payment.payment_no.in_(bindparam("numbers", expanding=True)))
                  .group_by(Payment.source, Payment.payment_no).having(func.count() > 1))
_CHUNK = 5000  # ids bound in one statement; the drivers allow 32767


def _members_rows(session: Session, ids: list[int], policy: Policy, swept_at: datetime | None) -> Rows:
    if not ids:
        return Rows(members={})
    them = {"ids": ids}
    members = dict(session.execute(_MEMBERS, them).all())
    bills = session.execute(_BILLS, them).all()
    bill_ids = {b.id for b in bills}
    payments = _by_id(session, _PAYMENTS, "bills", bill_ids)
    lines = {line.id: line for line in session.execute(_THEIR_LINES, them)}
    own_lines = list(lines)
    # Rows of others that theirs name: none, unless a bill is on another's line or visit.
    lines.update((ln.id, ln) for ln in _by_id(session, _LINES_BY_ID, "lines", {b.line_id for b in bills} - lines.keys()))
    visits = {v.id: v for v in session.execute(_THEIR_VISITS, {**them, "lines": own_lines})}
    own_visits = set(visits)
    visits.update((v.id, v) for v in _by_id(session, _VISITS_BY_ID, "visits", {b.visit_id for b in bills} - own_visits))
    rows = Rows(
        members=members,
        changes=session.execute(_CHANGES, them).all(),
        lines=lines,
        visits=visits,
        own_visits=own_visits,
        charges=_by_id(session, _CHARGES, "visits", visits),
        bills=bills,
        payments=payments,
        refunds=_by_id(session, _REFUNDS, "bills", bill_ids),
        bill_twins=_by_id(session, _BILL_TWINS, "visits", {b.visit_id for b in bills}),
        payment_twins=_by_id(session, _PAYMENT_TWINS, "numbers", {p.payment_no for p in payments},
                             sources=sorted({p.source for p in payments})),
    )
    if swept_at is not None and members:
        facts = facts_for(session, policy, sorted(members), swept_at)
        rows.pending_moves = {m: d for m, f in facts.items() if (d := decide(policy, f)) is not None}
    return rows


def _next_non_member_visits(session: Session, after: int, limit: int) -> tuple[list[int], Rows]:
    """Visits of people who are not members: no line, no bill, only their charges to check."""
    visits = {v.id: v for v in session.execute(_NON_MEMBER_VISITS, {"after": after, "limit": limit})}
    return list(visits), Rows(members={}, visits=visits, own_visits=set(visits),
                              charges=_by_id(session, _CHARGES, "visits", visits))


def _by_id(session: Session, statement, name: str, ids: Iterable, **params) -> list:
    """The rows of `statement` for `ids`, bound as `name` a chunk at a time."""
    ids = sorted(ids)
    return [row for start in range(0, len(ids), _CHUNK)
            for row in session.execute(statement, {name: ids[start:start + _CHUNK], **params})]
