"""解约 and signing again."""
from __future__ import annotations

from sqlalchemy import select

from chatkit import ZHANG_WEI, chat, core, hospital_visit  # noqa: F401 (core, chat: fixtures)
from storage.models import Member


async def status_of(core, openid: str) -> str:
    async with core.db.transaction() as session:
        return await session.scalar(select(Member.status).where(Member.openid == openid))


async def test_cancel_the_agreement_and_sign_again(chat, core):
    assert "还没有开通" in await chat.say("解约")
    await chat.enrol()
    reply = await chat.say("解约")
    assert "确定解约请回复 1" in reply
    assert "没有解约" in await chat.say("2")
    assert await status_of(core, chat.openid) == "active"
    await chat.say("解约")
    assert "已解约" in await chat.say("1")
    assert await status_of(core, chat.openid) == "cancelled"
    assert "已经解约了" in await chat.say("解约")
    assert "已经解约了" in await chat.say("挂号")
    await chat.say("开通")
    await chat.say("同意")
    assert "开通成功" in await chat.say("同意")
    assert await status_of(core, chat.openid) == "active"


async def test_money_owed_blocks_cancelling(chat, core):
    await chat.enrol()
    await hospital_visit(core, ZHANG_WEI[1], (3000, 0), checkout=False)  # a visit in progress holds credit
    reply = await chat.say("解约")
    assert "您还有 ¥30.00 没付清" in reply and "缴费" in reply
    assert await chat.state() is None and await status_of(core, chat.openid) == "active"


async def test_a_charge_arriving_before_the_confirmation_still_blocks(chat, core):
    await chat.enrol()
    await chat.say("解约")
    await hospital_visit(core, ZHANG_WEI[1], (3000, 0))
    assert "付清后才能解约" in await chat.say("确认")
    assert await status_of(core, chat.openid) == "active"
