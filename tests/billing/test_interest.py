"""Worked scenarios, Xiamen's financial institutions and their interest (seed 004: "签约金融机构提供至少42天
免息期"; "金融机构……按相关规定和信贷合同约定收取违约金和利息"): the institution chosen caps the line and sets
the bill's terms; no interest inside the interest-free days; then, each whole day, floor(unpaid principal x
daily_interest_ppm / 1,000,000) fen; a payment pays interest first; a cashier trade settles as of its quote.
The auditor checks every invariant after every step, after a sweep with the interest current."""
from __future__ import annotations

from datetime import timedelta

import pytest

from audit import audit
from billing import interest, members, payments, trades, visits
from billing.errors import Conflict, InvalidInput
from billing.repair import RepairIncomplete
from helpers import (
    bill, billed_visit, checkout, enrol, events, line, member, next_no, outbox, pay, reminder_offsets, status_of,
    sweep_checked, used_fen, visit_with_charges,
)

XIAMEN = "xiamen"
WU_LIHUA = "350200197509300157"  # 白鹭分 620: a 3,000-yuan line
BANK, INSURER = "ludao-bank", "haixi-insurance"  # 42 days, 500 ppm, up to 3,000 yuan; 60 days, 300 ppm, up to 1,000 yuan
PRINCIPAL = 17999  # 179.99 yuan: 8.9995 fen a day at 500 ppm, rounded down to 8
DAY = timedelta(days=1)


async def owed_now(core, bill_no: str) -> interest.Owed:
    return interest.owed(await bill(core, bill_no), core.clock.now())


async def overdue_bill(core, institution: str = BANK, amount_fen: int = PRINCIPAL) -> tuple[int, str]:
    member_id = await enrol(core, WU_LIHUA, institution=institution)
    bill_no = await billed_visit(core, WU_LIHUA, amount_fen)
    await audit(core)
    return member_id, bill_no


async def test_no_interest_for_42_days_then_whole_days_in_integer_fen_rounded_down(make_core):
    core = await make_core(XIAMEN)
    member_id, bill_no = await overdue_bill(core)
    issued = await bill(core, bill_no)
    assert (issued.institution, issued.daily_interest_ppm, issued.due_at - issued.issued_at) == (BANK, 500, 42 * DAY)

    core.clock.advance(days=42)  # the due time itself: still interest-free
    await sweep_checked(core)
    assert (await bill(core, bill_no)).interest_fen == 0
    core.clock.advance(hours=23, minutes=59)  # overdue, but not a whole day past due yet
    await sweep_checked(core)
    assert (await bill(core, bill_no)).status == "overdue"
    assert ((await bill(core, bill_no)).interest_fen, await status_of(core, member_id)) == (0, "suspended")
    core.clock.advance(minutes=1)  # one whole day
    report = await sweep_checked(core)
    assert report.interest_accrued == 1 and (await bill(core, bill_no)).interest_fen == 8  # 8.9995 fen, rounded down
    core.clock.advance(days=2, hours=5)  # three whole days and five hours: the fifth hour is no day
    await sweep_checked(core)
    stored = await bill(core, bill_no)
    assert (stored.interest_fen, stored.interest_through) == (24, stored.due_at + 3 * DAY)

    view = await payments.get_bill(core, "H1", bill_no)  # the hospital API shows it as of now
    assert (view["interest_fen"], view["interest_paid_fen"], view["owed_fen"], view["institution"]) == (
        24, 0, PRINCIPAL + 24, BANK)
    assert await used_fen(core, member_id) == PRINCIPAL  # the line carries principal only
    with pytest.raises(RepairIncomplete) as missing:  # 信用修复 says what is still owed, interest included
        await members.repair_credit(core, member_id)
    assert missing.value.details["unpaid_fen"] == PRINCIPAL + 24


