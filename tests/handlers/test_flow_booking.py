"""挂号 and 退号 in chat: department by number or by symptom, day, doctor and slot, the
confirmation, the registration fee on credit, booking for a family member."""
from __future__ import annotations

from datetime import date

from sqlalchemy import select

from billing.hospitals import add_hospital
from chatkit import (  # noqa: F401 (core, chat: fixtures)
    SCHEDULE, ZHANG_XIAOMING, Chat, chat, core, load_schedule,
)
from handlers.i18n import day
from storage.models import Booking, Charge, CreditLine, Member, Slot, Visit


async def used_fen(core, openid: str) -> int:
    async with core.db.transaction() as session:
        return await session.scalar(
            select(CreditLine.used_fen).join(Member, Member.id == CreditLine.member_id).where(Member.openid == openid)
        )


async def test_book_by_symptom_day_and_doctor(chat, core):
    await load_schedule(core)
    await chat.enrol()
    reply = await chat.say("我肚子疼，想挂号")
    assert "按您说的症状，给您挂 消化内科。" in reply  # said with the days, not first at the confirmation
    assert "哪天去" in reply and day(date(2026, 3, 3), "zh_Hans") in reply and day(date(2026, 3, 4), "zh_Hans") in reply  # 消化内科 found by the symptom
    reply = await chat.say("2")
    assert "选医生和时间" in reply and "08:00-12:00，还剩 5 个" in reply and "13:00-17:00" in reply
    reply = await chat.say("2")
    assert "请确认" in reply and "消化内科 赵医生" in reply and "13:00-17:00" in reply and "¥50.00" in reply
    assert await chat.state() == "booking:await_confirm"
    reply = await chat.say("确认")
    assert "挂号成功" in reply and "就诊号 XYB" in reply
    assert await used_fen(core, chat.openid) == 5000
    async with core.db.transaction() as session:
        booking = await session.scalar(select(Booking))
        slot = await session.get(Slot, booking.slot_id)
        charge = await session.scalar(
            select(Charge).join(Visit, Visit.id == Charge.visit_id).where(Visit.visit_no == booking.visit_no)
        )
    assert (slot.doctor, slot.start, slot.booked) == ("赵医生", "13:00", 1)
    assert (charge.category, charge.status, charge.amount_fen) == ("registration", "held", 5000)
    assert "已用 ¥50.00" in await chat.say("额度")


async def test_department_by_number_and_a_single_choice_skips_itself(chat, core):
    await load_schedule(core)
    await chat.enrol()
    reply = await chat.say("挂号")
    assert "挂哪个科" in reply and "1  内科" in reply and "3  骨科" in reply
    reply = await chat.say("３")  # 骨科 has one day and one doctor: straight to the confirmation
    assert "请确认" in reply and "骨科 陈医生" in reply and "¥0.00" in reply
    assert "挂号成功" in await chat.say("1")
    assert await used_fen(core, chat.openid) == 0  # a free registration charges nothing


async def test_words_given_with_the_command_skip_their_questions(chat, core):
    await load_schedule(core)
    await chat.enrol()
    reply = await chat.say("明天挂消化科")
    assert "请确认" in reply and day(date(2026, 3, 3), "zh_Hans") in reply and "王医生" in reply


async def test_a_symptom_the_hospital_cannot_treat_shows_the_list(chat, core):
    await load_schedule(core)
    await chat.enrol()
    reply = await chat.say("我牙疼")
    assert "没有口腔科" in reply and "1  内科" in reply
    reply = await chat.say("头疼")
    assert "没有神经内科" in reply
    assert await chat.state() == "booking:await_department"
    assert "哪天去" in await chat.say("消化内科")


async def test_unclear_answers_are_asked_again(chat, core):
    await load_schedule(core)
    await chat.enrol()
    await chat.say("挂号")
    assert "请回复科室前面的数字" in await chat.say("😀")
    assert "请回复科室前面的数字" in await chat.say("9")
    await chat.say("消化内科")
    assert "请回复日期前面的数字" in await chat.say("下个月")
    assert "选医生和时间" in await chat.say("周三")


