"""信用修复 in chat, in each state (bills unpaid, the commitment to sign again, waiting with
nothing owed, an operator's approval needed, done), in all three languages; and the
suspended member is never promised "付清就能恢复" where the policy asks for repair, nor shown
credit they cannot use."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from billing import payments
from billing.members import repair_credit
from billing.sweep import sweep
from chatkit import PHONE, Chat, hospital_visit
from handlers.i18n import moment
from handlers.intent import parse
from storage.models import Bill, Member

CHEN_JING = ("陈静", "320602198305160096")  # Nantong
ZHAO_LEI = ("赵磊", "130102198808080087")  # region 130000: a city of one's own
OWN_CITY = """
name = "石家庄信用就医"
[documents]
consent_version = "privacy-2026-01"
commitment_version = "commitment-2026-01"
[enrolment]
regions = ["130000"]
insurance_statuses = ["normal"]
[credit]
limit_fen = 150000
[repayment]
due_hours = 72
[overdue]
repair_required = true
[repair]
wait_days = 7
operator_approval = true
[[overdue.ladder]]
stage = "suspended"
days_overdue = 10
"""
# The words of each language for the same conversation.
WORDS = {
    "zh_Hans": {"switch": None, "repair": "信用修复", "agree": "同意", "unpaid": "还有 1 笔逾期的账单没付，共 ¥50.00：",
                "sign": "信用修复还要重新签署承诺书。", "full_text": "/documents/commitment?lang=zh_Hans",
                "signed": "承诺书已重新签署。", "done": "信用修复完成了", "normal": "不需要信用修复"},
    "zh_Hant": {"switch": "繁體", "repair": "信用修復", "agree": "同意", "unpaid": "還有 1 筆逾期的賬單沒付，共 CN¥50.00：",
                "sign": "信用修復還要重新簽署承諾書。", "full_text": "/documents/commitment?lang=zh_Hant",
                "signed": "承諾書已重新簽署。", "done": "信用修復完成了", "normal": "不需要信用修復"},
    "en": {"switch": "English", "repair": "credit repair", "agree": "agree", "unpaid": "1 overdue bill(s) still unpaid, CN¥50.00 in all:",
           "sign": "Credit repair also needs you to sign the commitment again.", "full_text": "/documents/commitment?lang=en",
           "signed": "The commitment is signed again.", "done": "Credit repair is complete", "normal": "no credit repair is needed"},
}


async def member_id(core, chat: Chat) -> int:
    async with core.db.transaction() as session:
        return await session.scalar(select(Member.id).where(Member.openid == chat.openid))


async def status_of(core, member: int) -> str:
    async with core.db.transaction() as session:
        return await session.scalar(select(Member.status).where(Member.id == member))


async def pay_in_full(core, bill_no: str) -> None:
    async with core.db.transaction() as session:
        unpaid = await session.scalar(select(Bill.self_pay_fen - Bill.paid_fen).where(Bill.bill_no == bill_no))
    await payments.pay_at_hospital(core, "H1", bill_no, {"payment_no": f"P-{bill_no}", "channel": "window",
                                                         "amount_fen": unpaid})


async def suspended(core, chat: Chat, person) -> tuple[int, str]:
    """Enrolled, then a bill unpaid until the policy suspends; returns the member id and the bill."""
    await chat.enrol(person, PHONE)
    bill = await hospital_visit(core, person[1], (5000, 0))
    core.clock.advance(days=31, hours=1)
    await sweep(core)
    return await member_id(core, chat), bill["bill_no"]


@pytest.mark.parametrize("locale", WORDS)
async def test_nantong_repair_from_unpaid_to_done(make_core, locale):
    core = await make_core("nantong")
    chat = Chat(core)
    words = WORDS[locale]
    if words["switch"]:
        await chat.say(words["switch"])
    assert words["normal"] not in await chat.say(words["repair"])  # not enrolled: told to enrol first
    member, bill_no = await suspended(core, chat, CHEN_JING)

    reply = await chat.say(words["repair"])  # bills unpaid: which, how much, and the commitment to sign
    assert words["unpaid"] in reply and bill_no in reply and words["sign"] in reply and words["full_text"] in reply
    assert await chat.state() == "repair:await_commitment"
    reply = await chat.say(words["agree"])
    assert words["signed"] in reply and words["unpaid"] in reply and words["sign"] not in reply
    assert await status_of(core, member) == "suspended"

    await pay_in_full(core, bill_no)
    reply = await chat.say(words["repair"])  # nothing missing: done
    assert words["done"] in reply
    assert await status_of(core, member) == "active"
    assert words["normal"] in await chat.say(words["repair"])


async def test_sign_after_paying_completes_at_once(make_core):
    core = await make_core("nantong")
    chat = Chat(core)
    member, bill_no = await suspended(core, chat, CHEN_JING)
    reply = await chat.say("额度")
    assert "现在不能用" in reply and "可用" not in reply  # no credit shown that cannot be used
    assert "付清逾期的账单就能恢复" not in reply and "还要办理信用修复才能恢复" in reply
    assert "还要办理信用修复才能恢复" in await chat.say("挂号")
    await pay_in_full(core, bill_no)
    reply = await chat.say("信用修复")
    assert "逾期的账单" not in reply and "重新签署承诺书" in reply
    assert "先诊疗后付费信用承诺书（南通）" in reply and "多次逾期" not in reply
    reply = await chat.say("取消")
    assert "没有签署" in reply and await status_of(core, member) == "suspended"
    await chat.say("信用修复")
    reply = await chat.say("同意")
    assert "承诺书已重新签署" in reply and "信用修复完成了" in reply
    assert await status_of(core, member) == "active"


async def test_waiting_with_nothing_owed_then_an_operator_approves(make_core, tmp_path: Path):
    path = tmp_path / "own.toml"
    path.write_text(OWN_CITY, encoding="utf-8")
    core = await make_core(str(path))
    chat = Chat(core)
    member, bill_no = await suspended(core, chat, ZHAO_LEI)
    await pay_in_full(core, bill_no)
    paid = core.clock.now()
    reply = await chat.say("信用修复")  # nothing owed, but waiting, and an operator must approve
    assert "逾期的账单" not in reply
    assert f"付清后还要等到 {moment(paid + timedelta(days=7), 'zh_Hans')}，才能完成信用修复。" in reply
    assert "信用修复还要工作人员审核同意" in reply and "审核同意后" in reply
    core.clock.advance(days=7)
    reply = await chat.say("信用修复")
    assert "等到" not in reply and "工作人员审核同意" in reply
    assert await status_of(core, member) == "suspended"
    assert await repair_credit(core, member, approved_by="孙丽") == "active"
    assert "不需要信用修复" in await chat.say("信用修复")


async def test_a_programme_without_repair_says_paying_restores(make_core):
    core = await make_core("beijing-shijingshan")
    chat = Chat(core)
    await chat.enrol(("张伟", "110105198503120012"))
    await hospital_visit(core, "110105198503120012", (3000, 0))
    core.clock.advance(hours=49)
    await sweep(core)
    reply = await chat.say("信用修复")
    assert "还有 1 笔逾期的账单没付，共 ¥30.00" in reply and "付清后会自动恢复，不用另外办理信用修复" in reply
    assert await chat.state() is None


@pytest.mark.parametrize("text", ["信用修复", "我要信用修复", "信用修復", "credit repair", "Credit Repair"])
def test_the_words_for_credit_repair(text):
    assert parse(text).name == "repair"