async def test_a_view_adds_what_has_accrued_since_the_last_sweep(make_core):
    core = await make_core(XIAMEN)
    _, bill_no = await overdue_bill(core)
    core.clock.advance(days=42 + 5, hours=1)
    assert (await bill(core, bill_no)).interest_fen == 0  # no sweep yet: nothing stored
    assert (await payments.get_bill(core, "H1", bill_no))["interest_fen"] == 40
    with pytest.raises(AssertionError, match="interest not accrued up to the sweep"):
        await audit(core, swept=True)


async def test_a_partial_payment_pays_the_interest_first_and_only_principal_frees_the_line(make_core):
    core = await make_core(XIAMEN)
    member_id, bill_no = await overdue_bill(core)
    core.clock.advance(days=42 + 3, hours=2)
    await sweep_checked(core)
    assert (await bill(core, bill_no)).interest_fen == 24

    answer = await pay(core, bill_no, 100)
    await audit(core)
    assert (answer["interest_paid_fen"], answer["paid_fen"], answer["owed_fen"], answer["status"]) == (
        24, 76, PRINCIPAL - 76, "overdue")
    assert await used_fen(core, member_id) == PRINCIPAL - 76  # the 24 fen of interest gave no credit back
    assert (await outbox(core, "payment_received", member_id))[-1].payload | {"available_fen": 0} == {
        "bill_no": bill_no, "applied_fen": 100, "interest_fen": 24, "unpaid_fen": PRINCIPAL - 76, "available_fen": 0}
    assert [(e["applied_fen"], e["interest_fen"]) for e in await events(core, "payment_received", member_id)] == [(100, 24)]

    core.clock.advance(days=1)  # the next day on what is unpaid now: floor(17,923 x 500 / 1,000,000) = 8
    await sweep_checked(core)
    assert await owed_now(core, bill_no) == interest.Owed(PRINCIPAL - 76, 32, 24)
    answer = await pay(core, bill_no, PRINCIPAL - 76 + 8 + 500)  # 5 yuan too much: refunded
    await audit(core)
    assert (answer["status"], answer["interest_paid_fen"], answer["paid_fen"], answer["owed_fen"]) == (
        "paid", 32, PRINCIPAL, 0)
    assert (await outbox(core, "refund_due", member_id))[-1].payload["amount_fen"] == 500
    assert (await used_fen(core, member_id), await status_of(core, member_id)) == (0, "active")
    core.clock.advance(days=30)
    await sweep_checked(core)
    assert (await bill(core, bill_no)).interest_fen == 32  # paid: nothing accrues any more


async def test_the_sweep_and_a_payment_the_same_day_accrue_it_once(make_core):
    core = await make_core(XIAMEN)
    _, bill_no = await overdue_bill(core)
    core.clock.advance(days=42 + 2, hours=1)
    await sweep_checked(core)
    assert (await bill(core, bill_no)).interest_fen == 16
    await sweep_checked(core)  # twice to the same time adds nothing
    core.clock.advance(hours=5)
    answer = await pay(core, bill_no, 10)  # accrues to now in its own transaction: no new whole day
    await audit(core)
    assert (answer["interest_fen"], answer["interest_paid_fen"], answer["paid_fen"]) == (16, 10, 0)
    await sweep_checked(core)
    assert (await bill(core, bill_no)).interest_fen == 16
    core.clock.advance(hours=18)  # the third whole day: one payment accrues it, the sweep after finds it done
    answer = await pay(core, bill_no, 6)
    assert (answer["interest_fen"], answer["interest_paid_fen"], answer["paid_fen"]) == (24, 16, 0)
    report = await sweep_checked(core)
    assert report.interest_accrued == 0 and (await bill(core, bill_no)).interest_fen == 24