async def test_a_full_slot_is_not_offered_and_a_place_taken_meanwhile_is_explained(chat, core):
    await load_schedule(core)
    await chat.enrol()
    other = Chat(core, "o-other")
    await other.enrol(("刘洋", "11010819920709006X"), phone="13900139000")
    await chat.say("挂号")
    await chat.say("消化内科")
    reply = await chat.say("明天")  # 王医生 has 2 places: the single slot goes straight to the confirmation
    assert "请确认" in reply and "王医生" in reply
    for person in (other, Chat(core, "o-third")):
        if person.openid == "o-third":
            await person.enrol(("刘桂兰", "110108195203040075"), phone="13700137000")
        await person.say("明天挂消化内科")
        assert "挂号成功" in await person.say("1")
    reply = await chat.say("1")
    assert "刚刚约满了" in reply and "哪天去" in reply and "3月3日" not in reply
    async with core.db.transaction() as session:
        assert await session.scalar(select(Slot.booked).where(Slot.doctor == "王医生")) == 2


async def test_saying_no_at_the_confirmation_books_nothing(chat, core):
    await load_schedule(core)
    await chat.enrol()
    await chat.say("明天挂消化内科")
    assert "没有挂号" in await chat.say("2")
    async with core.db.transaction() as session:
        assert await session.scalar(select(Booking)) is None


async def test_no_slots_at_all(chat, core):
    await chat.enrol()
    assert "没有能预约的号" in await chat.say("挂号")
    assert await chat.state() is None


async def test_only_an_active_member_books(chat, core):
    await load_schedule(core)
    assert "还没有开通" in await chat.say("挂号")
    await chat.enrol()
    async with core.db.transaction() as session:
        (await session.scalar(select(Member).where(Member.openid == chat.openid))).status = "suspended"
    assert "暂停使用" in await chat.say("挂号")


async def test_booking_for_a_family_member_draws_on_the_payers_line(chat, core):
    await load_schedule(core)
    await chat.enrol()
    await chat.add_mother()
    reply = await chat.say("挂号")
    assert "给谁挂号" in reply and "1  自己" in reply and "2  张秀英（父母）" in reply
    await chat.say("2")
    reply = await chat.say("内科")
    assert "请确认：给 张秀英 挂号" in reply
    assert "挂号成功" in await chat.say("1")
    assert await used_fen(core, chat.openid) == 3000
    # "给妈妈挂号" names her at once
    reply = await chat.say("给妈妈挂消化内科")
    assert "给谁挂号" not in reply and "哪天去" in reply


async def test_cancel_a_booking_gives_the_place_and_the_fee_back(chat, core):
    await load_schedule(core)
    await chat.enrol()
    await chat.say("明天挂消化内科")
    await chat.say("1")
    await chat.say("挂号")
    await chat.say("内科")
    await chat.say("1")
    assert await used_fen(core, chat.openid) == 8000
    reply = await chat.say("取消挂号")
    assert "退哪个号" in reply and "王医生（张伟）" in reply and "李医生（张伟）" in reply
    reply = await chat.say("2")
    assert "退掉这个号吗" in reply and "李医生" in reply and "¥30.00" in reply
    assert "已退号" in await chat.say("1")
    assert await used_fen(core, chat.openid) == 5000
    async with core.db.transaction() as session:
        assert await session.scalar(select(Slot.booked).where(Slot.doctor == "李医生")) == 0
        visit = await session.scalar(select(Visit).join(Booking, Booking.visit_no == Visit.visit_no)
                                     .where(Booking.status == "cancelled"))
    assert visit.status == "checked_out"  # nothing left on it: no longer a visit in progress
    reply = await chat.say("退号")  # one booking left: straight to its confirmation
    assert "退掉这个号吗" in reply and "王医生" in reply
    assert "号没有退" in await chat.say("不")
    assert await used_fen(core, chat.openid) == 5000


