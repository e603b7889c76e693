"""Figures for operators: `xinyi stats`."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

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