async def test_a_cashier_trade_paid_across_a_day_boundary_clears_the_bill_as_quoted(make_core):
    core = await make_core(XIAMEN)
    member_id, bill_no = await overdue_bill(core)
    core.clock.advance(days=42 + 2, minutes=-10)  # ten minutes before the second whole day ends
    await sweep_checked(core)
    token = (await bill(core, bill_no)).pay_token
    trade, _ = await trades.open_trade(core, token, "alipay")
    assert (trade.amount_fen, trade.interest_fen) == (PRINCIPAL + 8, 8)  # the quote: one day of interest

    core.clock.advance(minutes=20)  # the member pays; meanwhile the day ends and a sweep accrues it
    await sweep_checked(core)
    assert (await bill(core, bill_no)).interest_fen == 16
    settled = await trades.settle_trade(core, "alipay", trade.out_trade_no, "ALI-1", trade.amount_fen)
    await audit(core)
    assert (settled.applied_fen, settled.refund_fen) == (PRINCIPAL + 8, 0)
    paid = await bill(core, bill_no)
    assert (paid.status, paid.paid_fen, paid.interest_fen, paid.interest_paid_fen) == ("paid", PRINCIPAL, 8, 8)
    assert (await used_fen(core, member_id), await status_of(core, member_id)) == (0, "active")
    await sweep_checked(core)


async def test_a_trade_that_comes_after_another_payment_refunds_what_is_no_longer_owed(make_core):
    core = await make_core(XIAMEN)
    _, bill_no = await overdue_bill(core)
    core.clock.advance(days=42 + 1, hours=3)
    trade, _ = await trades.open_trade(core, (await bill(core, bill_no)).pay_token, "wechatpay")
    await pay(core, bill_no, 1000)  # at the window meanwhile: 8 fen of interest, then principal
    settled = await trades.settle_trade(core, "wechatpay", trade.out_trade_no, "WX-1", trade.amount_fen)
    await audit(core)
    assert (settled.applied_fen, settled.refund_fen) == (PRINCIPAL + 8 - 1000, 1000)
    assert (await bill(core, bill_no)).status == "paid"


async def test_the_institution_caps_the_line_and_sets_the_bills_terms_and_reminders(make_core):
    """海西示例保险: 60 interest-free days, 300 ppm, at most 1,000 yuan: 吴丽华's 3,000-yuan tier is capped; her bill
    is due after 60 days, and the reminders keep their distance from that due time (14 days before, on the day,
    7 and 14 days after)."""
    core = await make_core(XIAMEN)
    member_id, bill_no = await overdue_bill(core, INSURER, 40000)
    assert ((await line(core, member_id)).limit_fen, (await member(core, member_id)).institution) == (100000, INSURER)
    issued = await bill(core, bill_no)
    assert (issued.daily_interest_ppm, issued.due_at - issued.issued_at) == (300, 60 * DAY)
    core.clock.advance(days=45)
    await sweep_checked(core)
    assert await reminder_offsets(core, bill_no) == [0]  # 42 days in: no reminder before 14 days ahead of the due day
    core.clock.advance(days=1)
    await sweep_checked(core)
    assert await reminder_offsets(core, bill_no) == [0, 672]
    core.clock.advance(days=14)
    await sweep_checked(core)
    assert (await reminder_offsets(core, bill_no), (await bill(core, bill_no)).status) == ([0, 672, 1008], "open")
    core.clock.advance(days=7, minutes=1)
    await sweep_checked(core)
    assert await reminder_offsets(core, bill_no) == [0, 672, 1008, 1176]
    assert (await bill(core, bill_no)).interest_fen == 7 * 12  # floor(40,000 x 300 / 1,000,000) = 12 a day
    assert (await outbox(core, "bill_reminder", member_id))[-1].payload["unpaid_fen"] == 40000 + 84


async def test_the_choice_is_required_and_checked(make_core):
    core = await make_core(XIAMEN)
    for chosen in (None, "no-such-bank"):
        with pytest.raises(InvalidInput, match="choose one of the programme's financial institutions"):
            await members.enrol(core, openid=None, name="吴丽华", id_number=WU_LIHUA, phone="13800138000",
                                consent_version=core.policy.consent_version,
                                commitment_version=core.policy.commitment_version, institution=chosen)
    beijing = await make_core("beijing-shijingshan", hospital=None)
    with pytest.raises(InvalidInput, match="lists no financial institutions"):
        await members.enrol(beijing, openid=None, name="张伟", id_number="110105198503120012", phone="13800138000",
                            consent_version=beijing.policy.consent_version,
                            commitment_version=beijing.policy.commitment_version, institution=BANK)
    await audit(core)


