"""The conversation engine: 取消 / 帮助 / 菜单 inside any flow, numbered choices and
confirmations, session expiry, voice, events, the one error handler, saved state."""
from __future__ import annotations

import logging

import pytest
from sqlalchemy import update

from chatkit import ZHANG_WEI, Chat, assert_no_pii, chat, core, load_schedule  # noqa: F401 (core, chat: fixtures)
from handlers import engine, router
from handlers.engine import Flow, Step, Turn, load, recording
from handlers.intent import parse
from handlers.messages import Incoming
from storage.models import Conversation

ENROL_STEPS = ["enrol:await_consent", "enrol:await_name", "enrol:await_id_number", "enrol:await_phone",
               "enrol:await_commitment"]
ANSWERS = ["同意", ZHANG_WEI[0], ZHANG_WEI[1], "13800138000"]


async def walk_to(chat: Chat, state: str) -> None:
    await chat.say("开通")
    for answer in ANSWERS[:ENROL_STEPS.index(state)]:
        await chat.say(answer)
    assert await chat.state() == state


@pytest.mark.parametrize("state", ENROL_STEPS)
async def test_cancel_leaves_any_step(chat, state):
    await walk_to(chat, state)
    reply = await chat.say("取消")
    assert reply == "好的，没有开通。需要时再回复 开通。"  # the step was left, nothing was done
    assert await chat.state() is None


@pytest.mark.parametrize("words,left", [
    (["挂号"], "好的，没有挂号。回复 挂号 重新选。"),
    (["家人", "1"], "好的，已取消，家人没有变动。回复 菜单 看其他功能。"),
    (["解约"], "好的，没有解约。回复 菜单 看其他功能。"),
    (["菜单"], "好的，已取消。回复 菜单 看能做什么。"),
])
async def test_cancel_says_that_nothing_changed(chat, core, words, left):
    await load_schedule(core)
    await chat.enrol()
    for word in words:
        await chat.say(word)
    assert await chat.state() is not None
    assert await chat.say("取消") == left
    assert await chat.state() is None


@pytest.mark.parametrize("greeting", ["你好", "您好", "您好！", "hello", "Hi", "在吗", "你好啊"])
async def test_a_greeting_is_greeted_with_the_menu(chat, greeting):
    reply = await chat.say(greeting)
    assert reply.startswith("您好！\n信医：先看病，后付钱。想办什么？") and "1  开通信用就医" in reply
    assert "没看懂" not in reply
    assert await chat.state() == "help:await_choice"


async def test_a_greeting_inside_a_step_asks_the_question_again(chat):
    await walk_to(chat, "enrol:await_name")
    reply = await chat.say("您好")
    assert "您好！" in reply and "您正在办理：开通" in reply and "请回复您的姓名" in reply
    assert await chat.state() == "enrol:await_name"


@pytest.mark.parametrize("state", ENROL_STEPS)
async def test_help_inside_any_step_explains_and_asks_again(chat, state):
    await walk_to(chat, state)
    reply = await chat.say("帮助")
    assert "您正在办理：开通。回复 取消 可以退出" in reply
    assert await chat.state() == state


async def test_menu_inside_a_flow_leaves_it_and_shows_the_menu(chat):
    await walk_to(chat, "enrol:await_id_number")
    reply = await chat.say("菜单")
    assert "1  开通信用就医" in reply
    assert await chat.state() == "help:await_choice"
    assert "隐私说明" in await chat.say("1")  # a numbered menu is answered with its number


async def test_a_command_word_starts_its_flow_from_inside_another(chat):
    await chat.enrol()
    await chat.say("家人")
    reply = await chat.say("额度")
    assert "门诊额度" in reply and await chat.state() is None


async def test_cancel_with_nothing_to_cancel(chat):
    assert "现在没有要取消的事" in await chat.say("取消")


async def test_a_session_expires(chat, clock):
    await walk_to(chat, "enrol:await_phone")
    clock.advance(minutes=29)
    assert "请回复 11 位手机号" in await chat.say("123")  # still there
    clock.advance(minutes=31)
    reply = await chat.say("13800138000")
    assert "等得太久，已经退出了" in reply and "没看懂" in reply
    assert await chat.state() is None and await chat.data() == {}


async def test_an_expired_session_keeps_the_language(chat, clock):
    await chat.say("English")
    await chat.say("开通")
    clock.advance(hours=2)
    await chat.say("额度")
    assert (await chat.conversation()).locale == "en"


async def test_voice_is_answered_from_its_recognition(chat):
    reply = await chat.voice("开通。")
    assert "隐私说明" in reply
    assert "姓名" in await chat.voice("同意。")
    assert "没听清" in await chat.voice("")
    assert await chat.state() == "enrol:await_name"  # the question is asked again
    assert "没听清" in await chat.voice("。")  # only the full stop recognition adds
    assert await chat.state() == "enrol:await_name"


async def test_voice_numbers_in_words(chat):
    await chat.say("菜单")
    assert "隐私说明" in await chat.voice("一。")


@pytest.mark.parametrize("text", ["😀", "🙏🙏🙏", "   ", "x" * 10_000, "？？？"])
async def test_not_understood_gets_a_short_help(chat, text):
    reply = await chat.say(text)
    assert reply == "没看懂这句话。回复 菜单 看能做什么，比如回复 挂号。"


