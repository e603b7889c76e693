"""The financial institution in chat (seed 004: "在信用就医公共服务平台上自主选择金融机构"): chosen from a
numbered list of terms while enrolling, shown by 金融机构, changed by 换金融机构 for new bills only and never
while a bill is unpaid; the interest on the bill card."""
from __future__ import annotations

from sqlalchemy import select

from billing.audit import audit_database
from billing.payments import pay_at_hospital
from billing.sweep import sweep
from chatkit import Chat, hospital_visit
from storage.models import Bill, CreditLine, Member

WU_LIHUA = ("吴丽华", "350200197509300157")  # 白鹭分 620: a 3,000-yuan tier


async def audit(core) -> None:
    assert (await audit_database(core)).breaches == []


async def choice_of(core, openid: str) -> tuple[str | None, int]:
    async with core.db.transaction() as session:
        member = await session.scalar(select(Member).where(Member.openid == openid))
        limit = await session.scalar(select(CreditLine.limit_fen).where(CreditLine.member_id == member.id,
                                                                         CreditLine.kind == "outpatient"))
    return member.institution, limit


async def test_enrolment_lists_the_institutions_with_their_terms_and_takes_a_number(make_core):
    core = await make_core("xiamen")
    chat = Chat(core)
    for answer in ("开通", "同意", *WU_LIHUA):
        await chat.say(answer)
    listed = await chat.say("13800138000")
    assert await chat.state() == "enrol:await_institution"
    assert ("1  鹭岛示例银行：免息 42 天，之后每欠 1000 元每天利息 ¥0.50，最高额度 ¥3,000.00；您的额度 ¥3,000.00" in listed
            and "2  海西示例保险：免息 60 天，之后每欠 1000 元每天利息 ¥0.30，最高额度 ¥1,000.00；您的额度 ¥1,000.00" in listed)
    assert "先还利息再还本金" in listed
    assert "请回复金融机构前面的数字" in await chat.say("3")  # no such number: asked again, nothing chosen
    assert await chat.state() == "enrol:await_institution"
    assert "承诺书" in await chat.say("2")
    done = await chat.say("同意")
    assert "开通成功！您的信用额度是 ¥1,000.00。" in done and "金融机构：海西示例保险，免息 60 天" in done
    assert await choice_of(core, chat.openid) == ("haixi-insurance", 100000)
    await audit(core)


async def test_signing_again_after_cancelling_asks_the_institution_again(make_core):
    core = await make_core("xiamen")
    chat = Chat(core)
    await chat.enrol(WU_LIHUA, institution=1)
    await chat.say("解约")
    assert "已解约" in await chat.say("1")
    await chat.say("开通")
    assert "海西示例保险" in await chat.say("同意")  # consent: then the institution, then the commitment
    await chat.say("2")
    assert "开通成功！您的信用额度是 ¥1,000.00。" in await chat.say("同意")
    assert await choice_of(core, chat.openid) == ("haixi-insurance", 100000)


async def test_a_change_is_refused_while_a_bill_is_unpaid_and_applies_to_new_bills(make_core, clock):
    core = await make_core("xiamen")
    chat = Chat(core)
    await chat.enrol(WU_LIHUA, institution=1)
    shown = await chat.say("金融机构")
    assert "金融机构：鹭岛示例银行，免息 42 天" in shown and "回复 换金融机构" in shown
    first = await hospital_visit(core, WU_LIHUA[1], (20000, 0))
    assert "前付清不收利息" in await chat.say("账单")  # inside its 42 interest-free days
    refused = await chat.say("换金融机构")
    assert "您还有 1 笔账单没付清" in refused and "回复 缴费" in refused
    assert await chat.state() is None

    clock.advance(days=44, hours=1)  # two whole days past due: 10 fen a day on 200 yuan at 500 ppm
    await sweep(core)
    card = await chat.say("账单")
    assert "自付共 ¥200.00，已付 ¥0.00；逾期利息 ¥0.20，已付 ¥0.00；还要付 ¥200.20（先还利息）" in card
    assert "已逾期：¥200.20" in await chat.say("额度")  # what is owed includes the interest
    await pay_at_hospital(core, "H1", first["bill_no"], {"payment_no": "P1", "channel": "window", "amount_fen": 20020})
    assert "¥200.20（已付清" in await chat.say("账单")  # the history shows what it came to, interest included

    assert "1  鹭岛示例银行" in await chat.say("换金融机构")
    assert "现在用的就是鹭岛示例银行" in await chat.say("1")
    await chat.say("换金融机构")
    changed = await chat.say("2")
    assert "已换成海西示例保险" in changed and "您的信用额度现在是 ¥1,000.00" in changed
    assert await choice_of(core, chat.openid) == ("haixi-insurance", 100000)
    later = await hospital_visit(core, WU_LIHUA[1], (3000, 0))
    async with core.db.transaction() as session:
        terms = dict((await session.execute(select(Bill.bill_no, Bill.institution))).all())
    assert (terms[first["bill_no"]], terms[later["bill_no"]]) == ("ludao-bank", "haixi-insurance")
    assert "金融机构：海西示例保险（回复 金融机构 看约定）" in await chat.say("额度")
    await audit(core)


async def test_a_change_when_a_bill_came_meanwhile_is_refused_at_the_number(make_core):
    core = await make_core("xiamen")
    chat = Chat(core)
    await chat.enrol(WU_LIHUA, institution=1)
    await chat.say("换金融机构")
    await hospital_visit(core, WU_LIHUA[1], (1000, 0))  # checked out while the list was open
    assert "您还有 1 笔账单没付清" in await chat.say("2")
    assert await choice_of(core, chat.openid) == ("ludao-bank", 300000)


async def test_a_programme_without_institutions_has_nothing_to_choose(make_core):
    core = await make_core("beijing-shijingshan")
    chat = Chat(core)
    await chat.enrol()
    assert "不用选择金融机构" in await chat.say("金融机构")
    assert "不用选择金融机构" in await chat.say("换金融机构")
    assert "金融机构" not in "\n".join(chat.transcript[:6])  # enrolment asked none
    assert await choice_of(core, chat.openid) == (None, 200000)


async def test_the_institution_and_its_terms_in_english_and_traditional_chinese(make_core):
    core = await make_core("xiamen")
    english, traditional = Chat(core, "o-en"), Chat(core, "o-hant")
    await english.say("English")
    await english.enrol(WU_LIHUA, institution=2)
    assert ("Lender: Haixi Example Insurance, 60 days interest-free, then CN¥0.30 interest a day for each CN¥1,000 owed; "
            "credit up to CN¥1,000.00") in await english.say("lender")
    assert "1  Ludao Example Bank: 42 days interest-free" in await english.say("switch")
    await traditional.say("繁體")
    await traditional.enrol(("郑国强", "350200196601100161"), institution=1)
    assert "金融機構：鷺島示例銀行，免息 42 天，之後每欠 1000 元每天利息 CN¥0.50" in await traditional.say("金融機構")
