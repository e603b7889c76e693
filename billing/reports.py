"""Figures for operators: `xinyi stats` and the overdue list of `xinyi export overdue`."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import AsyncIterator

from sqlalchemy import func, select

from billing.core import Core
from billing.ladder import DAY, UNPAID
from billing.pii import mask_id_number
from storage.db import Database
from storage.models import BILL_STATUSES, MEMBER_STATUSES, Bill, Member, Outbox, Refund


@dataclass(frozen=True)
class BillTotals:
    count: int = 0
    self_pay_fen: int = 0
    unpaid_fen: int = 0


@dataclass(frozen=True)
class Stats:
    members: dict[str, int]  # every member status, in MEMBER_STATUSES order
    bills: dict[str, BillTotals]  # every bill status, in BILL_STATUSES order
    outbox_pending: int
    outbox_dead: int
    refunds_pending: int
    refunds_pending_fen: int


@dataclass(frozen=True)
class OverdueRow:
    bill_no: str
    member_name: str
    id_number_masked: str
    member_status: str
    unpaid_fen: int
    due_at: datetime
    days_overdue: int
    bill_status: str


async def programme_stats(db: Database) -> Stats:
    async with db.transaction() as session:
        members = dict((await session.execute(select(Member.status, func.count()).group_by(Member.status))).all())
        bills = {
            status: BillTotals(count, int(self_pay), int(unpaid))
            for status, count, self_pay, unpaid in await session.execute(
                select(Bill.status, func.count(), func.sum(Bill.self_pay_fen), func.sum(Bill.self_pay_fen - Bill.paid_fen))
                .group_by(Bill.status)
            )
        }
        outbox = dict((await session.execute(
            select(Outbox.status, func.count()).where(Outbox.status.in_(("pending", "dead"))).group_by(Outbox.status)
        )).all())
        refunds, refunds_fen = (await session.execute(
            select(func.count(), func.coalesce(func.sum(Refund.amount_fen), 0)).where(Refund.status == "pending")
        )).one()
    return Stats(
        members={status: members.get(status, 0) for status in MEMBER_STATUSES},
        bills={status: bills.get(status, BillTotals()) for status in BILL_STATUSES},
        outbox_pending=outbox.get("pending", 0),
        outbox_dead=outbox.get("dead", 0),
        refunds_pending=refunds,
        refunds_pending_fen=int(refunds_fen),
    )


async def overdue_bills(core: Core, now: datetime) -> AsyncIterator[OverdueRow]:
    """Unpaid bills past due at `now`, oldest first, streamed; the payer's ID number masked."""
    query = (
        select(Bill.bill_no, Member.name, Member.id_number_enc, Member.status, Bill.self_pay_fen - Bill.paid_fen,
               Bill.due_at, Bill.status)
        .join(Member, Member.id == Bill.payer_id)
        .where(Bill.status.in_(UNPAID), Bill.due_at < now)
        .order_by(Bill.due_at, Bill.id)
        .execution_options(yield_per=1000)
    )
    async with core.db.transaction() as session:
        async for bill_no, name, id_number_enc, member_status, unpaid, due_at, bill_status in await session.stream(query):
            yield OverdueRow(bill_no, name, mask_id_number(core.pii.decrypt(id_number_enc)), member_status, unpaid, due_at,
                             (now - due_at) // DAY, bill_status)
