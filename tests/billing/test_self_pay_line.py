"""The line holds the self-pay part (seed 001: the Beijing line is "个人自付部分", about 15,000
yuan of total cost before 2,000 of self-pay): an order holds the HIS's self-pay estimate when
it sends one, else the policy's share of its price; checkout trues the hold up to the real
self-pay, past the limit if need be (the patient was treated), and the policy's ladder decides
what follows (seed 004, Xiamen: "超过其信用就医额度的 ... 暂停"). The auditor checks every money
invariant after every step."""
from __future__ import annotations

from dataclasses import replace

import pytest

from audit import audit
from billing.enquiry import eligibility_report
from billing.errors import Conflict, CreditLimitExceeded, InvalidInput
from billing.visits import cancel_charge, post_charge
from helpers import (
    bill, charge, checkout, enrol, open_visit, outbox, pay_in_full, status_of, sweep_checked, used_fen,
)

ZHANG_WEI = "110105198503120012"  # Beijing, line 2,000 yuan
WU_LIHUA = "350200197509300157"  # Xiamen, score 620: line 3,000 yuan


async def test_orders_hold_the_his_estimate_so_a_big_order_fits_and_checkout_trues_it_up(make_core):
    core = await make_core()
    member_id = await enrol(core, ZHANG_WEI)
    visit = await open_visit(core, ZHANG_WEI)
    for amount_fen, estimate_fen in ((30000, 6000), (35000, 9000)):  # 650 yuan of orders
        await charge(core, visit, amount_fen, estimate_fen=estimate_fen)
        await audit(core)
    answer = await charge(core, visit, 150000, estimate_fen=2900)  # a 1,500-yuan order, mostly insured
    await audit(core)
    assert answer["on_credit"] and await used_fen(core, member_id) == 17900
    assert answer["available_fen"] == 200000 - 17900

    # The real split: 179 yuan of self-pay in all, as estimated, now on the line as the bill.
    a, b, c = visit.charge_nos
    billed = await checkout(core, visit, insurance={a: 24000, b: 26000, c: 147100})
    await audit(core)
    assert billed["self_pay_fen"] == 6000 + 9000 + 2900 == await used_fen(core, member_id)


async def test_without_an_estimate_the_policy_holds_its_share_of_the_price(make_core):
    core = await make_core()
    member_id = await enrol(core, ZHANG_WEI)
    visit = await open_visit(core, ZHANG_WEI)
    await charge(core, visit, 65000)  # Beijing holds the whole price when the HIS sends no estimate
    await audit(core)
    with pytest.raises(CreditLimitExceeded) as refused:
        await charge(core, visit, 150000)
    assert refused.value.details["available_fen"] == 135000
    await audit(core)

    core.policy = replace(core.policy, hold_percent=30)  # a programme that holds 30%, rounded up to the fen
    await charge(core, visit, 150001)
    await audit(core)
    assert await used_fen(core, member_id) == 65000 + 45001


async def test_checkout_draws_the_real_self_pay_where_it_is_more_than_was_held(make_core):
    core = await make_core()
    member_id = await enrol(core, ZHANG_WEI)
    visit = await open_visit(core, ZHANG_WEI)
    await charge(core, visit, 100000, estimate_fen=10000)
    billed = await checkout(core, visit, insurance={visit.charge_nos[0]: 60000})  # the estimate was low
    await audit(core)
    assert billed["self_pay_fen"] == 40000 == await used_fen(core, member_id)