async def test_events(chat):
    assert "欢迎关注信医" in (await chat.event("subscribe"))[0]
    await chat.say("开通")
    assert await chat.event("VIEW", "http://example.invalid") == []
    assert await chat.state() == "enrol:await_consent"  # an event without a reply changes nothing
    assert await chat.event("unsubscribe") == []
    assert await chat.state() is None
    assert "隐私说明" in (await chat.event("CLICK", "ENROL"))[0]
    assert "想办什么" in (await chat.event("CLICK", "NO_SUCH_KEY"))[0]


async def test_an_error_is_logged_masked_and_the_user_told_what_to_do(chat, core, caplog, monkeypatch):
    async def broken(turn: Turn) -> None:
        raise RuntimeError(f"boom with {ZHANG_WEI[1]} and 13800138000")

    monkeypatch.setitem(router.REGISTRY.flows, "enrol", Flow("enrol", "开通", ("enrol",), broken))
    monkeypatch.setitem(router.REGISTRY.by_intent, "enrol", router.REGISTRY.flows["enrol"])
    with caplog.at_level(logging.ERROR, logger="handlers.engine"):
        reply = await chat.say("开通")
    assert "系统出了点问题" in reply and "回复 菜单" in reply
    assert "RuntimeError" in caplog.text and "110105********0012" in caplog.text and "138****8000" in caplog.text
    assert_no_pii(caplog.text)
    assert await chat.state() is None


async def test_a_state_no_flow_knows_starts_afresh(chat, core):
    await walk_to(chat, "enrol:await_name")
    async with core.db.transaction() as session:
        await session.execute(update(Conversation).values(state="enrol:await_old_step", data={"x": 1}))
    assert "没看懂" in await chat.say("张伟")
    assert await chat.state() is None


async def test_a_stale_save_is_refused(core, caplog):
    incoming = Incoming("o-1", "text", text="开通")
    turn = Turn(core, incoming, parse("开通"), router.REGISTRY, "enrol:await_name", {}, "zh_Hans")
    saved = (await load(core, "o-1")).saved
    await core.db.run(recording(core, "o-1", saved, turn))  # the first save inserts
    await core.db.run(recording(core, "o-1", saved, turn))  # a second one from the same starting point: skipped, not failed
    fresh = (await load(core, "o-1")).saved
    assert fresh.version == 1 and fresh.state == "enrol:await_name"
    await core.db.run(recording(core, "o-1", fresh, turn))  # later saves update
    await core.db.run(recording(core, "o-1", fresh, turn))
    assert (await load(core, "o-1")).saved.version == 2
    assert sum("state changed by another message" in r.getMessage() for r in caplog.records) == 2


async def test_numbered_choices_and_confirmations(core):
    def turn_for(text: str, choices: list) -> Turn:
        return Turn(core, Incoming("o", "text", text=text), parse(text), router.REGISTRY, None, {"choices": choices},
                    "zh_Hans")

    assert turn_for("2", ["a", "b"]).picked() == "b"
    assert turn_for("２", ["a", "b"]).picked() == "b"
    assert turn_for("第二个", ["a", "b"]).picked() == "b"
    assert turn_for("3", ["a", "b"]).picked() is None
    assert turn_for("0", ["a", "b"]).picked() is None
    assert turn_for("b", ["a", "b"]).picked() is None
    for yes in ("1", "同意", "确认", "是", "好的，确认！", "確認", "yes", "OK"):
        assert turn_for(yes, []).confirmed() is True, yes
    for no in ("2", "不", "不同意", "否", "no"):
        assert turn_for(no, []).confirmed() is False, no
    for unclear in ("3", "也许", "我是张伟", ""):
        assert turn_for(unclear, []).confirmed() is None, unclear


def test_every_step_name_is_its_flows_and_unique():
    names = [step.name for flow in router.REGISTRY.flows.values() for step in flow.steps]
    assert len(names) == len(set(names))
    for flow in router.REGISTRY.flows.values():
        for step in flow.steps:
            assert step.name.startswith(f"{flow.name}:await_"), step.name
            assert router.REGISTRY.step(step.name) is step
    assert engine.MAX_ASKS > max(len(flow.steps) for flow in router.REGISTRY.flows.values())


async def test_two_people_do_not_share_a_conversation(core):
    one, two = Chat(core, "o-1"), Chat(core, "o-2")
    await one.say("开通")
    assert "没看懂" in await two.say("同意")
    assert "姓名" in await one.say("同意")


async def test_a_change_deep_in_the_data_is_saved(chat, monkeypatch):
    async def start(turn: Turn) -> None:
        turn.data["nested"] = {"count": 0}
        turn.goto("probe:await_more")

    async def ask(turn: Turn) -> None:
        turn.say("回复 1")

    async def answer(turn: Turn) -> None:  # stays at the step without asking again
        turn.data["nested"]["count"] += 1
        turn.say("回复 1")

    probe = Flow("probe", "探测", ("enrol",), start, (Step("probe:await_more", ask, answer),))
    monkeypatch.setitem(router.REGISTRY.flows, "probe", probe)
    monkeypatch.setitem(router.REGISTRY.by_intent, "enrol", probe)
    await chat.say("开通")
    await chat.say("1")
    await chat.say("1")
    assert (await chat.data())["nested"] == {"count": 2}
