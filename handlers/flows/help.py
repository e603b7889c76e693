"""帮助 / 菜单, and the replies every flow shares: welcome, leaving, not understood, errors.

```mermaid
stateDiagram-v2
    [*] --> help:await_choice: 菜单 / 帮助 / subscribe
    help:await_choice --> [*]: a number or a command starts that flow
    help:await_choice --> help:await_choice: anything else
```
"""
from __future__ import annotations

from handlers.engine import Flow, Step, Turn
from handlers.i18n import N_

ENTRIES = {
    "enrol": N_("开通信用就医"),
    "book": N_("挂号"),
    "cancel_booking": N_("退号"),
    "bills": N_("账单"),
    "pay": N_("缴费"),
    "credit": N_("我的额度"),
    "institution": N_("金融机构"),
    "family": N_("家人"),
    "cancel_agreement": N_("解约"),
    "repair": N_("信用修复"),
    "staff_qr": N_("我的开通二维码（工作人员）"),
    "staff_residents": N_("我开通的居民（工作人员）"),
}


async def _entries(turn: Turn) -> list[str]:
    member = await turn.member()
    if member is None or member.status == "prospect":
        intents = ["enrol"]
    elif member.status == "cancelled":
        intents = ["enrol", "credit"]
    elif member.status == "suspended":
        intents = ["repair", "bills", "pay", "credit", "family", "cancel_booking"]
    else:
        intents = ["book", "bills", "pay", "credit", "family", "cancel_booking", "cancel_agreement"]
    if turn.core.policy.institutions and member is not None and member.status in ("active", "suspended"):
        intents.insert(intents.index("credit") + 1, "institution")
    if await turn.staff_id() is not None:
        intents += ["staff_qr", "staff_residents"]
    return intents


async def start(turn: Turn) -> None:
    turn.goto("help:await_choice")


async def ask_choice(turn: Turn) -> None:
    turn.say("信医：先看病，后付钱。想办什么？")
    turn.offer([(intent, turn.t(ENTRIES[intent])) for intent in await _entries(turn)])
    turn.say("回复数字，比如 1。English: reply English. 繁體請回覆 繁體。")


async def answer_choice(turn: Turn) -> None:
    intent = turn.picked() or turn.intent.name
    flow = turn.registry.by_intent.get(intent)
    if flow is None:
        turn.retry("请回复菜单里的数字。")
        return
    turn.end()
    await flow.start(turn)


FLOW = Flow("help", N_("菜单"), ("help", "menu"), start, (Step("help:await_choice", ask_choice, answer_choice),),
            left=N_("好的，已取消。回复 菜单 看能做什么。"))


async def welcome(turn: Turn) -> None:
    turn.say("欢迎关注信医！开通后，看病可以先看病、后付钱。")
    await start(turn)


async def explain_step(turn: Turn) -> None:
    """帮助 in the middle of a flow: where they are, how to leave, and the question again."""
    turn.say("您正在办理：{title}。回复 取消 可以退出。", title=turn.t(turn.flow.title))
    turn.goto(turn.state)


async def leave(turn: Turn) -> None:
    if turn.flow is None:
        turn.say("现在没有要取消的事。要退号请回复 取消挂号，回复 菜单 看能做什么。")
        return
    turn.say(turn.flow.left)
    turn.end()


async def greet(turn: Turn) -> None:
    """您好, 在吗, hello: a greeting back, and the menu."""
    turn.say("您好！")
    turn.end()
    await start(turn)


async def greet_in_step(turn: Turn) -> None:
    turn.say("您好！")
    await explain_step(turn)


async def not_understood(turn: Turn) -> None:
    turn.say("没看懂这句话。回复 菜单 看能做什么，比如回复 挂号。")


async def not_heard(turn: Turn) -> None:
    """A voice message WeChat could not turn into words."""
    turn.say("没听清，请再说一遍，或者打字。")
    if turn.flow is not None:
        turn.goto(turn.state)
    else:
        turn.say("回复 菜单 看能做什么。")


async def expired(turn: Turn) -> None:
    turn.say("上一步等得太久，已经退出了。")


async def failed(turn: Turn) -> None:
    turn.say("抱歉，系统出了点问题，刚才的事可能没办完。请稍后再试；回复 菜单 重新开始。")
