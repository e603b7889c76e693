"""家人 in chat: bind a parent, child or spouse, list, follow their visits and bills, unbind."""
from __future__ import annotations

from sqlalchemy import select

from billing.members import bind_dependent
from billing.payments import pay_at_hospital
from chatkit import (  # noqa: F401 (core, chat: fixtures)
    LIU_GUILAN, LIU_YANG, ZHANG_XIAOMING, ZHANG_XIUYING, Chat, chat, core, hospital_visit, valid_id_number,
)
from storage.models import Conversation, FamilyLink, Member


async def bind(chat: Chat, relation_word: str, person: tuple[str, str]) -> str:
    await chat.say("家人")
    await chat.say("1")
    await chat.say(relation_word)
    await chat.say(person[0])
    await chat.say(person[1])
    return await chat.say("1")


async def links(core) -> list[tuple[str, str]]:
    async with core.db.transaction() as session:
        rows = await session.execute(select(Member.name, FamilyLink.relation)
                                     .join(FamilyLink, FamilyLink.dependent_id == Member.id).order_by(FamilyLink.id))
        return [tuple(row) for row in rows]


async def test_bind_a_parent_by_word_and_list_them(chat, core):
    await chat.enrol()
    reply = await chat.say("家人")
    assert "还没有添加家人" in reply and "1  添加家人" in reply and "解除绑定" not in reply
    assert "TA 是您的什么人" in await chat.say("1")
    assert "姓名" in await chat.say("我妈妈")
    assert "身份证号" in await chat.say(ZHANG_XIUYING[0])
    reply = await chat.say(ZHANG_XIUYING[1])
    assert "添加 张秀英（父母，身份证 110105********0027）为家人" in reply
    assert "已添加 张秀英" in await chat.say("确认")
    assert await links(core) == [("张秀英", "parent")]
    reply = await chat.say("家人")
    assert "· 张秀英（父母）110105********0027" in reply and "3  解除绑定" in reply


async def test_relation_by_number_and_a_child(chat, core):
    await chat.enrol()
    await chat.say("家人")
    await chat.say("1")
    await chat.say("2")
    await chat.say(ZHANG_XIAOMING[0])
    await chat.say(ZHANG_XIAOMING[1])
    assert "已添加 张小明" in await chat.say("1")
    assert await links(core) == [("张小明", "child")]


async def test_bind_refusals(chat, core):
    await chat.enrol()
    assert "不能添加您自己" in await bind(chat, "妈妈", ("张伟", "110105198503120012"))
    assert await links(core) == []


async def test_a_name_that_does_not_match_is_asked_again_alone(chat, core):
    await chat.enrol()
    await chat.say("家人")
    await chat.say("1")
    await chat.say("妈妈")
    assert "“同意”不是姓名" in await chat.say("同意")
    await chat.say("张三")
    reply = await chat.say(ZHANG_XIUYING[1])
    assert "姓名和这个身份证号对不上" in reply and "请回复TA身份证上的姓名" in reply
    assert await chat.state() == "family:await_name_for_id"
    assert "添加 张秀英（父母，身份证 110105********0027）为家人" in await chat.say("张秀英")
    assert "已添加 张秀英" in await chat.say("1")
    assert await links(core) == [("张秀英", "parent")]


async def test_after_a_mismatch_the_dependents_id_number_can_be_sent_again(chat, core):
    await chat.enrol()
    await chat.say("家人")
    await chat.say("1")
    await chat.say("妈妈")
    await chat.say(ZHANG_XIUYING[0])
    assert "对不上" in await chat.say(LIU_GUILAN[1])
    assert "添加 张秀英（父母，身份证 110105********0027）" in await chat.say(ZHANG_XIUYING[1])
    assert "已添加 张秀英" in await chat.say("1")
    assert await links(core) == [("张秀英", "parent")]


async def test_a_mismatch_found_at_the_confirmation_asks_for_the_name(chat, core):
    """The registry changed between the ID number and the confirmation."""
    await chat.enrol()
    await chat.say("家人")
    await chat.say("1")
    await chat.say("妈妈")
    await chat.say(ZHANG_XIUYING[0])
    await chat.say(ZHANG_XIUYING[1])
    data = await chat.data()
    async with core.db.transaction() as session:  # the conversation as if 张三 had passed the check
        conversation = await session.scalar(select(Conversation).where(Conversation.openid == chat.openid))
        conversation.data = {**data, "name": "张三"}
    reply = await chat.say("1")
    assert "姓名和这个身份证号对不上" in reply and await chat.state() == "family:await_name_for_id"
    assert await links(core) == []
    await chat.say("张秀英")
    assert "已添加 张秀英" in await chat.say("1")


