"""开通 in chat: the order of DESIGN §4.5, validation, refusals with their reasons, staff QR
attribution, signing again after 解约."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from billing import members
from billing.staff import add_staff, onboarding_scene
from chatkit import (  # noqa: F401 (core, chat: fixtures)
    LIU_YANG, LI_QIANG, PHONE, WANG_FANG, ZHANG_WEI, ZHANG_XIAOMING, ZHAO_LEI, Chat, chat, core,
)
from storage.models import CreditLine, Member


async def member_of(core, openid: str) -> Member | None:
    async with core.db.transaction() as session:
        return await session.scalar(select(Member).where(Member.openid == openid))


async def test_enrolment_asks_in_order_and_grants_the_line(chat, core, clock):
    assert "隐私说明" in await chat.say("开通")
    assert await chat.state() == "enrol:await_consent"
    consent_time = clock.advance(minutes=2)
    assert "姓名" in await chat.say("同意")
    assert "身份证号" in await chat.say("张伟")
    assert "手机号" in await chat.say("110105198503120012")
    reply = await chat.say("13800138000")
    assert "承诺书" in reply and "48 小时" in reply
    assert await chat.state() == "enrol:await_commitment"
    clock.advance(minutes=1)
    reply = await chat.say("同意")
    assert "开通成功" in reply and "¥2,000.00" in reply
    assert await chat.state() is None

    member = await member_of(core, chat.openid)
    assert member.status == "active" and member.name == "张伟"
    # The consent is its own record: its version and the moment it was given, before the commitment.
    assert member.consent_version == core.policy.consent_version and member.consent_at == consent_time
    assert member.commitment_version == core.policy.commitment_version
    assert member.commitment_signed_at == clock.now() > member.consent_at
    assert core.pii.decrypt(member.phone_enc) == PHONE
    async with core.db.transaction() as session:
        assert await session.scalar(select(CreditLine.limit_fen).where(CreditLine.member_id == member.id)) == 200000


async def test_waiting_numbers_are_kept_encrypted_in_the_conversation(chat, core):
    await chat.say("开通")
    await chat.say("同意")
    await chat.say("张伟")
    await chat.say("110105198503120012")
    await chat.say("13800138000")
    stored = str(await chat.data())
    assert "110105198503120012" not in stored and PHONE not in stored


async def test_full_width_digits_and_spaces_are_accepted(chat, core):
    await chat.say("开通")
    await chat.say("同意")
    await chat.say("张 伟")
    assert "手机号" in await chat.say("１１０１０５ １９８５０３１２ ００１２")
    await chat.say("１３８-００１３-８０００")
    assert "开通成功" in await chat.say("同意")
    assert (await member_of(core, chat.openid)).name == "张伟"


async def test_a_spoken_name_and_id_number_are_taken_like_typed_ones(chat, core):
    """WeChat's speech recognition ends what it heard with 。 and may read 1 as 幺."""
    await chat.say("开通")
    await chat.voice("同意。")
    assert "身份证号" in await chat.voice("张秀英。")
    assert "手机号" in await chat.voice("幺幺零幺零五 19490815 0027。")
    assert "承诺书" in await chat.voice("幺38，0013，8000。")
    assert "开通成功" in await chat.voice("同意。")
    member = await member_of(core, chat.openid)
    assert member.name == "张秀英" and core.pii.decrypt(member.phone_enc) == PHONE


async def test_a_lower_case_x_and_punctuation_in_typed_answers(chat, core):
    await chat.say("开通")
    await chat.say("同意")
    assert "身份证号" in await chat.say("刘洋！")
    assert "手机号" in await chat.say(LIU_YANG[1].lower() + "，")
    await chat.say(PHONE)
    assert "开通成功" in await chat.say("同意")
    assert (await member_of(core, chat.openid)).name == "刘洋"


@pytest.mark.parametrize("bad_id", [
    "110105198503120013",  # one digit off: the checksum fails
    "11010519850312001",  # 17 digits
    "110105198513120012",  # month 13
    "一二三",
])
async def test_an_invalid_id_number_is_asked_again(chat, core, bad_id):
    await chat.say("开通")
    await chat.say("同意")
    await chat.say("张伟")
    reply = await chat.say(bad_id)
    assert "身份证号不对" in reply and "18 位" in reply
    assert await chat.state() == "enrol:await_id_number"
    assert "手机号" in await chat.say(ZHANG_WEI[1])


