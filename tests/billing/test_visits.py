"""Visits and charges, two-phase: an order holds credit, checkout posts the self-pay part
and releases what insurance covers, a cancel voids a hold or takes a posted item off the
bill (refunding it when paid). Hospital numbers are idempotency keys."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from audit import audit
from billing import visits
from billing.errors import Conflict, CreditLimitExceeded, InvalidInput, NotEligible
from billing.sweep import sweep
from helpers import (
    bill, charge, checkout, enrol, open_visit, outbox, pay, reminder_offsets, row_counts, snapshot, split_for, used_fen,
    visit_with_charges,
)
from storage.models import Charge, Payment, Refund

PRESET = "beijing-shijingshan"
ZHANG_WEI = "110105198503120012"
LIMIT = 200000


@pytest.fixture
async def core(make_core):
    core = await make_core(PRESET)
    core.member_id = await enrol(core, ZHANG_WEI)
    return core


async def charge_statuses(core, visit) -> dict[str, str]:
    async with core.db.transaction() as session:
        rows = await session.execute(select(Charge.charge_no, Charge.status).where(Charge.charge_no.in_(visit.charge_nos)))
        return dict(rows.all())


async def test_orders_hold_credit_and_the_limit_is_never_passed(core):
    visit = await open_visit(core, ZHANG_WEI)
    assert (await charge(core, visit, 150000))["available_fen"] == LIMIT - 150000
    before = await snapshot(core)
    with pytest.raises(CreditLimitExceeded) as raised:
        await charge(core, visit, 50001)
    assert raised.value.details["available_fen"] == 50000
    assert await snapshot(core) == before
    assert (await charge(core, visit, 50000))["available_fen"] == 0
    assert await used_fen(core, core.member_id) == LIMIT
    await audit(core)


async def test_checkout_posts_self_pay_and_releases_what_insurance_covers(core):
    visit = await visit_with_charges(core, ZHANG_WEI, 10000, 8000, 500)
    registration, drug, lab = visit.charge_nos
    body = await split_for(core, visit, insurance={registration: 6000, drug: 8000})
    body["items"][0].update(personal_account_fen=1000, self_pay_fen=3000)  # 6000 + 1000 + 3000
    answer = await visits.checkout(core, "H1", visit.visit_no, body)
    assert answer["self_pay_fen"] == 3000 + 0 + 500
    assert answer["pay_url"].startswith("http://127.0.0.1:8080/pay/")
    issued = await bill(core, answer["bill_no"])
    assert issued.due_at.isoformat() == answer["due_at"]
    assert (issued.due_at - issued.issued_at).total_seconds() == 48 * 3600
    assert await used_fen(core, core.member_id) == 3500
    assert set((await charge_statuses(core, visit)).values()) == {"posted"}
    await audit(core)

    view = await visits.checkout(core, "H1", visit.visit_no, body)  # a replay: the same bill
    assert view == answer
    assert (await row_counts(core))["bills"] == 1


async def test_a_fully_covered_visit_is_paid_at_checkout(core):
    visit = await visit_with_charges(core, ZHANG_WEI, 4000)
    answer = await checkout(core, visit, insurance={visit.charge_nos[0]: 4000})
    assert answer["self_pay_fen"] == 0
    issued = await bill(core, answer["bill_no"])
    assert (issued.status, issued.paid_at) == ("paid", core.clock.now())
    assert await reminder_offsets(core, answer["bill_no"]) == []
    assert await used_fen(core, core.member_id) == 0
    core.clock.advance(days=5)
    await sweep(core)
    assert (await bill(core, answer["bill_no"])).status == "paid"
    await audit(core, swept=True)


async def test_cancel_before_checkout_voids_the_hold(core):
    visit = await visit_with_charges(core, ZHANG_WEI, 7000, 3000)
    kept, abandoned = visit.charge_nos
    answer = await visits.cancel_charge(core, "H1", visit.visit_no, abandoned)
    assert answer == {"charge_no": abandoned, "status": "released", "refund_fen": 0, "available_fen": LIMIT - 7000}
    assert await visits.cancel_charge(core, "H1", visit.visit_no, abandoned) == answer  # a replay, not a second release
    assert await used_fen(core, core.member_id) == 7000
    await audit(core)

    with pytest.raises(InvalidInput, match=abandoned):  # the released item cannot be billed
        await visits.checkout(core, "H1", visit.visit_no, {"items": [
            {"charge_no": abandoned, "insurance_fen": 0, "personal_account_fen": 0, "self_pay_fen": 3000}]})
    answer = await checkout(core, visit)
    assert answer["self_pay_fen"] == 7000
    assert await charge_statuses(core, visit) == {kept: "posted", abandoned: "released"}
    await audit(core)


async def test_a_visit_whose_every_order_was_abandoned_still_closes(core):
    visit = await visit_with_charges(core, ZHANG_WEI, 3000)
    await visits.cancel_charge(core, "H1", visit.visit_no, visit.charge_nos[0])
    answer = await visits.checkout(core, "H1", visit.visit_no, {"items": []})
    assert answer["self_pay_fen"] == 0
    assert (await bill(core, answer["bill_no"])).status == "paid"
    assert await used_fen(core, core.member_id) == 0
    await audit(core)


async def test_cancel_after_checkout_takes_the_item_off_an_unpaid_bill(core):
    visit = await visit_with_charges(core, ZHANG_WEI, 7000, 3000)
    bill_no = (await checkout(core, visit, insurance={visit.charge_nos[1]: 1000}))["bill_no"]
    answer = await visits.cancel_charge(core, "H1", visit.visit_no, visit.charge_nos[1])
    assert (answer["status"], answer["refund_fen"]) == ("refunded", 0)
    assert ((await bill(core, bill_no)).self_pay_fen, await used_fen(core, core.member_id)) == (7000, 7000)
    assert (await row_counts(core))["refunds"] == 0
    await audit(core)


@pytest.mark.parametrize("paid_fen, refund_fen, status_after", [
    (10000, 3000, "paid"),  # paid in full: the abandoned item is refunded
    (8000, 1000, "paid"),  # paid more than what remains: the difference is refunded
    (5000, 0, "open"),  # paid less than what remains: nothing to refund
])
async def test_cancel_after_payment_refunds_what_was_paid_for_it(core, paid_fen, refund_fen, status_after):
    visit = await visit_with_charges(core, ZHANG_WEI, 7000, 3000)
    bill_no = (await checkout(core, visit))["bill_no"]
    await pay(core, bill_no, paid_fen)
    answer = await visits.cancel_charge(core, "H1", visit.visit_no, visit.charge_nos[1])
    assert answer["refund_fen"] == refund_fen
    after = await bill(core, bill_no)
    assert (after.self_pay_fen, after.paid_fen, after.status) == (7000, paid_fen - refund_fen, status_after)
    assert await used_fen(core, core.member_id) == 7000 - after.paid_fen
    async with core.db.transaction() as session:
        refunds = (await session.execute(select(Refund.amount_fen, Refund.reason, Refund.status))).all()
    assert refunds == ([(refund_fen, "item_abandoned", "pending")] if refund_fen else [])
    assert [m.payload["amount_fen"] for m in await outbox(core, "refund_due")] == ([refund_fen] if refund_fen else [])
    await audit(core)


async def test_an_abandoned_items_refund_goes_back_through_the_newest_payments(core):
    visit = await visit_with_charges(core, ZHANG_WEI, 7000, 3000)
    bill_no = (await checkout(core, visit))["bill_no"]
    await pay(core, bill_no, 8000, payment_no="P-OLD")
    await pay(core, bill_no, 2000, payment_no="P-NEW")
    await visits.cancel_charge(core, "H1", visit.visit_no, visit.charge_nos[1])
    async with core.db.transaction() as session:
        refunds = (await session.execute(
            select(Payment.payment_no, Refund.amount_fen).join(Payment, Payment.id == Refund.payment_id).order_by(Refund.id)
        )).all()
    assert refunds == [("P-NEW", 2000), ("P-OLD", 1000)]  # each gateway returns what it took
    await audit(core)


async def test_prepaid_items_stay_paid_and_off_the_line(core):
    visit = await visit_with_charges(core, ZHANG_WEI, 2000)
    prepaid = await charge(core, visit, 1500, prepaid=True)
    assert prepaid["on_credit"] is False
    assert await used_fen(core, core.member_id) == 2000
    body = await split_for(core, visit)
    body["items"].append({"charge_no": visit.charge_nos[1], "insurance_fen": 500, "personal_account_fen": 0,
                          "self_pay_fen": 1000})
    answer = await visits.checkout(core, "H1", visit.visit_no, body)
    assert answer["self_pay_fen"] == 2000  # the prepaid item is split for the record, not billed
    assert (await charge_statuses(core, visit))[visit.charge_nos[1]] == "prepaid"
    await audit(core)

    cancelled = await visits.cancel_charge(core, "H1", visit.visit_no, visit.charge_nos[1])
    assert (cancelled["status"], cancelled["refund_fen"]) == ("refunded", 1500)  # the hospital refunds at its window
    assert (await bill(core, answer["bill_no"])).self_pay_fen == 2000
    await audit(core)


async def test_excluded_and_unenrolled_visits_are_served_off_credit(core):
    # Beijing applies no exclusions: the code is recorded, the visit stays on credit.
    recorded = await open_visit(core, ZHANG_WEI, exclusion="third_party_liability")
    assert (recorded.on_credit, recorded.reason) == (True, "ok")

    stranger = await visit_with_charges(core, "11010819920709006X", 3000)
    assert (stranger.on_credit, stranger.reason) == (False, "not_enrolled")
    assert await charge_statuses(core, stranger) == {stranger.charge_nos[0]: "off_credit"}
    with pytest.raises(Conflict) as raised:
        await visits.checkout(core, "H1", stranger.visit_no, {"items": [
            {"charge_no": stranger.charge_nos[0], "insurance_fen": 0, "personal_account_fen": 0, "self_pay_fen": 3000}]})
    assert raised.value.details["reason"] == "not_on_credit"
    cancelled = await visits.cancel_charge(core, "H1", stranger.visit_no, stranger.charge_nos[0])
    assert (cancelled["status"], cancelled["refund_fen"]) == ("released", 0)
    await audit(core)


async def test_inpatient_visit_without_an_inpatient_line_uses_the_outpatient_line(core):
    ward = await visit_with_charges(core, ZHANG_WEI, 9000, kind="inpatient")
    assert ward.on_credit
    assert await used_fen(core, core.member_id) == 9000


async def test_orders_stop_when_the_member_is_suspended_mid_visit(core):
    earlier = (await checkout(core, await visit_with_charges(core, ZHANG_WEI, 1000)))["bill_no"]
    core.clock.advance(hours=47)
    visit = await visit_with_charges(core, ZHANG_WEI, 2000)
    core.clock.advance(hours=2)
    await sweep(core)  # the earlier bill is overdue: suspended while this visit is open
    with pytest.raises(NotEligible) as raised:
        await charge(core, visit, 500)
    assert raised.value.details["reason"] == "suspended"
    await pay(core, earlier, 1000)
    assert (await charge(core, visit, 500))["on_credit"] is True
    await audit(core, swept=True)


async def test_replays_return_the_first_outcome_and_a_changed_payload_is_a_conflict(core):
    body = {"visit_no": "V-1", "id_number": ZHANG_WEI, "department": "内科", "kind": "outpatient", "exclusion": None}
    first = await visits.open_visit(core, "H1", body)
    assert await visits.open_visit(core, "H1", dict(body)) == first
    with pytest.raises(Conflict):
        await visits.open_visit(core, "H1", {**body, "department": "外科"})

    order = {"charge_no": "C-1", "category": "drug", "name": "布洛芬", "amount_fen": 2500}
    answer = await visits.post_charge(core, "H1", "V-1", order)
    assert await visits.post_charge(core, "H1", "V-1", {**order, "prepaid": False}) == answer  # same request, spelt out
    before = await snapshot(core)
    with pytest.raises(Conflict) as raised:
        await visits.post_charge(core, "H1", "V-1", {**order, "amount_fen": 2600})
    assert raised.value.http_status == 409
    assert await snapshot(core) == before
    assert await used_fen(core, core.member_id) == 2500
    async with core.db.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(Charge)) == 1
    await audit(core)