async def test_a_change_waits_for_unpaid_bills_and_applies_to_new_bills_only(make_core):
    core = await make_core(XIAMEN)
    member_id, first = await overdue_bill(core)
    with pytest.raises(Conflict) as refused:
        await members.change_institution(core, member_id, INSURER)
    assert (refused.value.details["reason"], refused.value.details["bills"]) == ("unpaid_bills", 1)
    visit = await visit_with_charges(core, WU_LIHUA, 3000)  # a visit in progress holds credit
    await pay(core, first, PRINCIPAL)
    with pytest.raises(Conflict, match="in progress"):
        await members.change_institution(core, member_id, INSURER)
    await audit(core)
    bill_no = (await checkout(core, visit))["bill_no"]
    await pay(core, bill_no, 3000)

    assert await members.change_institution(core, member_id, INSURER) == 100000
    await audit(core)
    later = await billed_visit(core, WU_LIHUA, 5000)
    assert [((b := await bill(core, no)).institution, b.daily_interest_ppm) for no in (first, bill_no, later)] == [
        (BANK, 500), (BANK, 500), (INSURER, 300)]
    assert ((await line(core, member_id)).limit_fen, await used_fen(core, member_id)) == (100000, 5000)


async def test_an_item_abandoned_after_interest_leaves_what_was_paid_beyond_to_the_interest_first(make_core):
    core = await make_core(XIAMEN)
    member_id = await enrol(core, WU_LIHUA, institution=BANK)
    visit = await visit_with_charges(core, WU_LIHUA, 10000, 5000)
    bill_no = (await checkout(core, visit))["bill_no"]
    core.clock.advance(days=44, hours=1)  # two whole days past due at floor(15,000 x 500 / 1,000,000) = 7
    answer = await pay(core, bill_no, 12000)
    assert (answer["interest_paid_fen"], answer["paid_fen"]) == (14, 11986)
    core.clock.advance(days=1)  # a third day on 3,014 fen unpaid: 1 fen
    cancelled = await visits.cancel_charge(core, "H1", visit.visit_no, visit.charge_nos[1])
    await audit(core)
    after = await bill(core, bill_no)
    assert (after.self_pay_fen, after.paid_fen, after.interest_fen, after.interest_paid_fen, after.status) == (
        10000, 10000, 15, 15, "paid")
    assert cancelled["refund_fen"] == 1985  # 1,986 paid beyond the new principal, less the fen of interest owed
    assert (await used_fen(core, member_id), await status_of(core, member_id)) == (0, "active")


async def test_interest_bearing_bills_have_their_own_columns_in_the_overdue_export(make_core):
    from billing.exports import overdue_bills

    core = await make_core(XIAMEN)
    _, bill_no = await overdue_bill(core)
    core.clock.advance(days=42 + 3, hours=1)
    await pay(core, bill_no, 10)
    [row] = [row async for row in overdue_bills(core, core.clock.now())]
    assert (row.bill_no, row.interest_fen, row.interest_paid_fen, row.unpaid_fen) == (bill_no, 24, 10, PRINCIPAL)


async def test_a_hospital_payment_number_replayed_after_a_day_answers_as_first(make_core):
    """The payment's idempotency: the same payment number again a day later changes nothing, even
    though another day of interest has accrued meanwhile."""
    core = await make_core(XIAMEN)
    _, bill_no = await overdue_bill(core)
    core.clock.advance(days=43, hours=1)
    number = next_no("P")
    first = await pay(core, bill_no, 50, payment_no=number)
    core.clock.advance(days=1)
    assert await pay(core, bill_no, 50, payment_no=number) == first
    await audit(core)