async def test_past_the_limit_the_bill_is_issued_and_beijing_refuses_new_orders_until_paid(make_core):
    core = await make_core()
    member_id = await enrol(core, ZHANG_WEI)
    visit = await open_visit(core, ZHANG_WEI)
    await charge(core, visit, 300000, estimate_fen=50000)
    billed = await checkout(core, visit, insurance={visit.charge_nos[0]: 50000})  # 2,500 yuan of self-pay
    await audit(core)
    assert billed["self_pay_fen"] == 250000 == await used_fen(core, member_id)
    assert [m.payload["bill_no"] for m in await outbox(core, "bill_issued")] == [billed["bill_no"]]
    assert await status_of(core, member_id) == "active"  # Beijing's ladder has no over-limit rule
    await sweep_checked(core)
    assert await status_of(core, member_id) == "active"

    later = await open_visit(core, ZHANG_WEI)
    with pytest.raises(CreditLimitExceeded) as refused:
        await charge(core, later, 1000, estimate_fen=0)  # not even a free order: the line is past its limit
    assert refused.value.details["available_fen"] == 0
    assert (await eligibility_report(core, ZHANG_WEI))["available_fen"] == 0
    await pay_in_full(core, billed["bill_no"])
    await audit(core)
    assert (await charge(core, later, 1000))["on_credit"]
    await audit(core)


async def test_past_the_limit_xiamen_suspends_at_checkout_and_paying_restores(make_core):
    core = await make_core("xiamen")
    member_id = await enrol(core, WU_LIHUA)
    visit = await open_visit(core, WU_LIHUA)
    await charge(core, visit, 400000, estimate_fen=100000)
    billed = await checkout(core, visit, insurance={visit.charge_nos[0]: 50000})  # 3,500 yuan > 3,000
    await audit(core)
    assert (await bill(core, billed["bill_no"])).self_pay_fen == 350000
    assert await status_of(core, member_id) == "suspended"
    assert (await outbox(core, "status_changed", member_id))[-1].payload["reason"] == "ladder:over_limit"
    await sweep_checked(core)
    refused = await open_visit(core, WU_LIHUA)
    assert (refused.on_credit, refused.reason) == (False, "suspended")

    await pay_in_full(core, billed["bill_no"])
    await audit(core)
    await sweep_checked(core)
    assert await status_of(core, member_id) == "active" and await used_fen(core, member_id) == 0


async def test_a_cancelled_order_gives_back_what_it_held(make_core):
    core = await make_core()
    member_id = await enrol(core, ZHANG_WEI)
    visit = await open_visit(core, ZHANG_WEI)
    await charge(core, visit, 60000, estimate_fen=12000)
    await charge(core, visit, 5000)
    await cancel_charge(core, visit.hospital, visit.visit_no, visit.charge_nos[0])
    await audit(core)
    assert await used_fen(core, member_id) == 5000


@pytest.mark.parametrize("estimate, problem", [
    (60001, "more than amount_fen"), (-1, "self_pay_estimate_fen"), ("100", "self_pay_estimate_fen"),
    (1.5, "self_pay_estimate_fen"), (True, "self_pay_estimate_fen"),
])
async def test_a_bad_estimate_is_refused_and_holds_nothing(make_core, estimate, problem):
    core = await make_core()
    member_id = await enrol(core, ZHANG_WEI)
    visit = await open_visit(core, ZHANG_WEI)
    with pytest.raises(InvalidInput, match=problem):
        await post_charge(core, visit.hospital, visit.visit_no, {
            "charge_no": "C-BAD", "category": "exam", "name": "检查", "amount_fen": 60000, "self_pay_estimate_fen": estimate})
    await audit(core)
    assert await used_fen(core, member_id) == 0


async def test_the_same_charge_number_with_another_estimate_is_a_conflict(make_core):
    core = await make_core()
    await enrol(core, ZHANG_WEI)
    visit = await open_visit(core, ZHANG_WEI)
    body = {"charge_no": "C-1", "category": "exam", "name": "检查", "amount_fen": 60000, "self_pay_estimate_fen": 9000}
    first = await post_charge(core, visit.hospital, visit.visit_no, body)
    assert await post_charge(core, visit.hospital, visit.visit_no, body) == first
    with pytest.raises(Conflict):
        await post_charge(core, visit.hospital, visit.visit_no, {**body, "self_pay_estimate_fen": 8000})
    await audit(core)
