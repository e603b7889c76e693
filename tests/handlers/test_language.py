"""Languages: `English`, `繁體`, `简体` switch anywhere; replies, money and dates follow;
notifications follow the member's choice."""
from __future__ import annotations

from datetime import date, datetime, timezone

from sqlalchemy import select

from chatkit import ZHANG_WEI, chat, core, hospital_visit  # noqa: F401 (core, chat: fixtures)
from conftest import DUE
from handlers.i18n import day, moment, money, t
from storage.models import Member


async def member_locale(core, openid: str) -> str:
    async with core.db.transaction() as session:
        return await session.scalar(select(Member.locale).where(Member.openid == openid))


async def test_switch_in_the_middle_of_a_step_and_carry_on(chat, core):
    await chat.say("开通")
    reply = await chat.say("English")
    assert reply.startswith("Now in English.") and "Privacy notice" in reply and "Reply AGREE" in reply
    assert await chat.state() == "enrol:await_consent"
    assert "Reply with your name" in await chat.say("agree")
    await chat.say(ZHANG_WEI[0])
    assert "mobile number" in await chat.say(ZHANG_WEI[1])
    assert "commitment (Shijingshan)" in await chat.say("13800138000")
    reply = await chat.say("AGREE")
    assert f"Your credit line is {money(200000, 'en')}" in reply
    assert await member_locale(core, chat.openid) == "en"  # enrolled in the language they chose


async def test_traditional_chinese_commands_and_replies(chat, core):
    assert "已切換為繁體中文" in await chat.say("繁體")
    await chat.enrol()
    reply = await chat.say("額度")
    assert f"門診額度：{money(200000, 'zh_Hant')}" in reply and "狀態：正常" in reply
    assert await member_locale(core, chat.openid) == "zh_Hant"
    await hospital_visit(core, ZHANG_WEI[1], (5000, 1000))
    reply = await chat.say("賬單")
    assert f"醫保 {money(1000, 'zh_Hant')}" in reply and moment(DUE, "zh_Hant") in reply
    assert "已切换为简体中文" in await chat.say("简体")
    assert f"门诊额度：{money(200000, 'zh_Hans')}" in await chat.say("额度")
    assert await member_locale(core, chat.openid) == "zh_Hans"


async def test_english_bills_and_menu(chat, core):
    await chat.enrol()
    await chat.say("English")
    await hospital_visit(core, ZHANG_WEI[1], (5000, 1000))
    assert "Sorry, I did not understand" in await chat.say("blah")
    reply = await chat.say("bills")
    assert (f"insurance {money(1000, 'en')}, personal account {money(0, 'en')}, you pay {money(4000, 'en')}"
            in reply)
    assert f"Please pay by {moment(DUE, 'en')}" in reply
    assert "/pay/" in reply and reply.count("?lang=en") == 1  # the cashier opens in English too
    reply = await chat.say("menu")
    assert "1  Book" in reply and "What would you like to do?" in reply
    assert "Reply with a number from the menu" in await chat.say("blah")


def test_money_and_dates_per_locale():
    assert money(123450, "zh_Hans") == "¥1,234.50"
    assert money(123450, "en") == "CN¥1,234.50"
    assert money(5, "zh_Hant") == "CN¥0.05"
    assert day(date(2026, 3, 4), "en") == "Wed, Mar 4"
    at = datetime(2026, 3, 4, 16, 30, tzinfo=timezone.utc)  # after midnight in China
    assert moment(at, "zh_Hans") == "3月5日周四 00:30"
    assert moment(at, "en") == "Thu, Mar 5, 00:30"
    assert t("额度", "xx") == "额度"  # an unknown locale falls back to the source
    assert t("已逾期：{amount}，{due} 就该付了", "en", amount="CN¥1.00", due="Mar 5") == "Overdue: CN¥1.00, was due Mar 5"


async def test_departments_are_named_in_the_members_language(chat, core):
    """The demo hospital's departments are translated; one only a hospital's own schedule has (骨科) stays as given."""
    from chatkit import load_schedule

    await load_schedule(core)
    await chat.enrol()
    await chat.say("English")
    reply = await chat.say("book")
    assert "1  Internal Medicine" in reply and "2  Gastroenterology" in reply and "3  骨科" in reply
    assert "消化内科" not in reply and "内科" not in reply.replace("骨科", "")
    await chat.say("2")  # the days
    await chat.say("2")  # doctors and times
    reply = await chat.say("2")
    assert "Gastroenterology, 赵医生" in reply and money(5000, "en") in reply  # the confirmation
    await chat.say("cancel")
    await chat.say("繁體")
    reply = await chat.say("掛號")
    assert "1  內科" in reply and "2  消化內科" in reply and "3  骨科" in reply


def test_every_demo_department_has_a_translation():
    from billing.demo import DOCTORS
    from handlers.i18n import DEPARTMENTS, department

    assert {row[0] for row in DOCTORS} <= DEPARTMENTS
    for name in DEPARTMENTS:
        assert department(name, "en") != name and department(name, "en").isascii()
        assert department(name, "zh_Hant") and department(name, "zh_Hans") == name
    assert department("骨科", "en") == "骨科"  # a hospital's own name, unknown here, stays as given
