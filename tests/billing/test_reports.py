"""`xinyi stats` and `xinyi export overdue` figures on SQLite and PostgreSQL."""
from __future__ import annotations

from datetime import timedelta

from billing.exports import overdue_bills
from billing.reports import BillTotals, programme_stats
from billing.sweep import sweep
from helpers import billed_visit, enrol, pay
from storage.models import BILL_STATUSES, MEMBER_STATUSES

CHEN_JING = "320602198305160096"
CHEN_DEHUA = "320600195009230102"


async def test_stats_of_an_empty_programme_list_every_status(make_core):
    stats = await programme_stats((await make_core()).db)
    assert stats.members == dict.fromkeys(MEMBER_STATUSES, 0)
    assert stats.bills == dict.fromkeys(BILL_STATUSES, BillTotals())
    assert (stats.outbox_pending, stats.outbox_dead, stats.refunds_pending, stats.refunds_pending_fen) == (0, 0, 0, 0)


async def test_stats_and_overdue_list_follow_bills_payments_and_time(make_core, clock):
    core = await make_core("nantong")  # due in 24 h, no insurer advance, suspended after 30 days
    await enrol(core, CHEN_JING)
    await enrol(core, CHEN_DEHUA)
    old = await billed_visit(core, CHEN_JING, 30000)
    clock.advance(hours=12)
    partly_paid = await billed_visit(core, CHEN_DEHUA, 8000)
    await pay(core, partly_paid, 3000)
    paid = await billed_visit(core, CHEN_DEHUA, 500)
    await pay(core, paid, 700)  # 2.00 yuan too much: a refund is owed
    clock.advance(hours=20)
    not_yet_due = await billed_visit(core, CHEN_JING, 1000)

    now = clock.advance(hours=10)  # 42 h after the first bill
    await sweep(core, now)
    rows = [row async for row in overdue_bills(core, now)]
    assert [(r.bill_no, r.member_name, r.id_number_masked, r.member_status, r.unpaid_fen, r.days_overdue, r.bill_status)
            for r in rows] == [
        (old, "陈静", "320602********0096", "active", 30000, 0, "overdue"),
        (partly_paid, "陈德华", "320600********0102", "active", 5000, 0, "overdue"),
    ]
    assert rows[0].due_at == now - timedelta(hours=42) + timedelta(hours=24)

    later = now + timedelta(days=31)
    assert [(r.bill_no, r.days_overdue) for r in [row async for row in overdue_bills(core, later)]] == [
        (old, 31), (partly_paid, 31), (not_yet_due, 30),
    ]

    stats = await programme_stats(core.db)
    assert stats.members["active"] == 2 and sum(stats.members.values()) == 2
    assert stats.bills["open"] == BillTotals(1, 1000, 1000)
    assert stats.bills["overdue"] == BillTotals(2, 38000, 35000)
    assert stats.bills["paid"] == BillTotals(1, 500, 0)
    assert (stats.refunds_pending, stats.refunds_pending_fen) == (1, 200)
    assert stats.outbox_pending > 0 and stats.outbox_dead == 0
