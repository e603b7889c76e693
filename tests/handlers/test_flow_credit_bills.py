"""额度, 账单 and 缴费 in chat: figures straight from the billing core, itemised bills with the
insurance split, due times in China time, pay links, paid history."""
from __future__ import annotations

from billing.payments import pay_at_hospital
from billing.sweep import sweep
from chatkit import ZHANG_WEI, chat, core, hospital_visit  # noqa: F401 (core, chat: fixtures)
from conftest import DUE, START
from handlers.i18n import day, moment

VISIT_DAY, DUE_AT = day(START, "zh_Hans"), moment(DUE, "zh_Hans")


async def test_credit_shows_limit_used_available_status_and_the_next_bill(chat, core, clock):
    assert "还没有开通" in await chat.say("额度")
    await chat.enrol()
    reply = await chat.say("额度")
    assert "门诊额度：¥2,000.00，已用 ¥0.00，可用 ¥2,000.00" in reply and "状态：正常" in reply
    assert "没有要付的账单" in reply
    await hospital_visit(core, ZHANG_WEI[1], (12000, 2000))
    await hospital_visit(core, ZHANG_WEI[1], (500, 0), checkout=False)  # still held
    reply = await chat.say("我的额度多少")
    assert "已用 ¥105.00，可用 ¥1,895.00" in reply
    # Checked out at 17:00 China time on Monday 2 March; due 48 hours later.
    assert f"下一笔要付：¥100.00，{DUE_AT} 前" in reply


async def test_an_overdue_bill_and_a_suspended_line(chat, core, clock):
    await chat.enrol()
    await hospital_visit(core, ZHANG_WEI[1], (3000, 0))
    clock.advance(hours=49)
    await sweep(core)
    reply = await chat.say("额度")
    assert "状态：暂停使用" in reply and "已逾期：¥30.00" in reply
    assert "门诊额度：¥2,000.00，已用 ¥30.00，现在不能用" in reply and "可用" not in reply  # no credit shown that cannot be used
    assert "付清逾期的账单就能恢复" in reply  # Beijing: paying lifts the suspension, no repair


async def test_bills_itemised_with_the_split_due_time_and_link(chat, core):
    await chat.enrol()
    assert "还没有账单" in await chat.say("账单")
    bill = await hospital_visit(core, ZHANG_WEI[1], (10000, 6000), (2500, 0))
    replies = await chat.messages("账单")
    assert "您有 1 笔账单要付" in replies[0]
    detail = replies[1]
    assert f"测试医院 {VISIT_DAY}（待付）" in detail
    assert "· 检查1 ¥100.00：医保 ¥60.00，个人账户 ¥0.00，自付 ¥40.00" in detail
    assert "· 检查2 ¥25.00：医保 ¥0.00，个人账户 ¥0.00，自付 ¥25.00" in detail
    assert "自付共 ¥65.00，已付 ¥0.00，还要付 ¥65.00" in detail
    assert f"请在 {DUE_AT} 前付款：{bill['pay_url']}" in detail
    assert "就诊人" not in detail  # their own visit


async def test_paid_bills_move_to_the_history(chat, core):
    await chat.enrol()
    bill = await hospital_visit(core, ZHANG_WEI[1], (4000, 0))
    await pay_at_hospital(core, "H1", bill["bill_no"], {"payment_no": "P1", "channel": "window", "amount_fen": 1000})
    assert "已付 ¥10.00，还要付 ¥30.00" in await chat.say("账单")
    await pay_at_hospital(core, "H1", bill["bill_no"], {"payment_no": "P2", "channel": "code", "amount_fen": 3000})
    reply = await chat.say("账单")
    # How it was paid, in the order paid: NHSA's channels by name (seed 003).
    assert "最近付清的账单" in reply and f"{VISIT_DAY} 测试医院 ¥40.00（已付清，医院窗口和医保码一码付）" in reply
    assert "现在没有要付的账单" in reply and bill["pay_url"] not in reply


async def test_pay_lists_what_is_owed_with_links(chat, core):
    await chat.enrol()
    assert "没有要付的账单" in await chat.say("缴费")
    first = await hospital_visit(core, ZHANG_WEI[1], (4000, 0))
    second = await hospital_visit(core, ZHANG_WEI[1], (2000, 500))
    reply = await chat.say("我要付钱")
    assert f"¥40.00（测试医院 {VISIT_DAY}）：{first['pay_url']}" in reply
    assert f"¥15.00（测试医院 {VISIT_DAY}）：{second['pay_url']}" in reply


async def test_many_bills_show_five_in_full_and_all_links_on_pay(chat, core):
    await chat.enrol()
    for _ in range(7):
        await hospital_visit(core, ZHANG_WEI[1], (1000, 0))
    replies = await chat.messages("账单")
    assert "您有 7 笔账单要付" in replies[0] and len(replies) == 1 + 5 + 1
    assert "还有 2 笔没列出" in replies[-1]
    assert (await chat.say("缴费")).count("/pay/") == 7