async def test_an_invalid_id_number_or_name_is_asked_again(chat):
    await chat.enrol()
    await chat.say("家人")
    await chat.say("1")
    assert "请回复 1、2 或 3" in await chat.say("邻居")
    await chat.say("老伴")
    assert "不能有数字或符号" in await chat.say("🙂🙂")
    await chat.say(ZHANG_XIUYING[0])
    assert "身份证号不对" in await chat.say("110105194908150028")
    assert await chat.state() == "family:await_id_number"


async def test_at_most_five_and_no_twice(chat, core):
    await chat.enrol()
    assert "已添加" in await bind(chat, "妈妈", ZHANG_XIUYING)
    assert "已经是您的家人了" in await bind(chat, "妈妈", ZHANG_XIUYING)
    async with core.db.transaction() as session:
        payer = await session.scalar(select(Member.id).where(Member.openid == chat.openid))
    for n in range(4):  # 4 more children, outside the chat; they need not be in the registry
        await bind_dependent(core, payer, "child", f"孩子{n}", valid_id_number(f"11010520100101{n:03d}"))
    assert "最多只能添加 5 位家人" in await bind(chat, "妈妈", LIU_GUILAN)


async def test_follow_a_dependents_visits_and_bills_and_pay_them(chat, core):
    await chat.enrol()
    await bind(chat, "妈妈", ZHANG_XIUYING)
    checked_out = await hospital_visit(core, ZHANG_XIUYING[1], (10000, 6000), (2000, 0))
    await hospital_visit(core, ZHANG_XIUYING[1], (500, 0), checkout=False)
    reply = await chat.say("家人")
    await chat.say("2")
    reply = await chat.say("1")  # the only one: but the question is asked, names are not guessed
    assert "张秀英 最近的就诊" in reply and "内科（就诊中）" in reply and "内科（已结束）" in reply
    assert "· 检查1 ¥100.00：医保 ¥60.00，个人账户 ¥0.00，自付 ¥40.00" in reply
    assert "还要付 ¥60.00" in reply and checked_out["pay_url"] in reply
    # The payer's own 账单 carries it too, naming the patient; so do 缴费 and, once paid, the settled list.
    assert "就诊人：张秀英" in await chat.say("账单")
    assert "（测试医院" in (reply := await chat.say("缴费")) and "就诊人：张秀英）" in reply
    await pay_at_hospital(core, "H1", checked_out["bill_no"], {"payment_no": "P1", "channel": "window", "amount_fen": 6000})
    reply = await chat.say("账单")
    assert "最近付清的账单" in reply and "¥60.00（已付清，医院窗口，就诊人：张秀英）" in reply


async def test_unbind(chat, core):
    await chat.enrol()
    await bind(chat, "妈妈", ZHANG_XIUYING)
    await bind(chat, "老伴", LIU_YANG)
    await chat.say("家人")
    reply = await chat.say("3")
    assert "解除哪位家人" in reply and "2  刘洋" in reply
    assert "解除 刘洋 吗" in await chat.say("2")
    assert "已解除 刘洋" in await chat.say("1")
    assert await links(core) == [("张秀英", "parent")]


async def test_a_visit_in_progress_blocks_unbinding(chat, core):
    await chat.enrol()
    await bind(chat, "妈妈", ZHANG_XIUYING)
    await hospital_visit(core, ZHANG_XIUYING[1], (500, 0), checkout=False)
    await chat.say("家人")
    await chat.say("3")
    await chat.say("1")
    assert "还有没结束的就诊" in await chat.say("1")
    assert await links(core) == [("张秀英", "parent")]


async def test_a_paid_bill_leaves_the_list(chat, core):
    await chat.enrol()
    await bind(chat, "妈妈", ZHANG_XIUYING)
    bill = await hospital_visit(core, ZHANG_XIUYING[1], (3000, 0))
    await pay_at_hospital(core, "H1", bill["bill_no"], {"payment_no": "P1", "channel": "window", "amount_fen": 3000})
    await chat.say("家人")
    await chat.say("2")
    reply = await chat.say("1")
    assert bill["pay_url"] not in reply and "已结束" in reply


async def test_only_an_active_member_adds_family(chat, core):
    assert "还没有开通" in await chat.say("家人")
    await chat.enrol()
    async with core.db.transaction() as session:
        (await session.scalar(select(Member).where(Member.openid == chat.openid))).status = "suspended"
    await chat.say("家人")
    assert "暂停使用" in await chat.say("1")
    assert await chat.state() is None
