"""Concurrent callers on one line, one bill, one visit: on SQLite (BEGIN IMMEDIATE, busy
timeout) and PostgreSQL (row locks, unique keys) alike the line is never overdrawn, a
payment counts once, a visit has one bill, and nobody sees "database is locked"."""
from __future__ import annotations

import asyncio
import logging

import pytest
from sqlalchemy import func, select

from audit import audit
from billing.errors import Conflict, CreditLimitExceeded, InvalidInput
from billing.payments import pay_at_hospital
from billing.sweep import sweep
from billing.visits import cancel_charge, checkout, open_visit, post_charge
from storage.models import Bill, Charge, CreditLine, Outbox, Payment, Refund, Reminder
from test_simulation import HOSPITAL, enrol_resident

LIMIT_FEN = 200_000  # the Beijing line
PATIENT = "110105198503120012"  # 张伟 in the demo registry


@pytest.fixture
async def core(make_core):
    core = await make_core("beijing-shijingshan", hospital=HOSPITAL)
    await enrol_resident(core, await core.registry.lookup(PATIENT))
    return core


async def visit(core, visit_no: str) -> None:
    await open_visit(core, HOSPITAL, {"visit_no": visit_no, "id_number": PATIENT, "department": "内科",
                                      "kind": "outpatient", "exclusion": None})


def charge(charge_no: str, amount_fen: int) -> dict:
    return {"charge_no": charge_no, "category": "drug", "name": "药品", "amount_fen": amount_fen}


def self_pay_split(charge_no: str, amount_fen: int) -> dict:
    return {"items": [{"charge_no": charge_no, "insurance_fen": 0, "personal_account_fen": 0, "self_pay_fen": amount_fen}]}


async def bill_of(core, amount_fen: int) -> str:
    await visit(core, "VB")
    await post_charge(core, HOSPITAL, "VB", charge("CB", amount_fen))
    return (await checkout(core, HOSPITAL, "VB", self_pay_split("CB", amount_fen)))["bill_no"]


async def count(core, query) -> int:
    async with core.db.transaction() as session:
        return await session.scalar(query)


def split_outcomes(results: list) -> tuple[list, list]:
    """Answers and errors of a gather(return_exceptions=True); anything but a domain refusal fails here."""
    answers = [r for r in results if not isinstance(r, BaseException)]
    errors = [r for r in results if isinstance(r, BaseException)]
    unexpected = [e for e in errors if not isinstance(e, (CreditLimitExceeded, Conflict, InvalidInput))]
    assert not unexpected, f"{len(unexpected)} unexpected errors, first: {unexpected[0]!r}"
    return answers, errors


async def test_concurrent_charges_never_overdraw_the_line(core):
    amount_fen = 3_000
    for visit_no in ("V1", "V2", "V3", "V4"):
        await visit(core, visit_no)
    results = await asyncio.gather(
        *(post_charge(core, HOSPITAL, f"V{1 + i % 4}", charge(f"C{i:03d}", amount_fen)) for i in range(200)),
        return_exceptions=True,
    )
    answers, errors = split_outcomes(results)
    fits = LIMIT_FEN // amount_fen
    assert len(answers) == fits
    assert all(isinstance(e, CreditLimitExceeded) for e in errors) and len(errors) == 200 - fits
    async with core.db.transaction() as session:
        line = await session.scalar(select(CreditLine))
        held = await session.scalar(select(func.sum(Charge.amount_fen)).where(Charge.status == "held"))
    assert line.used_fen == held == fits * amount_fen <= line.limit_fen
    assert sorted(a["available_fen"] for a in answers) == [LIMIT_FEN - n * amount_fen for n in range(fits, 0, -1)]
    await audit(core)


async def test_one_payment_delivered_five_times_at_once_counts_once(core):
    bill_no = await bill_of(core, 15_000)
    payment = {"payment_no": "W-1", "channel": "window", "amount_fen": 6_000}
    answers, _ = split_outcomes(await asyncio.gather(
        *(pay_at_hospital(core, HOSPITAL, bill_no, dict(payment)) for _ in range(5)), return_exceptions=True
    ))
    assert len(answers) == 5 and all(a == answers[0] for a in answers)
    assert answers[0]["paid_fen"] == 6_000 and answers[0]["status"] == "open"
    assert await count(core, select(func.count()).select_from(Payment)) == 1
    assert await count(core, select(Bill.paid_fen)) == 6_000
    await audit(core)