@pytest.mark.parametrize("person,words", [
    (LI_QIANG, "失信被执行人"),
    (ZHANG_XIAOMING, "未满 18 岁"),
    (ZHAO_LEI, "不在本地"),
    (WANG_FANG, "不是正常参保"),
    (("王五", "110101199003070038"), "没有查到"),  # a valid number not in the registry
])
async def test_refusals_say_why_and_what_to_do_instead(chat, core, person, words):
    await chat.say("开通")
    await chat.say("同意")
    await chat.say(person[0])
    reply = await chat.say(person[1])
    assert words in reply
    assert await chat.state() is None
    assert await member_of(core, chat.openid) is None


@pytest.mark.parametrize("bad_name", ["👍", "张伟123", "x" * 10_000, "<b>"])
async def test_a_name_with_digits_emoji_or_symbols_is_asked_again(chat, bad_name):
    await chat.say("开通")
    await chat.say("同意")
    assert "不能有数字或符号" in await chat.say(bad_name)
    assert await chat.state() == "enrol:await_name"


@pytest.mark.parametrize("word", ["同意", "好的", "确认", "是", "不", "同意。", "妈妈"])
async def test_a_command_or_confirmation_word_is_no_name(chat, word):
    await chat.say("开通")
    await chat.say("同意")
    reply = await chat.say(word)
    assert f"“{word.rstrip('。')}”不是姓名" in reply and "请回复您的姓名（和身份证上一样）" in reply
    assert await chat.state() == "enrol:await_name" and "name" not in await chat.data()
    assert "身份证号" in await chat.say("张伟")


async def test_a_sentence_asking_for_something_else_is_no_name(chat):
    await chat.say("开通")
    await chat.say("同意")
    reply = await chat.say("我要挂号 110105198503120012")  # not said back: it holds an ID number
    assert "这不是姓名" in reply and "请回复您的姓名（和身份证上一样）" in reply
    assert await chat.state() == "enrol:await_name"


async def test_a_name_that_does_not_match_the_id_number_is_asked_again_alone(chat, core):
    await chat.say("开通")
    await chat.say("同意")
    await chat.say("张三")
    reply = await chat.say(ZHANG_WEI[1])
    assert "姓名和这个身份证号对不上" in reply and "请回复身份证上的姓名" in reply and "正确的身份证号" in reply
    assert await chat.state() == "enrol:await_name_for_id"
    assert "姓名和这个身份证号对不上" in await chat.say("张四")  # still not it: asked again, nothing restarts
    assert "不是姓名" in await chat.say("同意")
    assert await chat.state() == "enrol:await_name_for_id"
    assert "手机号" in await chat.say("张伟。")  # the ID number was kept
    await chat.say(PHONE)
    assert "开通成功" in await chat.say("同意")
    member = await member_of(core, chat.openid)
    assert member.name == "张伟" and core.pii.decrypt(member.id_number_enc) == ZHANG_WEI[1]


async def test_after_a_mismatch_the_id_number_can_be_sent_again(chat, core):
    await chat.say("开通")
    await chat.say("同意")
    await chat.say("张伟")
    assert "对不上" in await chat.say(LIU_YANG[1])  # someone else's number
    assert "身份证号不对" in await chat.say("110105198503120013")
    assert await chat.state() == "enrol:await_name_for_id"
    assert "手机号" in await chat.say(ZHANG_WEI[1])
    await chat.say(PHONE)
    assert "开通成功" in await chat.say("同意")
    member = await member_of(core, chat.openid)
    assert member.name == "张伟" and core.pii.decrypt(member.id_number_enc) == ZHANG_WEI[1]


async def test_a_bad_phone_number_is_asked_again(chat):
    await chat.say("开通")
    await chat.say("同意")
    await chat.say("张伟")
    await chat.say(ZHANG_WEI[1])
    assert "手机号不对" in await chat.say("12345")
    assert await chat.state() == "enrol:await_phone"


async def test_declining_the_consent_or_the_commitment_enrols_nobody(chat, core):
    await chat.say("开通")
    assert "没有开通" in await chat.say("不同意")
    assert await chat.state() is None
    await chat.say("开通")
    await chat.say("同意")
    await chat.say("张伟")
    await chat.say(ZHANG_WEI[1])
    await chat.say(PHONE)
    assert "请回复 同意 或 取消" in await chat.say("嗯？")
    assert "没有开通" in await chat.say("不")
    assert await member_of(core, chat.openid) is None