async def test_nothing_to_cancel(chat, core):
    await chat.enrol()
    assert "没有能退的号" in await chat.say("取消挂号")


async def test_several_hospitals_are_offered_by_name(chat, core):
    await load_schedule(core)
    await add_hospital(core, "H2", "第二医院", secret="hospital-secret-0123456789")
    await load_schedule(core, [("眼科", "周医生", date(2026, 3, 3), "08:00", "12:00", 3, 2000)], hospital="H2")
    await chat.enrol()
    reply = await chat.say("挂号")
    assert "去哪家医院" in reply and "1  测试医院" in reply and "2  第二医院" in reply
    assert "请回复医院前面的数字" in await chat.say("第三医院")
    reply = await chat.say("第二医院")
    assert "请确认" in reply and "第二医院 眼科 周医生" in reply
    assert "挂号成功" in await chat.say("1")


async def test_a_symptom_answered_at_the_list_names_the_department_at_once(chat, core):
    await load_schedule(core)
    await chat.enrol()
    await chat.say("挂号")
    reply = await chat.say("肚子疼。")
    assert "按您说的症状，给您挂 消化内科。" in reply and "哪天去" in reply
    await chat.say("挂号")
    reply = await chat.say("1")  # 内科 chosen by number: nothing to explain
    assert "请确认" in reply and "内科 李医生" in reply and "按您说的症状" not in reply


async def test_booking_for_a_parent_by_symptom_names_her(chat, core):
    await load_schedule(core)
    await chat.enrol()
    await chat.add_mother()
    reply = await chat.say("给妈妈挂号，她肚子疼")
    assert "按您说的症状，给张秀英挂 消化内科。" in reply and "哪天去" in reply


PAEDIATRIC_SCHEDULE = [("儿科", "孙医生", date(2026, 3, 3), "08:00", "12:00", 5, 3000), *SCHEDULE]


async def test_paediatrics_is_not_offered_to_adults(chat, core):
    await load_schedule(core, PAEDIATRIC_SCHEDULE)
    await chat.enrol()
    await chat.add_mother()  # ZHANG_XIUYING, born 1949
    await chat.say("挂号")
    reply = await chat.say("2")  # for 张秀英, 76
    assert "挂哪个科" in reply and "1  内科" in reply and "3  骨科" in reply and "儿科" not in reply
    await chat.say("取消")
    await chat.say("挂号")
    reply = await chat.say("1")  # for oneself, 40
    assert "1  内科" in reply and "儿科" not in reply


async def test_paediatrics_is_offered_for_a_child_but_not_first(chat, core):
    await load_schedule(core, PAEDIATRIC_SCHEDULE)
    await chat.enrol()
    await chat.say("家人")
    await chat.say("1")
    await chat.say("儿子")
    await chat.say(ZHANG_XIAOMING[0])  # born 2015
    await chat.say(ZHANG_XIAOMING[1])
    await chat.say("1")
    await chat.say("挂号")
    reply = await chat.say("2")
    assert "1  内科\n2  儿科\n3  消化内科\n4  骨科" in reply
    reply = await chat.say("2")
    assert "哪天去" not in reply and "请确认：给 张小明 挂号" in reply and "儿科 孙医生" in reply


async def test_an_adult_who_names_paediatrics_gets_it(chat, core):
    """Only the list leaves it out: someone who asks for it by name (a parent without the child
    bound yet, say) is not refused."""
    await load_schedule(core, PAEDIATRIC_SCHEDULE)
    await chat.enrol()
    await chat.say("挂号")
    reply = await chat.say("儿科")
    assert "请确认" in reply and "儿科 孙医生" in reply


async def test_an_adult_at_a_hospital_with_only_paediatrics(chat, core):
    await load_schedule(core, PAEDIATRIC_SCHEDULE[:1])
    await chat.enrol()
    assert "这家医院最近只有儿科的号" in await chat.say("挂号")
    assert await chat.state() is None