async def test_two_payments_that_together_exceed_the_bill(core):
    bill_no = await bill_of(core, 15_000)
    answers, _ = split_outcomes(await asyncio.gather(
        pay_at_hospital(core, HOSPITAL, bill_no, {"payment_no": "W-1", "channel": "window", "amount_fen": 10_000}),
        pay_at_hospital(core, HOSPITAL, bill_no, {"payment_no": "K-1", "channel": "kiosk", "amount_fen": 10_000}),
        return_exceptions=True,
    ))
    assert len(answers) == 2
    async with core.db.transaction() as session:
        applied = dict((await session.execute(select(Payment.applied_fen, Payment.id))).all())
        refunds = (await session.execute(select(Refund.amount_fen, Refund.reason, Refund.payment_id))).all()
        bill = await session.scalar(select(Bill))
    assert sorted(applied) == [5_000, 10_000]
    assert refunds == [(5_000, "overpaid", applied[5_000])]
    assert (bill.paid_fen, bill.status) == (15_000, "paid")
    await audit(core)


async def test_a_checkout_sent_twice_at_once_makes_one_bill(core):
    await visit(core, "V1")
    await post_charge(core, HOSPITAL, "V1", charge("C1", 8_000))
    split = {"items": [{"charge_no": "C1", "insurance_fen": 5_000, "personal_account_fen": 1_000, "self_pay_fen": 2_000}]}
    answers, _ = split_outcomes(await asyncio.gather(
        *(checkout(core, HOSPITAL, "V1", split) for _ in range(5)), return_exceptions=True
    ))
    assert len(answers) == 5 and len({a["bill_no"] for a in answers}) == 1
    assert await count(core, select(func.count()).select_from(Bill)) == 1
    assert await count(core, select(CreditLine.used_fen)) == 2_000
    await audit(core)


async def test_a_charge_and_a_cancel_arriving_during_a_checkout_wait_for_it(core):
    """A charge lands wholly before a checkout or is refused after it, never as a hold on a
    closed visit; a cancel of a billed item takes it off the bill."""
    await visit(core, "V1")
    await post_charge(core, HOSPITAL, "V1", charge("C1", 8_000))
    split = {"items": [{"charge_no": "C1", "insurance_fen": 5_000, "personal_account_fen": 1_000, "self_pay_fen": 2_000}]}
    async with core.db.transaction() as session:
        # Hold the line, so that the checkout stops halfway, with the visit locked.
        await session.execute(select(CreditLine).with_for_update())
        checking_out = asyncio.create_task(checkout(core, HOSPITAL, "V1", split))
        await asyncio.sleep(0.3)
        late = [asyncio.create_task(post_charge(core, HOSPITAL, "V1", charge("L1", 500))),
                asyncio.create_task(cancel_charge(core, HOSPITAL, "V1", "C1"))]
        await asyncio.sleep(0.3)
    results = await asyncio.gather(checking_out, *late, return_exceptions=True)
    split_outcomes(results)
    bill, charged, cancelled = results
    if not isinstance(bill, Exception):  # on SQLite the three may take the freed database in any order
        assert isinstance(charged, Conflict), charged
        assert cancelled["status"] == "refunded", cancelled
    await audit(core)


async def test_sweeps_of_several_workers_at_once_remind_and_move_each_bill_once(core, clock, caplog):
    for n in range(6):
        await visit(core, f"VS{n}")
        await post_charge(core, HOSPITAL, f"VS{n}", charge(f"CS{n}", 1000))
        await checkout(core, HOSPITAL, f"VS{n}", self_pay_split(f"CS{n}", 1000))

    async def counts() -> list[int]:
        return [await count(core, select(func.count()).select_from(Reminder)),
                *[await count(core, select(func.count()).select_from(Outbox).where(Outbox.kind == kind))
                  for kind in ("bill_reminder", "bill_overdue")]]

    before = await counts()
    clock.advance(days=20)  # past the due date and every reminder: only the latest reminder goes
    reports = await asyncio.gather(*(sweep(core) for _ in range(3)), return_exceptions=True)
    assert not [r for r in reports if isinstance(r, BaseException)], reports
    assert sum(r.reminders for r in reports) == 6 and sum(r.bills_overdue for r in reports) == 6
    assert [after - was for after, was in zip(await counts(), before)] == [6, 6, 6]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    await audit(core)
