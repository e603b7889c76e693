"""订阅 / 退订 in the chat, in the three languages: a yes only as the bare word, a no in any of its
words, each answer short and saying where the member stands and what to type; every yes and no kept."""
from __future__ import annotations

from dataclasses import replace

import pytest
from sqlalchemy import select

from chatkit import Chat, chat, core  # noqa: F401 (core, chat: fixtures)
from storage.models import MarketingConsent, Member

LANGUAGES = {  # the chat's language switch word, then the words of a yes and of a no
    "zh_Hans": ("简体", "订阅", "退订"),
    "zh_Hant": ("繁體", "訂閱", "退訂"),
    "en": ("English", "subscribe", "unsubscribe"),
}


async def choices(core, openid: str) -> list[tuple[bool, str]]:
    async with core.db.transaction() as session:
        rows = await session.execute(select(MarketingConsent.granted, MarketingConsent.via)
                                     .join(Member, Member.id == MarketingConsent.member_id)
                                     .where(Member.openid == openid).order_by(MarketingConsent.id))
        return [tuple(row) for row in rows]


@pytest.mark.parametrize("locale", LANGUAGES)
async def test_a_member_subscribes_and_unsubscribes_in_their_language(chat, core, locale):
    switch, yes, no = LANGUAGES[locale]
    await chat.enrol()
    await chat.say(switch)
    replies = {
        "zh_Hans": ("已订阅", "您已经订阅了优惠信息", "已退订", "您没有订阅优惠信息"),
        "zh_Hant": ("已訂閱", "您已經訂閱了優惠資訊", "已退訂", "您沒有訂閱優惠資訊"),
        "en": ("Subscribed:", "You are subscribed to offers (since", "Unsubscribed:", "You are not subscribed"),
    }[locale]
    assert replies[0] in await chat.say(yes)
    assert replies[1] in await chat.say(yes.upper() if locale == "en" else yes)  # asked again: says so, nothing new
    assert replies[2] in await chat.say(no)
    assert replies[3] in await chat.say(no)
    assert await choices(core, chat.openid) == [(True, "chat"), (False, "chat")]


@pytest.mark.parametrize("word", ["退订", "退訂", "TD", "td", "unsubscribe", "STOP", "取消订阅", "不再接收", "我要退订优惠信息"])
async def test_every_word_of_a_no_ends_the_subscription(chat, core, word):
    await chat.enrol()
    await chat.say("订阅")
    reply = await chat.say(word)
    assert "已退订" in reply and reply.endswith("回复 菜单 看其他功能。")
    assert await choices(core, chat.openid) == [(True, "chat"), (False, "chat")]


@pytest.mark.parametrize("sentence", ["不要订阅", "我不想订阅", "订阅 谢谢"])
async def test_a_yes_is_the_bare_word_only(chat, core, sentence):
    await chat.enrol()
    assert "请只回复 订阅 两个字" in await chat.say(sentence)
    assert await choices(core, chat.openid) == []


async def test_a_no_in_the_middle_of_a_step_is_taken_and_leaves_the_step(chat, core):
    await chat.enrol()
    await chat.say("订阅")
    await chat.say("家人")
    assert await chat.state() is not None
    assert "已退订" in await chat.say("stop")
    assert await chat.state() is None and await choices(core, chat.openid) == [(True, "chat"), (False, "chat")]


async def test_the_welcome_offers_it_in_one_sentence_and_nothing_is_presumed(chat, core):
    last = await chat.enrol()
    assert last.splitlines()[-1] == "想收到合作机构的优惠信息，回复 订阅；随时回复 退订 取消。"
    assert await choices(core, chat.openid) == []  # enrolling, the privacy notice and the commitment are no yes


async def test_someone_not_enrolled_has_nothing_to_subscribe_to(chat, core):
    assert "回复 开通" in await chat.say("订阅")
    assert "您没有订阅优惠信息" in await chat.say("退订")
    async with core.db.transaction() as session:
        assert await session.scalar(select(MarketingConsent)) is None


async def test_a_programme_without_offers_says_so_and_still_takes_a_no(chat, core):
    await chat.enrol()
    await chat.say("订阅")
    core.policy = replace(core.policy, marketing_allowed=False)
    assert "本项目不发送优惠信息" in await chat.say("订阅")
    assert "已退订" in await chat.say("退订")
    second = Chat(core, "o-user-2")
    assert "订阅" not in (await second.enrol(("刘洋", "11010819920709006X"))).splitlines()[-1]


async def test_unfollowing_the_account_ends_a_yes(chat, core):
    await chat.enrol()
    await chat.say("订阅")
    assert await chat.event("unsubscribe") == []
    assert await choices(core, chat.openid) == [(True, "chat"), (False, "unfollow")]
    assert (await chat.event("subscribe"))  # following again is no yes
    assert await choices(core, chat.openid) == [(True, "chat"), (False, "unfollow")]
    assert "您没有订阅优惠信息" in await chat.say("退订")


async def test_unsubscribe_no_longer_leads_to_cancelling_the_agreement(chat):
    await chat.enrol()
    reply = await chat.say("unsubscribe")
    assert "解约" not in reply and await chat.state() is None
    assert "门诊额度" in await chat.say("额度")  # still enrolled
