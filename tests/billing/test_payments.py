"""Payments at the hospital: partial payments count, money beyond what a bill owes is
flagged for refund and never kept, each payment number counts once, and paying restores
the line and (where the policy allows) the member."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from audit import audit
from billing.accounts import bills
from billing.errors import Conflict
from billing.hospitals import add_hospital
from billing.payments import get_bill
from helpers import (
    bill, billed_visit, checkout, enrol, open_visit, outbox, pay, row_counts, status_of, sweep_checked, used_fen,
    visit_with_charges,
)
from storage.models import Payment, Refund

ZHANG_WEI = "110105198503120012"


async def refunds(core) -> list[tuple[int, str]]:
    async with core.db.transaction() as session:
        return (await session.execute(select(Refund.amount_fen, Refund.reason).order_by(Refund.id))).all()


@pytest.fixture
async def core(make_core):
    core = await make_core("beijing-shijingshan")
    core.member_id = await enrol(core, ZHANG_WEI)
    return core


async def test_partial_payments_add_up(core):
    bill_no = await billed_visit(core, ZHANG_WEI, 10000)
    for amount_fen, paid_fen, status in ((2500, 2500, "open"), (4000, 6500, "open"), (3500, 10000, "paid")):
        view = await pay(core, bill_no, amount_fen, channel="kiosk")
        assert (view["paid_fen"], view["status"]) == (paid_fen, status)
        assert await used_fen(core, core.member_id) == 10000 - paid_fen
        await audit(core)
    assert await refunds(core) == []
    assert await get_bill(core, "H1", bill_no) == view
    assert (await bill(core, bill_no)).paid_at == core.clock.now()


async def test_a_partial_payment_does_not_lift_a_suspension(core):
    bill_no = await billed_visit(core, ZHANG_WEI, 10000)
    core.clock.advance(hours=49)
    await sweep_checked(core)
    assert await status_of(core, core.member_id) == "suspended"
    view = await pay(core, bill_no, 9999, channel="face")
    assert (view["status"], view["paid_fen"]) == ("advanced", 9999)
    assert await status_of(core, core.member_id) == "suspended"
    await audit(core)
    await sweep_checked(core)

    await pay(core, bill_no, 1)
    assert await status_of(core, core.member_id) == "active"
    assert await used_fen(core, core.member_id) == 0
    assert (await open_visit(core, ZHANG_WEI)).on_credit
    await audit(core)


async def test_overpayment_is_applied_up_to_the_bill_and_the_rest_refunded(core):
    bill_no = await billed_visit(core, ZHANG_WEI, 10000)
    await pay(core, bill_no, 4000)
    view = await pay(core, bill_no, 7000)
    assert (view["status"], view["paid_fen"]) == ("paid", 10000)
    assert await refunds(core) == [(1000, "overpaid")]
    assert [(m.member_id, m.payload["amount_fen"], m.payload["reason"]) for m in await outbox(core, "refund_due")] == [
        (core.member_id, 1000, "overpaid")
    ]
    await audit(core)


async def test_a_double_payment_is_flagged_for_refund(core):
    bill_no = await billed_visit(core, ZHANG_WEI, 10000)
    await pay(core, bill_no, 10000, channel="window")
    view = await pay(core, bill_no, 10000, channel="cash")  # the relative paid as well
    assert (view["status"], view["paid_fen"]) == ("paid", 10000)
    assert await refunds(core) == [(10000, "already_paid")]
    async with core.db.transaction() as session:
        applied = (await session.execute(select(Payment.amount_fen, Payment.applied_fen).order_by(Payment.id))).all()
    assert applied == [(10000, 10000), (10000, 0)]
    assert await used_fen(core, core.member_id) == 0
    await audit(core)


async def test_a_payment_number_counts_once(core):
    bill_no = await billed_visit(core, ZHANG_WEI, 10000)
    first = await pay(core, bill_no, 3000, payment_no="P-1")
    assert await pay(core, bill_no, 3000, payment_no="P-1") == first  # the window retried
    before = await row_counts(core)
    with pytest.raises(Conflict) as raised:
        await pay(core, bill_no, 3001, payment_no="P-1")
    assert raised.value.details == {"reason": "idempotency_key_reused", "scope": "payment", "key": "P-1"}
    assert await row_counts(core) == before
    assert ((await bill(core, bill_no)).paid_fen, before["payments"]) == (3000, 1)
    await audit(core)


async def test_payment_numbers_are_per_hospital(core):
    await add_hospital(core, "H2", "第二医院", secret="hospital-secret-abcdefghij")
    here = await billed_visit(core, ZHANG_WEI, 1000)
    there = (await checkout(core, await visit_with_charges(core, ZHANG_WEI, 2000, hospital="H2")))["bill_no"]
    assert (await pay(core, here, 1000, payment_no="0001"))["status"] == "paid"
    assert (await pay(core, there, 2000, payment_no="0001", hospital="H2"))["status"] == "paid"
    with pytest.raises(Conflict):  # H1's 0001 paid another bill
        await pay(core, there, 2000, payment_no="0001")
    assert await used_fen(core, core.member_id) == 0
    await audit(core)


async def test_a_list_of_bills_gives_each_bill_its_own_items_with_their_split(core):
    first = await billed_visit(core, ZHANG_WEI, 1_000, 2_000)
    visit = await visit_with_charges(core, ZHANG_WEI, 3_000)
    second = (await checkout(core, visit, insurance={visit.charge_nos[0]: 1_200}))["bill_no"]
    await pay(core, first, 3_000)
    unpaid, paid = [await bills(core, payer_id=core.member_id, unpaid=flag) for flag in (True, False)]
    assert [(b.bill_no, [(i["amount_fen"], i["insurance_fen"], i["self_pay_fen"]) for i in b.items]) for b in unpaid] == [
        (second, [(3_000, 1_200, 1_800)])]
    assert [(b.bill_no, [i["amount_fen"] for i in b.items]) for b in paid] == [(first, [1_000, 2_000])]