async def test_enrolled_already(chat, core):
    await chat.enrol()
    reply = await chat.say("开通")
    assert "您已经开通信用就医了，现在的状态：正常。" in reply and "回复 额度" in reply
    assert "这个身份证号" not in reply
    other = Chat(core, "o-other")
    await other.say("开通")
    await other.say("同意")
    await other.say("张伟")
    assert "已经开通了" in await other.say(ZHANG_WEI[1])


async def test_one_wechat_account_enrols_one_person(chat, core):
    await chat.say("开通")
    await chat.say("同意")
    await chat.say(LIU_YANG[0])
    await chat.say(LIU_YANG[1])
    await chat.say(PHONE)
    # Meanwhile this WeChat account was enrolled for 张伟 (say, at a kiosk): 刘洋 cannot take it too.
    await members.enrol(core, openid=chat.openid, name=ZHANG_WEI[0], id_number=ZHANG_WEI[1], phone=PHONE,
                        consent_version=core.policy.consent_version, commitment_version=core.policy.commitment_version)
    assert "一个微信只能开通一人" in await chat.say("同意")
    assert (await member_of(core, chat.openid)).name == ZHANG_WEI[0]


async def test_a_staff_qr_scan_starts_enrolment_credited_to_the_staff(chat, core):
    staff_id = await add_staff(core, "o-staff-1", "社区王姐")
    replies = await chat.event("subscribe", onboarding_scene(staff_id))
    assert "社区王姐" in replies[0] and "隐私说明" in replies[0]
    assert await chat.state() == "enrol:await_consent"
    await chat.say("同意")
    await chat.say("张伟")
    await chat.say(ZHANG_WEI[1])
    await chat.say(PHONE)
    await chat.say("同意")
    assert (await member_of(core, chat.openid)).onboarded_by_staff_id == staff_id
    assert "staff_id" not in await chat.data()


async def test_the_staff_credit_survives_a_restart_of_enrolment(chat, core):
    staff_id = await add_staff(core, "o-staff-1", "社区王姐")
    await chat.event("SCAN", onboarding_scene(staff_id))
    await chat.say("取消")
    await chat.enrol()
    assert (await member_of(core, chat.openid)).onboarded_by_staff_id == staff_id


@pytest.mark.parametrize("event", ["SCAN", "subscribe"])
async def test_an_enrolled_member_scanning_a_staff_code_is_told_so(chat, core, event):
    staff_id = await add_staff(core, "o-staff-1", "社区王姐")
    await chat.enrol()
    reply = "\n".join(await chat.event(event, onboarding_scene(staff_id)))
    assert "您已经开通信用就医了，现在的状态：正常。" in reply and "回复 额度" in reply
    assert "社区王姐" not in reply and "帮您开通" not in reply and "这个身份证号" not in reply
    assert await chat.state() is None and "staff_id" not in await chat.data()
    async with core.db.transaction() as session:
        (await session.scalar(select(Member).where(Member.openid == chat.openid))).status = "suspended"
    reply = "\n".join(await chat.event(event, onboarding_scene(staff_id)))
    assert "现在的状态：暂停使用。" in reply and "回复 账单" in reply


async def test_an_unknown_scene_is_a_plain_welcome(chat):
    replies = await chat.event("subscribe", "staff:999")
    assert "欢迎关注信医" in replies[0] and "开通信用就医" in replies[0]
    assert await chat.state() == "help:await_choice"


async def test_signing_again_after_cancelling_asks_only_the_documents(chat, core):
    await chat.enrol()
    member = await member_of(core, chat.openid)
    await members.cancel_agreement(core, member.id)
    reply = await chat.say("开通")
    assert "重新签约" in reply and "隐私说明" in reply
    assert "承诺书" in await chat.say("同意")
    assert "开通成功" in await chat.say("同意")
    assert (await member_of(core, chat.openid)).status == "active"


async def test_xiamen_tiers_and_value_added_services(make_core):
    core = await make_core("xiamen")
    chat = Chat(core)
    reply = await chat.enrol(("郑国强", "350200196601100161"))  # score 660
    assert "¥3,000.00" in reply and "住院免押金额度 ¥10,000.00" in reply
    assert "42 天" in "\n".join(chat.transcript)
    poor = Chat(core, "o-2")
    assert "¥500.00" in await poor.enrol(("林小红", "350203198703210132"))  # score 480
    nobody = Chat(core, "o-3")
    await nobody.say("开通")
    await nobody.say("同意")
    await nobody.say("许文")
    assert "没有查到您的信用分" in await nobody.say("350211199001010181")  # an adult without a score
